"""The subset of the OpenAI Realtime API (GA event names) that `cadence serve` speaks: client events parsed into
typed values, or a `ProtocolError` that becomes an `error` event (the connection stays up); server events built as
plain dicts. Audio is base64 pcm16, 24 kHz mono, both ways."""
from __future__ import annotations

import base64
import binascii
import itertools
import json
from dataclasses import dataclass
from typing import Any

AUDIO_FORMAT = {"type": "audio/pcm", "rate": 24000}
TURN_DETECTION = ("server_vad", "semantic_vad")  # both mean Cadence's own end-of-turn rule
MAX_AUDIO_BYTES = 15 * 1024 * 1024  # one append: the API's own limit


class ProtocolError(ValueError):
    """A client event Cadence cannot act on; `code` and `param` go into the `error` event."""

    def __init__(self, message: str, code: str = "invalid_request", param: str | None = None,
                 event_id: str | None = None):
        super().__init__(message)
        self.code, self.param, self.event_id = code, param, event_id


@dataclass(frozen=True, slots=True)
class SessionUpdate:
    event_id: str | None
    instructions: str | None = None  # None: unchanged
    voice: str | None = None
    turn_detection: bool | None = None  # False: the client asked for none (not supported)


@dataclass(frozen=True, slots=True)
class AudioAppend:
    event_id: str | None
    audio: bytes  # pcm16, 24 kHz mono


@dataclass(frozen=True, slots=True)
class AudioCommit:
    event_id: str | None


@dataclass(frozen=True, slots=True)
class AudioClear:
    event_id: str | None


@dataclass(frozen=True, slots=True)
class ResponseCreate:
    event_id: str | None


@dataclass(frozen=True, slots=True)
class ResponseCancel:
    event_id: str | None
    response_id: str | None = None


@dataclass(frozen=True, slots=True)
class ItemTruncate:
    event_id: str | None
    item_id: str
    audio_end_ms: int


ClientEvent = SessionUpdate | AudioAppend | AudioCommit | AudioClear | ResponseCreate | ResponseCancel | ItemTruncate


def parse(message: str | bytes) -> ClientEvent:
    """One client message -> its event; ProtocolError for malformed JSON, unknown types and bad fields."""
    if isinstance(message, bytes):
        raise ProtocolError("send events as JSON text frames, not binary frames", "invalid_message")
    try:
        raw = json.loads(message)
    except ValueError:
        raise ProtocolError("the message is not valid JSON", "invalid_json") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise ProtocolError("an event is a JSON object with a string `type`", "invalid_event", "type")
    event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
    try:
        return _event(raw["type"], raw, event_id)
    except ProtocolError as exc:
        exc.event_id = event_id
        raise


def _event(kind: str, raw: dict[str, Any], event_id: str | None) -> ClientEvent:
    match kind:
        case "session.update":
            return _session_update(_object(raw, "session"), event_id)
        case "input_audio_buffer.append":
            return AudioAppend(event_id, _audio(raw))
        case "input_audio_buffer.commit":
            return AudioCommit(event_id)
        case "input_audio_buffer.clear":
            return AudioClear(event_id)
        case "response.create":
            return ResponseCreate(event_id)
        case "response.cancel":
            response_id = raw.get("response_id")
            return ResponseCancel(event_id, response_id if isinstance(response_id, str) else None)
        case "conversation.item.truncate":
            item_id, end = raw.get("item_id"), raw.get("audio_end_ms")
            if not isinstance(item_id, str):
                raise ProtocolError("conversation.item.truncate needs an item_id", param="item_id")
            if isinstance(end, bool) or not isinstance(end, int) or end < 0:
                raise ProtocolError("audio_end_ms must be a whole number of milliseconds >= 0", param="audio_end_ms")
            return ItemTruncate(event_id, item_id, end)
        case _:
            raise ProtocolError(f"unknown or unsupported event type {kind!r}", "unknown_event", "type")


def _object(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ProtocolError(f"`{key}` must be an object", param=key)
    return value


def _audio(raw: dict[str, Any]) -> bytes:
    data = raw.get("audio")
    if not isinstance(data, str):
        raise ProtocolError("input_audio_buffer.append needs `audio`: base64 pcm16", param="audio")
    if len(data) > MAX_AUDIO_BYTES * 4 // 3 + 4:
        raise ProtocolError("one append may carry at most 15 MiB of audio", "audio_too_large", "audio")
    try:
        audio = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("`audio` is not valid base64", "invalid_audio", "audio") from None
    if len(audio) % 2:
        raise ProtocolError("pcm16 audio is a whole number of 2-byte samples", "invalid_audio", "audio")
    return audio


def _session_update(session: dict[str, Any], event_id: str | None) -> SessionUpdate:
    instructions = session.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise ProtocolError("session.instructions must be a string", param="session.instructions")
    audio = _object(session, "audio")
    inp, out = _object(audio, "input"), _object(audio, "output")
    for where, fmt in (("input", inp.get("format")), ("output", out.get("format"))):
        if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "audio/pcm"
                                or fmt.get("rate", 24000) != 24000):
            raise ProtocolError(f"session.audio.{where}.format: Cadence speaks audio/pcm at 24000 Hz only",
                                "unsupported_audio_format", f"session.audio.{where}.format")
    voice = out.get("voice")
    if voice is not None and not isinstance(voice, str):
        raise ProtocolError("session.audio.output.voice must be a string", param="session.audio.output.voice")
    detection: bool | None = None
    if "turn_detection" in inp:
        td = inp["turn_detection"]
        if td is not None and (not isinstance(td, dict) or td.get("type") not in TURN_DETECTION):
            raise ProtocolError("turn_detection.type must be server_vad or semantic_vad",
                                param="session.audio.input.turn_detection")
        detection = td is not None
    return SessionUpdate(event_id, instructions, voice, detection)


class Events:
    """Server events with fresh ids."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def make(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": f"event_{next(self._ids)}", **fields}

    def error(self, exc: ProtocolError | str, code: str = "server_error") -> dict[str, Any]:
        if isinstance(exc, ProtocolError):
            body = {"type": "invalid_request_error", "code": exc.code, "message": str(exc), "param": exc.param,
                    "event_id": exc.event_id}
        else:
            body = {"type": "server_error", "code": code, "message": exc, "param": None, "event_id": None}
        return self.make("error", error=body)


def audio_b64(pcm16: bytes) -> str:
    return base64.b64encode(pcm16).decode("ascii")


def session_object(session_id: str, instructions: str, voice: str, turn_detection: bool) -> dict[str, Any]:
    """The `session` of session.created / session.updated."""
    return {"type": "realtime", "object": "realtime.session", "id": session_id, "model": "cadence",
            "output_modalities": ["audio"], "instructions": instructions,
            "audio": {"input": {"format": AUDIO_FORMAT,
                                "turn_detection": {"type": "server_vad"} if turn_detection else None,
                                "transcription": {"model": "cadence"}},
                      "output": {"format": AUDIO_FORMAT, "voice": voice}}}

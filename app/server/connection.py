"""One Realtime API client: its own conversation (built by `app.runtime.build_conversation`, the one composition
root, on forked engines and the server's shared scheduler) whose microphone and speaker are the client
(`ClientAudio` on the paced block device). Client events come in through `handle()`; the session's events, actions
and each turn's figures are turned into server events and handed to `send` (thread-safe; called from the session
and audio threads).

What the client hears is what the server sent (the audio leaves at real-time pace), so Cadence's barge-in keeps the
heard text in the history; a client that truncates an item later (`conversation.item.truncate`) cuts it to what it
says it played. Each `response.done` carries Cadence's per-stage latencies in `response.metadata` (strings)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.audio.headless import HeadlessDuplex
from app.audio.playback import PlaybackBuffer
from app.config import Config, runtime_settings
from app.conversation import actions as a
from app.conversation import events as e
from app.conversation.history import heard_both
from app.conversation.inbox import ReviseReply, SystemPrompt
from app.metrics.turns import TurnRecord
from app.runtime import build_conversation
from app.server import protocol as p
from app.server.device import ClientAudio, InputOverflow
from engines.engine_set import Engines
from engines.protocols import VoiceChoice
from scheduler import Scheduler

log = logging.getLogger("cadence.serve")
Send = Callable[[dict[str, Any]], None]


@dataclass
class Response:
    """One assistant reply as the client sees it."""

    turn: int
    id: str
    item_id: str
    segments: list[tuple[str, str, float]] = field(default_factory=list)  # (spoken, written, seconds)
    audio_s: float = 0.0  # sent so far
    status: str = "in_progress"
    reason: str = ""

    def item(self, status: str, transcript: str) -> dict[str, Any]:
        return {"id": self.item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                "status": status, "content": [{"type": "output_audio", "transcript": transcript}]}


class RealtimeConnection:
    def __init__(self, cfg: Config, engines: Engines, scheduler: Scheduler, first_turn: int, send: Send,
                 session_id: str):
        self.cfg, self.engines, self.send, self.session_id = cfg, engines, send, session_id
        self.events = p.Events()
        self.instructions = runtime_settings(cfg).system_prompt
        self.voice = getattr(engines.tts, "voice", "") or engines.names.get("tts", "")
        self._responses: dict[int, Response] = {}
        self._transcripts: dict[int, str] = {}
        self._user_items = 0
        self._user_item = ""
        self._last_item = ""
        self.audio = ClientAudio(self._on_audio)
        devices: list[HeadlessDuplex] = []

        def open_device(playback: PlaybackBuffer) -> HeadlessDuplex:
            devices.append(self.audio.device(playback))
            return devices[0]
        self.conversation = build_conversation(cfg, engines, open_device, cancel_echo=False,
                                               observers=[self._observe], on_record=self._on_record,
                                               scheduler=scheduler, first_turn=first_turn)
        self.device = devices[0]

    # ---- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self.conversation.start()
        self.send(self.events.make("session.created", session=self._session()))

    def close(self) -> None:
        self.conversation.stop()

    def _session(self) -> dict[str, Any]:
        return p.session_object(self.session_id, self.instructions, self.voice, True)

    def _ms(self, t: float) -> int:
        clock = self.device.clock
        return max(0, round((t - clock.t0) * 1000)) if clock is not None else 0

    # ---- client events ---------------------------------------------------------------------------------------
    def handle(self, event: p.ClientEvent) -> None:
        try:
            self._handle(event)
        except p.ProtocolError as exc:
            exc.event_id = exc.event_id or event.event_id
            self.send(self.events.error(exc))

    def _handle(self, event: p.ClientEvent) -> None:
        match event:
            case p.AudioAppend(audio=audio):
                try:
                    self.audio.append(audio)
                except InputOverflow as exc:
                    raise p.ProtocolError(str(exc), "input_buffer_full", "audio") from None
            case p.AudioClear():
                self.audio.clear()
                self.send(self.events.make("input_audio_buffer.cleared"))
            case p.AudioCommit() | p.ResponseCreate():
                pass  # Cadence ends turns and starts replies itself (server-side turn detection)
            case p.SessionUpdate():
                self._update(event)
            case p.ResponseCancel(response_id=response_id):
                response = self._active(response_id)
                if response is None:
                    raise p.ProtocolError("no response is in progress", "response_cancel_not_active")
                response.reason = "client_cancelled"
                self.conversation.session.post(e.ReplyCancelled(self.conversation.scheduler.clock(), response.turn))
            case p.ItemTruncate(item_id=item_id, audio_end_ms=end_ms):
                self._truncate(item_id, end_ms)

    def _update(self, update: p.SessionUpdate) -> None:
        if update.turn_detection is False:
            raise p.ProtocolError("Cadence decides the end of each turn itself: turn_detection null (commit and "
                                  "response.create by the client) is not supported", "unsupported_turn_detection",
                                  "session.audio.input.turn_detection")
        if update.voice is not None and update.voice != self.voice:
            self._set_voice(update.voice)
        if update.instructions is not None:
            self.instructions = update.instructions
            self.conversation.session.post(SystemPrompt(update.instructions))
        self.send(self.events.make("session.updated", session=self._session()))

    def _set_voice(self, voice: str) -> None:
        tts = self.engines.tts
        names = tts.voices() if isinstance(tts, VoiceChoice) else []
        chosen = next((v for v in (voice, f"af_{voice}", f"am_{voice}") if v in names), None)
        if chosen is None or not isinstance(tts, VoiceChoice):
            raise p.ProtocolError(f"unknown voice {voice!r}; this voice engine has: {', '.join(names) or 'one voice'}",
                                  "unknown_voice", "session.audio.output.voice")
        tts.set_voice(chosen)
        self.voice = chosen

    def _active(self, response_id: str | None) -> Response | None:
        return next((r for r in list(self._responses.values()) if r.status == "in_progress"
                     and response_id in (None, r.id)), None)

    def _truncate(self, item_id: str, end_ms: int) -> None:
        responses = list(self._responses.values())  # a snapshot: the session thread adds to it
        response = next((r for r in responses if r.item_id == item_id), None)
        if response is None:
            raise p.ProtocolError(f"no assistant item {item_id!r} in this conversation", "item_not_found", "item_id")
        ended = [r for r in responses if r.status != "in_progress"]
        if response.status != "in_progress" and response is not (ended[-1] if ended else None):
            raise p.ProtocolError("only the latest reply can be truncated", "item_not_latest", "item_id")
        if response.status == "in_progress":
            response.reason = "client_cancelled"
            self.conversation.session.post(e.ReplyCancelled(self.conversation.scheduler.clock(), response.turn))
        heard, written = heard_both(response.segments, end_ms / 1000)
        self.conversation.session.post(ReviseReply(written or heard))
        self.send(self.events.make("conversation.item.truncated", item_id=item_id, content_index=0,
                                   audio_end_ms=end_ms))

    # ---- the session's side (session and audio threads) --------------------------------------------------------
    def _observe(self, item: object) -> None:
        match item:
            case e.SpeechStarted(t=t):
                self._user_items += 1
                self._user_item = f"item_{self.session_id}_user_{self._user_items}"
                self.send(self.events.make("input_audio_buffer.speech_started", audio_start_ms=self._ms(t),
                                           item_id=self._user_item))
            case e.SpeechStopped(t=t):
                self.send(self.events.make("input_audio_buffer.speech_stopped", audio_end_ms=self._ms(t),
                                           item_id=self._user_item))
            case e.TranscriptFinal(turn_id=turn, text=text):
                self._transcripts[turn] = text
            case a.CommitReply(turn_id=turn):
                self._commit(turn)
            case e.ReplyAudio(turn_id=turn, segment_index=index, text=text, duration_s=seconds, written=written):
                if (response := self._responses.get(turn)) is not None:
                    response.segments.append((text, written, seconds))
                    self.send(self._delta("response.output_audio_transcript.delta", response,
                                          delta=(" " if index else "") + text))
            case a.CancelReply(turn_id=turn, reason=reason):
                if (response := self._responses.get(turn)) is not None and not response.reason:
                    response.reason = "turn_detected" if reason == "barge_in" else reason
            case e.EngineFailed(stage=stage, reason=reason):
                self.send(self.events.error(f"the {stage} stage failed: {reason}", "engine_failed"))
            case _:
                pass

    def _commit(self, turn: int) -> None:
        number = len(self._responses) + 1
        response = Response(turn, f"resp_{self.session_id}_{number}", f"item_{self.session_id}_reply_{number}")
        self._responses[turn] = response
        self.send(self.events.make("input_audio_buffer.committed", item_id=self._user_item,
                                   previous_item_id=self._last_item or None))
        self.send(self.events.make("conversation.item.input_audio_transcription.completed", item_id=self._user_item,
                                   content_index=0, transcript=self._transcripts.pop(turn, "")))
        self.send(self.events.make("response.created", response={
            "id": response.id, "object": "realtime.response", "status": "in_progress", "output": []}))
        self.send(self.events.make("response.output_item.added", response_id=response.id, output_index=0,
                                   item=response.item("in_progress", "")))
        self._last_item = response.item_id

    def _delta(self, kind: str, response: Response, **fields: Any) -> dict[str, Any]:
        return self.events.make(kind, response_id=response.id, item_id=response.item_id, output_index=0,
                                content_index=0, **fields)

    def _on_audio(self, turn: int, pcm16: bytes) -> None:
        response = self._responses.get(turn)
        if response is not None and response.status == "in_progress":
            response.audio_s += len(pcm16) / 2 / 24000
            self.send(self._delta("response.output_audio.delta", response, delta=p.audio_b64(pcm16)))

    def _on_record(self, record: TurnRecord) -> None:
        """The turn's figures are in: its reply is over (finished, interrupted or cancelled)."""
        response = self._responses.get(record.turn)
        if response is None or response.status != "in_progress":
            return
        failed = response.reason.endswith("_failed")  # an engine failed mid-reply (the client got an error event)
        response.status = "failed" if failed else "cancelled" if record.interrupted else "completed"
        transcript = record.reply
        self.send(self._delta("response.output_audio.done", response))
        self.send(self._delta("response.output_audio_transcript.done", response, transcript=transcript))
        self.send(self.events.make("response.output_item.done", response_id=response.id, output_index=0,
                                   item=response.item("incomplete" if record.interrupted else "completed",
                                                      transcript)))
        metadata = {f"cadence_{k}_ms": f"{v:.0f}" for k, v in record.stages_ms.items() if v is not None}
        if record.decision.get("reason"):
            metadata["cadence_turn_end"] = str(record.decision["reason"])
        details = {"type": response.status, "reason": response.reason or "turn_detected"} if record.interrupted \
            else None
        self.send(self.events.make("response.done", response={
            "id": response.id, "object": "realtime.response", "status": response.status,
            "status_details": details, "output": [response.item(response.status if not record.interrupted
                                                                else "incomplete", transcript)],
            "metadata": metadata, "usage": None}))

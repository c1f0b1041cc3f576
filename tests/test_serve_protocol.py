"""The Realtime protocol's parsing (pure, no models): every client event Cadence takes becomes a typed value, and
every malformed one a ProtocolError with the code the `error` event carries."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from app.server import protocol as p
from app.server.device import ClientAudio, InputOverflow


def parse(**event):
    return p.parse(json.dumps(event))


def test_the_events_a_voice_client_sends_are_parsed():
    audio = base64.b64encode(b"\x01\x00\xff\x7f").decode()
    appended = parse(type="input_audio_buffer.append", audio=audio, event_id="e1")
    assert appended == p.AudioAppend("e1", b"\x01\x00\xff\x7f")
    assert parse(type="input_audio_buffer.clear") == p.AudioClear(None)
    assert parse(type="response.cancel", response_id="r1") == p.ResponseCancel(None, "r1")
    assert parse(type="conversation.item.truncate", item_id="i", content_index=0, audio_end_ms=1500) == \
        p.ItemTruncate(None, "i", 1500)
    update = parse(type="session.update", session={
        "type": "realtime", "instructions": "Be brief.", "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": {"type": "semantic_vad"}},
            "output": {"voice": "alloy"}}})
    assert update == p.SessionUpdate(None, "Be brief.", "alloy", True)
    assert parse(type="session.update", session={}) == p.SessionUpdate(None)


@pytest.mark.parametrize("message, code", [
    ("{oops", "invalid_json"),
    (b"\x00binary", "invalid_message"),
    (json.dumps([1, 2]), "invalid_event"),
    (json.dumps({"type": "conversation.item.create"}), "unknown_event"),
    (json.dumps({"type": "input_audio_buffer.append"}), "invalid_request"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": "***"}), "invalid_audio"),
    (json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"abc").decode()}), "invalid_audio"),
    (json.dumps({"type": "session.update", "session": {"audio": {"output": {"format": {"type": "audio/pcmu"}}}}}),
     "unsupported_audio_format"),
    (json.dumps({"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcm",
                                                                                     "rate": 16000}}}}}),
     "unsupported_audio_format"),
    (json.dumps({"type": "session.update", "session": {"audio": {"input": {"turn_detection": {"type": "x"}}}}}),
     "invalid_request"),
    (json.dumps({"type": "conversation.item.truncate", "item_id": "i", "audio_end_ms": -5}), "invalid_request"),
    (json.dumps({"type": "session.update", "session": "all"}), "invalid_request"),
])
def test_malformed_events_are_protocol_errors_with_a_code(message, code):
    with pytest.raises(p.ProtocolError) as err:
        p.parse(message)
    assert err.value.code == code
    error = p.Events().error(err.value)["error"]
    assert error["code"] == code and error["message"] and error["type"] == "invalid_request_error"


def test_the_client_device_resamples_its_audio_and_bounds_the_buffer():
    sent: list[tuple[int, bytes]] = []
    device = ClientAudio(lambda turn, pcm: sent.append((turn, pcm)), max_buffer_s=1.0)
    tone = (np.sin(2 * np.pi * 440 * np.arange(12000) / 24000) * 12000).astype("<i2").tobytes()  # 0.5 s
    device.append(tone)
    assert device.received_s == pytest.approx(0.5)
    taken = device.read(0, 16000)  # 16 kHz now: ~0.5 s of tone (less the resampler's delay), then silence
    assert 0.4 * 16000 < np.count_nonzero(np.abs(taken) > 0.05) < 0.55 * 16000
    device.append(tone)
    with pytest.raises(InputOverflow, match="at most 1 s"):
        device.append(tone * 3)  # 1.5 s more than a second's buffer
    device.clear()
    assert not np.any(device.read(0, 512))

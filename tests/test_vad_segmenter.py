"""VAD probabilities become speech start/stop events with the right times, and blips do not start speech."""
from __future__ import annotations

from app.conversation.events import SpeechStarted, SpeechStopped
from app.conversation.vad_segmenter import VadSettings, VadState, vad_step

F = 0.032


def feed(probs, state=None):
    state = state or VadState()
    events = []
    for i, p in enumerate(probs):
        state, out = vad_step(state, p, i * F, (i + 1) * F)
        events += out
    return state, events


def test_start_and_stop_times():
    probs = [0.0] * 5 + [0.9] * 10 + [0.0] * 10
    state, events = feed(probs)
    assert events[0] == SpeechStarted(5 * F)
    stop = events[1]
    assert isinstance(stop, SpeechStopped) and abs(stop.speech_s - 10 * F) < 1e-9
    assert abs(stop.t - (15 * F + 7 * F)) < 1e-9  # first frame end at which 0.2 s of non-speech has passed
    assert not state.speaking


def test_single_frame_blip_does_not_start_speech():
    _, events = feed([0.0, 0.9, 0.0, 0.0, 0.9, 0.1])
    assert events == []


def test_hysteresis_keeps_speech_through_middling_frames():
    _, events = feed([0.9, 0.9, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.9])
    assert events == [SpeechStarted(0.0)]


def test_short_dip_is_not_a_pause():
    _, events = feed([0.9] * 3 + [0.0] * 3 + [0.9] * 3 + [0.0] * 8)
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]
    assert abs(events[1].speech_s - 9 * F) < 1e-9


def test_pause_length_is_configurable():
    state = VadState(VadSettings(pause_s=0.5))
    _, events = feed([0.9] * 3 + [0.0] * 10, state)
    assert [type(e) for e in events] == [SpeechStarted]

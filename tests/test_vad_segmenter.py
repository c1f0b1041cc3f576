"""VAD probabilities become speech start/stop events with the right times, and blips do not start speech."""
from __future__ import annotations

from app.conversation.events import SpeechStarted, SpeechStopped
from app.conversation.vad_segmenter import PauseOnset, VadSettings, VadState, vad_step

F = 0.032


def feed(probs, state=None, onsets=False):
    """Every output in order; without `onsets`, the core's events only (no PauseOnset)."""
    state = state or VadState()
    events = []
    for i, p in enumerate(probs):
        state, out = vad_step(state, p, i * F, (i + 1) * F)
        events += [o for o in out if onsets or not isinstance(o, PauseOnset)]
    return state, events


def test_a_pause_onset_marks_every_first_quiet_frame_after_speech():
    probs = [0.0] * 2 + [0.9] * 4 + [0.0] * 2 + [0.9] * 3 + [0.0] * 10
    _, out = feed(probs, onsets=True)
    assert out[0] == SpeechStarted(2 * F)
    assert out[1] == PauseOnset(6 * F)  # the first quiet frame, a pause that did not become a stop
    assert out[2] == PauseOnset(11 * F)  # and again after the speech resumed
    assert isinstance(out[3], SpeechStopped) and len(out) == 4


def test_no_pause_onset_before_speech_or_while_quiet():
    _, out = feed([0.0, 0.9, 0.0, 0.0, 0.0], onsets=True)
    assert out == []
    _, out = feed([0.9, 0.9, 0.4, 0.4, 0.9, 0.9], onsets=True)  # middling frames are still speech
    assert out == [SpeechStarted(0.0)]


def test_a_pause_onset_comes_before_a_stop_in_the_same_frame():
    state = VadState(VadSettings(pause_s=0.02))  # shorter than a frame: the first quiet frame is the stop
    _, out = feed([0.9] * 3 + [0.0] * 2, state, onsets=True)
    assert [type(o) for o in out] == [SpeechStarted, PauseOnset, SpeechStopped]


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


def feed_levels(frames, state=None):
    """Every output for (probability, level dB) frames."""
    state = state or VadState()
    events = []
    for i, (p, db) in enumerate(frames):
        state, out = vad_step(state, p, i * F, (i + 1) * F, db)
        events += out
    return state, events


def test_the_level_marks_the_pause_onset_before_silero_does():
    # Silero stays above its threshold for 3 frames after the voice stops; the level falls 60 dB at once
    frames = [(0.9, -20.0)] * 6 + [(0.9, -80.0)] * 3 + [(0.0, -80.0)] * 8
    _, out = feed_levels(frames)
    assert out[1] == PauseOnset(6 * F)  # the first of `onset_frames` quiet frames, not Silero's first at 9
    assert [type(o) for o in out] == [SpeechStarted, PauseOnset, SpeechStopped]  # one onset per pause


def test_a_level_dip_inside_speech_needs_two_frames_and_each_pause_gets_one_onset():
    frames = ([(0.9, -20.0)] * 4 + [(0.9, -70.0)] + [(0.9, -22.0)] * 3  # one quiet frame (a stop consonant)
              + [(0.9, -70.0)] * 2 + [(0.9, -21.0)] * 2  # a short pause: an onset
              + [(0.9, -75.0)] * 2 + [(0.0, -75.0)] * 8)  # the end: a new onset, then the stop
    _, out = feed_levels(frames)
    onsets = [o for o in out if isinstance(o, PauseOnset)]
    assert onsets == [PauseOnset(8 * F), PauseOnset(12 * F)]
    assert isinstance(out[-1], SpeechStopped)


def test_noise_close_to_the_voice_leaves_the_onset_to_silero():
    frames = [(0.9, -20.0)] * 6 + [(0.9, -40.0)] * 3 + [(0.0, -40.0)] * 8  # only 20 dB under the voice
    _, out = feed_levels(frames)
    assert out[1] == PauseOnset(9 * F)


def test_the_level_onset_can_be_turned_off():
    frames = [(0.9, -20.0)] * 6 + [(0.9, -80.0)] * 3 + [(0.0, -80.0)] * 8
    _, out = feed_levels(frames, VadState(VadSettings(onset_drop_db=0.0)))
    assert out[1] == PauseOnset(9 * F)

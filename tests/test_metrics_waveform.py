"""Waveform V2V finds the gap between the user's last word and the agent's first sound on a real recording."""
from __future__ import annotations

import numpy as np

from app.metrics.stats import summarize
from app.metrics.waveform import v2v_from_recording
from engines.audio_io import read_audio
from tests.conftest import SPEECH


def _recording(user, agent, end, gap, rate=16000):
    left = np.concatenate([user, np.zeros(int(rate * 3), np.float32)])
    right = np.zeros_like(left)
    start = int((end + gap) * rate)
    right[start:start + len(agent)] = agent[: len(right) - start]
    return np.stack([left, right], 1)


def test_gap_between_real_speech_and_agent_onset():
    rate = 16000
    user = read_audio(SPEECH / "en_LDC93S1.wav")
    agent = read_audio(SPEECH / "en_mr_quilter.wav")
    end = np.nonzero(np.abs(user) > 10 ** (-45 / 20))[0][-1] / rate  # last sample above -45 dBFS
    short, long = (v2v_from_recording(_recording(user, agent, end, gap), rate, len(user) / rate)
                   for gap in (0.4, 0.9))
    assert short is not None and long is not None
    assert abs((long - short) - 500) < 1.0  # the agent edge is found to the sample
    assert abs(short - 400) < 80  # the user's edge within a few 10 ms windows of the sample-level edge


def test_no_agent_audio_gives_none():
    stereo = np.zeros((16000, 2), np.float32)
    stereo[:4000, 0] = 0.3
    assert v2v_from_recording(stereo, 16000, 0.25) is None


def test_summary_percentiles():
    s = summarize([100, 200, None, 300, 400])
    assert s["n"] == 4 and s["min"] == 100 and s["max"] == 400 and s["p50"] == 250
    assert summarize([])["p50"] is None

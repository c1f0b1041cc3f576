"""Voice-to-voice measured on a recording, the way one measures it in an audio editor: on a stereo file with the
user on the left and the agent on the right, find where the user's speech ends and where the agent's voice starts.
Independent of the scheduler's spans, so the two figures check each other."""
from __future__ import annotations

import numpy as np

WINDOW_S = 0.010
FLOOR_DB = -55.0  # quieter than this is silence
BELOW_PEAK_DB = 30.0  # speech ends where the level stays this far under its peak
GAP_S = 1.0  # a longer silence separates two utterances


def envelope_db(x: np.ndarray, rate: int) -> np.ndarray:
    """RMS level in dBFS per 10 ms window."""
    n = int(rate * WINDOW_S)
    frames = len(x) // n
    if frames == 0:
        return np.zeros(0)
    rms = np.sqrt(np.mean(x[: frames * n].reshape(frames, n).astype(np.float64) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-10))


def speech_end_s(channel: np.ndarray, rate: int, before_s: float, lookback_s: float = 30.0) -> float | None:
    """End of the last utterance before `before_s`, as an editor user would mark it. The utterance is the last
    stretch of sound above a low floor (pauses under `GAP_S` inside it); its end is the end of the last 10 ms window
    within `BELOW_PEAK_DB` of the utterance's loudest window, so quiet and loud recordings are judged alike and the
    answer does not depend on how much silence surrounds it."""
    start = max(0.0, before_s - lookback_s)
    env = envelope_db(channel[int(start * rate): int(before_s * rate)], rate)
    above_floor = np.nonzero(env > FLOOR_DB)[0]
    if len(above_floor) == 0:
        return None
    gaps = np.nonzero(np.diff(above_floor) > GAP_S / WINDOW_S)[0]
    first = above_floor[gaps[-1] + 1] if len(gaps) else above_floor[0]
    rough = above_floor[-1]
    threshold = max(FLOOR_DB, env[first:rough + 1].max() - BELOW_PEAK_DB)
    loud = np.nonzero(env[: rough + 1] > threshold)[0]
    return start + (loud[-1] + 1) * WINDOW_S


def onset_s(channel: np.ndarray, rate: int, after_s: float, floor_db: float = -60.0) -> float | None:
    """First sample after `after_s` where the channel rises above the floor (the agent channel is digital silence
    between replies, so this finds its first sample of sound)."""
    seg = channel[int(after_s * rate):]
    above = np.nonzero(np.abs(seg) > 10 ** (floor_db / 20))[0]
    return None if len(above) == 0 else after_s + above[0] / rate


def v2v_from_recording(stereo: np.ndarray, rate: int, user_end_hint_s: float, search_s: float = 0.5) -> float | None:
    """Milliseconds from the end of the user's speech to the agent's first sound, for the turn whose user speech
    ends near `user_end_hint_s` (the hint only picks the turn; both edges are found on the waveform)."""
    agent = onset_s(stereo[:, 1], rate, max(0.0, user_end_hint_s - search_s))
    if agent is None:
        return None
    end = speech_end_s(stereo[:, 0], rate, before_s=agent)
    return None if end is None else (agent - end) * 1000.0

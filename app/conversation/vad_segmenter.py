"""Per-frame speech probabilities -> SpeechStarted / PauseOnset / SpeechStopped, pure.

Hysteresis as Silero recommends: speech starts after `start_frames` frames at or above `threshold`, and stops
once the probability has stayed below `threshold - 0.15` for `pause_s`. SpeechStarted carries the start time of the
first speech frame; SpeechStopped is emitted `pause_s` after the last speech frame and carries how long the speech
lasted, so the turn-taking core knows both when the user stopped and when it found out. PauseOnset marks the first
quiet frame after speech (a pause that may become a stop): the session decodes what the user said so far there,
so that little is left once the pause is confirmed. It is not an event of the turn-taking core."""
from __future__ import annotations

from dataclasses import dataclass, replace

from app.conversation.events import SpeechStarted, SpeechStopped


@dataclass(frozen=True, slots=True)
class PauseOnset:
    """The first frame below the off-threshold after a speech frame; ``t`` is that frame's start."""

    t: float


VadOutput = SpeechStarted | PauseOnset | SpeechStopped


@dataclass(frozen=True, slots=True)
class VadSettings:
    threshold: float = 0.5
    pause_s: float = 0.2
    start_frames: int = 2

    @property
    def off_threshold(self) -> float:
        return max(0.01, self.threshold - 0.15)


@dataclass(frozen=True, slots=True)
class VadState:
    settings: VadSettings = VadSettings()
    speaking: bool = False
    run: int = 0  # consecutive frames at or above the threshold (while not speaking)
    run_start: float = 0.0  # start time of that run
    started_at: float = 0.0  # start of the current speech
    last_speech_end: float = 0.0  # end time of the last frame that was speech


def vad_step(state: VadState, probability: float, t_start: float, t_end: float
             ) -> tuple[VadState, tuple[VadOutput, ...]]:
    """Feed one frame (its probability and its start/end times on the session clock)."""
    cfg = state.settings
    if not state.speaking:
        if probability < cfg.threshold:
            return (replace(state, run=0) if state.run else state), ()
        run_start = t_start if state.run == 0 else state.run_start
        if state.run + 1 < cfg.start_frames:
            return replace(state, run=state.run + 1, run_start=run_start), ()
        new = replace(state, speaking=True, run=0, started_at=run_start, last_speech_end=t_end)
        return new, (SpeechStarted(run_start),)
    if probability >= cfg.off_threshold:
        return replace(state, last_speech_end=t_end), ()
    # the first quiet frame follows the last speech frame directly (half a frame of slack: the times are floats)
    first_quiet = t_start - state.last_speech_end < (t_end - t_start) / 2
    onset: tuple[VadOutput, ...] = (PauseOnset(t_start),) if first_quiet else ()
    if t_end - state.last_speech_end >= cfg.pause_s:
        speech_s = state.last_speech_end - state.started_at
        return replace(state, speaking=False, run=0), (*onset, SpeechStopped(t_end, speech_s=speech_s))
    return state, onset

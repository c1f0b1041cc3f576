"""Per-frame speech probabilities -> SpeechStarted / PauseOnset / SpeechStopped, pure.

Hysteresis as Silero recommends: speech starts after `start_frames` frames at or above `threshold`, and stops
once the probability has stayed below `threshold - 0.15` for `pause_s`. SpeechStarted carries the start time of the
first speech frame; SpeechStopped is emitted `pause_s` after the last speech frame and carries how long the speech
lasted, so the turn-taking core knows both when the user stopped and when it found out. PauseOnset marks the first
quiet frame after speech (a pause that may become a stop): the session decodes what the user said so far there,
so that little is left once the pause is confirmed. It is not an event of the turn-taking core.

Silero's probability stays high for ~90 ms after the last word (measured on the bench questions), so the onset also
comes from the frames' level when they give it: `onset_frames` frames in a row `onset_drop_db` under the loudest
frame of the speech so far (a clean microphone: the room is far quieter than the voice; with noise close to the
voice, the level never drops that far and Silero's first quiet frame marks the onset as before). One onset per pause:
a level that rises again (the user went on) allows the next."""
from __future__ import annotations

from dataclasses import dataclass, replace

from app.conversation.events import SpeechStarted, SpeechStopped

NO_LEVEL_DB = -200.0  # the loudest frame before any level was known


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
    onset_drop_db: float = 35.0  # a frame this far under the speech's loudest frame is quiet (0: level unused)
    onset_frames: int = 2  # ... after this many such frames in a row

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
    peak_db: float = NO_LEVEL_DB  # the loudest frame of the current speech
    quiet_frames: int = 0  # frames in a row far under that (while the VAD still says speech)
    quiet_since: float = 0.0  # start of the first of them
    onset_sent: bool = False  # this pause's PauseOnset is out


def vad_step(state: VadState, probability: float, t_start: float, t_end: float, level_db: float | None = None
             ) -> tuple[VadState, tuple[VadOutput, ...]]:
    """Feed one frame (its probability, its start/end times on the session clock and, when known, its level in
    dB)."""
    cfg = state.settings
    if cfg.onset_drop_db <= 0:
        level_db = None
    if not state.speaking:
        if probability < cfg.threshold:
            return (replace(state, run=0) if state.run else state), ()
        run_start = t_start if state.run == 0 else state.run_start
        if state.run + 1 < cfg.start_frames:
            return replace(state, run=state.run + 1, run_start=run_start), ()
        new = replace(state, speaking=True, run=0, started_at=run_start, last_speech_end=t_end,
                      peak_db=level_db if level_db is not None else NO_LEVEL_DB, quiet_frames=0, onset_sent=False)
        return new, (SpeechStarted(run_start),)
    if probability >= cfg.off_threshold:
        if level_db is None:
            return replace(state, last_speech_end=t_end, onset_sent=False), ()
        if level_db > state.peak_db - cfg.onset_drop_db:  # the voice: a later drop is a new pause
            return replace(state, last_speech_end=t_end, peak_db=max(state.peak_db, level_db), quiet_frames=0,
                           onset_sent=False), ()
        quiet, since = state.quiet_frames + 1, state.quiet_since if state.quiet_frames else t_start
        fire = quiet >= cfg.onset_frames and not state.onset_sent
        new = replace(state, last_speech_end=t_end, quiet_frames=quiet, quiet_since=since,
                      onset_sent=state.onset_sent or fire)
        return new, ((PauseOnset(since),) if fire else ())
    # the first quiet frame follows the last speech frame directly (half a frame of slack: the times are floats)
    first_quiet = t_start - state.last_speech_end < (t_end - t_start) / 2
    onset: tuple[VadOutput, ...] = (PauseOnset(t_start),) if first_quiet and not state.onset_sent else ()
    if t_end - state.last_speech_end >= cfg.pause_s:
        speech_s = state.last_speech_end - state.started_at
        return replace(state, speaking=False, run=0), (*onset, SpeechStopped(t_end, speech_s=speech_s))
    return (replace(state, onset_sent=True) if onset else state), onset

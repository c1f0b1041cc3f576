"""Runs one headless conversation: the scripted user is fed at real-time pace through the same session the desktop
app runs, the agent's voice is recorded on the same clock, and every turn is measured twice (spans and waveform)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from app.audio.echo_cancel import EchoCancellingDevice, EchoStats, with_echo_cancellation
from app.audio.echo_path import EchoPath
from app.audio.headless import HeadlessDuplex
from app.audio.playback import PlaybackBuffer
from app.config import Config
from app.conversation.actions import PausePlayback
from app.conversation.session import Engines, Session
from app.headless.script import ScriptedInput, UserTurn
from app.metrics.turns import TurnCollector, TurnRecord
from app.metrics.waveform import v2v_from_recording
from app.runtime import new_scheduler, session_settings, system_prompt

RATE = 16000
AGREEMENT_MS = 40.0


@dataclass
class HeadlessResult:
    records: list[TurnRecord]
    stereo: np.ndarray  # [n, 2]: left = user, right = agent
    rate: int
    engines: dict[str, str]
    waveform_v2v_ms: list[float | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    max_lateness_ms: float = 0.0
    echo: EchoStats | None = None  # the echo canceller's delay estimate and reduction (None: no canceller)
    agent_paused: int = 0  # times the agent held its audio because it heard speech (barge-ins and false alarms)


def run_conversation(engines: Engines, cfg: Config, turns: list[UserTurn], timeout_s: float = 600.0,
                     echo: EchoPath | None = None, on_session=None, keep_recording: bool = True) -> HeadlessResult:
    """`echo` feeds the agent's output back into the microphone through a simulated speaker-to-mic path; the
    session hears it through the echo canceller when `cfg.audio` turns cancellation on (without `echo` there is
    no speaker path, so no canceller, as with headphones).
    `on_session(session)` is called before the session starts (a soak subscribes to its notifications and
    spans); `keep_recording=False` keeps no stereo recording (it grows by ~8 MB a minute) and so no waveform V2V."""
    scheduler = new_scheduler(cfg)
    playback = PlaybackBuffer(RATE)
    session: Session | None = None
    source = ScriptedInput(turns, RATE, agent_idle=lambda: session is not None and session.idle.is_set(),
                           agent_playing_s=lambda: session.reply_playing_s() if session else None)
    device = HeadlessDuplex(source, playback, RATE, echo=echo.build(RATE, 512) if echo else None,
                            record=keep_recording)
    # a headless run has no loudspeaker unless one is simulated: like headphones, nothing to cancel without it
    heard = with_echo_cancellation(device, cfg.audio) if echo else device
    session = Session(engines, heard, scheduler, system_prompt(cfg), session_settings(cfg), playback=playback)
    collector = TurnCollector(scheduler)
    session.subscribe(collector)
    paused = []
    session.subscribe(lambda item: paused.append(1) if isinstance(item, PausePlayback) else None)
    if on_session is not None:
        on_session(session)
    session.start()
    try:
        finished = device.input_over.wait(timeout_s)
    finally:
        session.stop()
        scheduler.close()
    result = HeadlessResult(collector.records, device.recording(), RATE, dict(engines.names),
                            history=list(session.history.as_chat()), max_lateness_ms=device.max_lateness_s * 1000,
                            echo=heard.stats(settled=True) if isinstance(heard, EchoCancellingDevice) else None,
                            agent_paused=len(paused))
    if not finished:
        result.notes.append(f"the session did not end within {timeout_s:.0f} s")
    for index in source.gave_up:
        result.notes.append(f"the agent never went quiet after user turn {index + 1}")
    if len(source.started_at) < len(turns):
        result.notes.append(f"only {len(source.started_at)} of {len(turns)} user turns were played")
    t0 = device.clock.t0 if device.clock else time.perf_counter()
    for record in result.records:
        wave = None
        if record.user_speech_end is not None and len(result.stereo):
            wave = v2v_from_recording(result.stereo, RATE, record.user_speech_end - t0)
        result.waveform_v2v_ms.append(wave)
    return result

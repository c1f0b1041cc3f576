"""Runs one headless conversation: the scripted user is fed at real-time pace through the same session the desktop
app runs, the agent's voice is recorded on the same clock, and every turn is measured twice (spans and waveform)."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.audio.echo_cancel import EchoStats
from app.audio.echo_path import EchoPath
from app.audio.headless import HeadlessDuplex
from app.audio.playback import PlaybackBuffer
from app.config import Config
from app.conversation.actions import PausePlayback
from app.conversation.session import Notification, Session
from app.headless.script import ScriptedInput, UserTurn
from app.metrics.turns import TurnRecord
from app.metrics.waveform import v2v_from_recording
from app.metrics.work import work_summary
from app.runtime import RATE, Conversation, build_conversation
from engines.engine_set import Engines

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
    work: dict = field(default_factory=dict)  # speculations and queue waits (app/metrics/work.py)


def run_conversation(engines: Engines, cfg: Config, turns: list[UserTurn], timeout_s: float = 600.0,
                     echo: EchoPath | None = None, on_session: Callable[[Session], None] | None = None,
                     on_end: Callable[[Session], None] | None = None,
                     keep_recording: bool = True) -> HeadlessResult:
    """`echo` feeds the agent's output back into the microphone through a simulated speaker-to-mic path; the
    session hears it through the echo canceller when `cfg.audio` turns cancellation on (without `echo` there is
    no speaker path, so no canceller, as with headphones).
    `on_session(session)` is called before the session starts (a soak subscribes to its notifications and
    spans), `on_end(session)` when the script is over, before the session stops (tests look inside it);
    `keep_recording=False` keeps no stereo recording (it grows by ~8 MB a minute) and so no waveform V2V."""
    conversation: Conversation | None = None

    def session() -> Session | None:
        return conversation.session if conversation is not None else None

    source = ScriptedInput.following(turns, RATE, session)
    devices: list[HeadlessDuplex] = []

    def open_device(playback: PlaybackBuffer) -> HeadlessDuplex:
        devices.append(HeadlessDuplex(source, playback, RATE, echo=echo.build(RATE, 512) if echo else None,
                                      record=keep_recording))
        return devices[0]

    paused: list[PausePlayback] = []

    def count_pauses(item: Notification) -> None:
        if isinstance(item, PausePlayback):
            paused.append(item)

    # a headless run has no loudspeaker unless one is simulated: like headphones, nothing to cancel without it
    conversation = build_conversation(cfg, engines, open_device, cancel_echo=echo is not None,
                                      observers=[count_pauses])
    device = devices[0]
    if on_session is not None:
        on_session(conversation.session)
    conversation.start()
    try:
        finished = device.input_over.wait(timeout_s)
        if on_end is not None:
            on_end(conversation.session)
    finally:
        conversation.stop()
    result = HeadlessResult(conversation.collector.records, device.recording(), RATE, dict(engines.names),
                            history=list(conversation.session.history.as_chat()),
                            max_lateness_ms=device.max_lateness_s * 1000,
                            echo=conversation.echo_stats(settled=True), agent_paused=len(paused),
                            work=work_summary(conversation.scheduler.spans.snapshot()))
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

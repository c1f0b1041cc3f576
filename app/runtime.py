"""The one place that wires a conversation: settings, playback buffer, audio device (echo-cancelled as the audio
settings say), scheduler, session and the per-turn metrics. Headless mode, the benchmarks, the screenshot demo and
the desktop window all start conversations through `build_conversation`; only the device they open differs.

Everything that can fail for a user's reason fails before anything runs: the settings were checked when the config
was loaded (`app.config.runtime_settings`), and the device factory resolves the devices before the scheduler's
threads exist. A conversation that was built is started once and stopped once (`Conversation.stop` closes the
scheduler and every subscription, so a failed start or a hot swap leaves no thread behind)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from app.audio.duplex import DuplexDevice
from app.audio.echo_cancel import EchoCancellingDevice, EchoStats, with_echo_cancellation
from app.audio.playback import PlaybackBuffer
from app.config import Config, runtime_settings
from app.conversation.history import History
from app.conversation.session import Observer, Session
from app.metrics.turns import TurnCollector, TurnRecord
from engines.engine_set import Engines
from scheduler import Scheduler, Span, configure_thread_pools

TURN_RANGE = 1 << 20  # turn ids one conversation may use (a shared scheduler's conversations get disjoint ranges)
RATE = 16000  # the session's rate: microphone blocks, playback, every input-side engine
OpenDevice = Callable[[PlaybackBuffer], DuplexDevice]  # resolves (and may refuse) the devices; starts nothing
Wrap = Callable[[DuplexDevice], DuplexDevice]


@dataclass
class Conversation:
    """A wired conversation, not yet started. `device` is what the session hears through (the echo canceller
    and any `wrap` around the opened device); `opened` is the device itself."""

    session: Session
    scheduler: Scheduler
    playback: PlaybackBuffer
    opened: DuplexDevice
    device: DuplexDevice
    collector: TurnCollector
    canceller: EchoCancellingDevice | None = None  # the echo canceller between the device and the session
    unsubscribe: list[Callable[[], None]] = field(default_factory=list)
    owns_scheduler: bool = True  # False when several conversations share one (cadence serve)

    def start(self) -> None:
        """Warm the LLM's cache, start the session thread and open the audio. On a DeviceError call `stop()`."""
        self.session.start()

    def stop(self) -> None:
        self.session.stop()
        if self.owns_scheduler:
            self.scheduler.close()
        else:  # a shared scheduler lives on: drop this conversation's work
            self.scheduler.cancel_turn(self.session.state.turn_id, wait=False)
        for unsubscribe in self.unsubscribe:
            unsubscribe()
        self.unsubscribe.clear()

    def echo_stats(self, settled: bool = False) -> EchoStats | None:
        """The echo canceller's figures, or None when there is none (headphones, cancellation off, headless)."""
        return self.canceller.stats(settled) if self.canceller is not None else None


def build_conversation(cfg: Config, engines: Engines, open_device: OpenDevice, *, cancel_echo: bool = True,
                       wrap: Wrap | None = None, history: History | None = None,
                       observers: Sequence[Observer] = (), on_span: Callable[[Span], None] | None = None,
                       on_record: Callable[[TurnRecord], None] | None = None, scheduler: Scheduler | None = None,
                       first_turn: int = 0) -> Conversation:
    """Wire a conversation with `engines` on the device `open_device` returns. `cancel_echo`: put the echo
    canceller the audio settings ask for between the device and the session (a device with no loudspeaker, as a
    headless run without a simulated echo, has nothing to cancel). `history`: go on with an earlier
    conversation (its system prompt is replaced by the config's). Observers see every event, action and phase;
    `on_span` every span; `on_record` every turn's figures. `scheduler`: share one (several conversations on one
    machine, `cadence serve`) instead of making this conversation's own; then give each conversation its own range
    of turn ids (`first_turn`), since the scheduler cancels and groups work by turn."""
    settings = runtime_settings(cfg)
    playback = PlaybackBuffer(RATE)
    opened = open_device(playback)
    device = with_echo_cancellation(opened, cfg.audio) if cancel_echo else opened
    canceller = device if isinstance(device, EchoCancellingDevice) else None
    if wrap is not None:
        device = wrap(device)
    owns = scheduler is None
    if scheduler is None:
        configure_thread_pools(cfg.scheduler.device_threads)
        scheduler = Scheduler(settings.scheduler, device_barrier=engines.device_barrier())
    try:
        session = Session(engines, device, scheduler, settings.system_prompt, settings.session, playback=playback,
                          first_turn=first_turn)
        if history is not None:
            session.history = history.with_system(settings.system_prompt)
        collector = TurnCollector(scheduler, turns=range(first_turn, first_turn + TURN_RANGE))
        if on_record is not None:
            collector.listeners.append(on_record)
        for observer in observers:
            session.subscribe(observer)
        session.subscribe(collector)
        conversation = Conversation(session, scheduler, playback, opened, device, collector, canceller,
                                    owns_scheduler=owns)
        if on_span is not None:
            conversation.unsubscribe.append(scheduler.spans.subscribe(on_span))
    except BaseException:
        if owns:
            scheduler.close()
        raise
    return conversation

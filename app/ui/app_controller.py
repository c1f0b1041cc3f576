"""Runs the conversation behind the window: loads the engines on a worker thread (progress through the bridge),
wires the conversation exactly as headless mode does (`app.runtime.build_conversation`) but on the sound card, and
swaps engines when the settings change.

Hot swap: the config was validated when it was made (`app.config.from_dict`: the settings dialog refuses a bad
one before anything stops); the new engines are built on the worker thread while the old session keeps talking
(engines whose settings did not change are reused) and the new conversation is wired; only then does the old one
stop, and the new one start with the conversation history kept, and the config is saved. On a failure the error is
shown and the old conversation goes on. The window calls only `start`, `apply`, `set_muted`, `restart_audio` and
`shutdown`."""
from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app import config as config_mod
from app.audio.duplex import Block, BlockHandler, DuplexDevice, Mutable, Restartable
from app.audio.echo_cancel import EchoStats
from app.audio.playback import PlaybackBuffer
from app.config import Config
from app.conversation.actions import PausePlayback
from app.conversation.session import Notification, Session
from app.engine_factory import build_engines
from app.errors import UserError
from app.runtime import Conversation, build_conversation
from app.ui.bridge import UiBridge
from app.ui.view_models import LatencySnapshot, state_label
from engines.engine_set import Engines

log = logging.getLogger("cadence.ui")
AUDIO_RETRY_S = 2.0  # with no sound device when the conversation should start, look for one this often
WARM_UP_WAIT_S = 60.0  # "ready" waits at most this long for the system prompt to be cached
DeviceFactory = Callable[[Config, PlaybackBuffer, "AppController"], DuplexDevice]


def sound_card(cfg: Config, playback: PlaybackBuffer, controller: AppController) -> DuplexDevice:
    from app.audio.sounddevice_device import SoundDeviceDuplex

    def on_status(message: str) -> None:  # the device went away (monitor thread)
        controller.bridge.audio_problem.emit(message)
        controller.bridge.state_changed.emit("no-audio", "No audio device")

    def on_recovered(message: str) -> None:  # ... and came back: the monitor reopened it
        controller.bridge.audio_problem.emit("")
        controller.bridge.state_changed.emit(*controller._state())
        controller.bridge.progress.emit(message)

    return SoundDeviceDuplex(playback, cfg.audio.input_device, cfg.audio.output_device, on_status=on_status,
                             on_recovered=on_recovered, output_latency_s=cfg.audio.output_latency_ms / 1000)


class LevelTap:
    """Wraps a device: keeps the RMS of the last microphone block for the meter, zeroes the mic when muted."""

    def __init__(self, device: DuplexDevice):
        self.device, self.level, self.muted = device, 0.0, False
        self.rate, self.block = device.rate, device.block

    def start(self, on_block: BlockHandler) -> None:
        def tap(block: Block) -> None:
            if self.muted:
                block = dataclasses.replace(block, mic=np.zeros_like(block.mic))
            self.level = float(np.sqrt(np.mean(np.square(block.mic, dtype=np.float64)))) if len(block.mic) else 0.0
            on_block(block)

        self.device.start(tap)

    def stop(self) -> None:
        self.device.stop()

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
        if isinstance(self.device, Mutable):  # the sound card also stops counting its input as echo reference
            self.device.muted = muted


def _log_pause(item: Notification) -> None:
    """One stderr line each time the agent holds its voice because it heard speech (a barge-in, or the echo of
    its own voice if cancellation fails): an event, never words."""
    if isinstance(item, PausePlayback):
        print(f"cadence: paused for speech turn={item.turn_id}", file=sys.stderr, flush=True)


class AppController:
    def __init__(self, cfg: Config, bridge: UiBridge, config_file: Path | None = None,
                 device_factory: DeviceFactory = sound_card):
        self.cfg, self.bridge, self.config_file = cfg, bridge, config_file
        self.device_factory = device_factory
        self.engines: Engines | None = None
        self.conversation: Conversation | None = None
        self.device: LevelTap | None = None  # what the session hears through: the level meter's tap
        self.muted = False
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()  # one load or swap at a time
        self._closing = threading.Event()
        self._looking: threading.Thread | None = None  # looks for a sound device while there is none
        bridge.latency_changed.connect(self._log_turn)  # the same snapshot the graphs draw

    @property
    def session(self) -> Session | None:
        return self.conversation.session if self.conversation is not None else None

    def _log_turn(self, snapshot: LatencySnapshot) -> None:
        """One stderr line per turn the graphs show: timings only, never words (observable by tests and users)."""
        ms = {s.stage: s.last_ms for s in snapshot.series.values() if s.last_ms is not None}
        echo = self.echo_stats()
        if echo is not None and echo.delay_ms is not None:
            ms["echo_delay"] = echo.delay_ms
        print(f"cadence: turn {snapshot.turns_total} " + " ".join(f"{k}_ms={v:.0f}" for k, v in ms.items()),
              file=sys.stderr, flush=True)

    # ---- what the window calls -----------------------------------------------------------------------------
    def start(self) -> None:
        """Load the engines for the current config and start listening (in the background)."""
        self._run_worker(self.cfg, save=False)

    def apply(self, cfg: Config) -> bool:
        """Hot swap to `cfg` in the background; False (and a message) while an earlier load is still running."""
        if self.busy():
            self.bridge.error.emit("still loading the previous settings: try again in a moment")
            return False
        self._run_worker(cfg, save=True)
        return True

    def busy(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running load or swap (tests, shutdown); True when none is running."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        return not self.busy()

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
        if self.device is not None:
            self.device.set_muted(muted)

    def echo_stats(self) -> EchoStats | None:
        """The echo canceller's figures (delay estimate, echo reduction) or None when it is off."""
        return self.conversation.echo_stats() if self.conversation is not None else None

    def mic_level(self) -> float:
        return self.device.level if self.device is not None and self.session is not None else 0.0

    def restart_audio(self) -> None:
        """Reopen the audio device after it disappeared, or start the session once a device is there."""
        from app.audio.sounddevice_device import DeviceError

        try:
            if self.busy():
                return
            opened = self.conversation.opened if self.conversation is not None else None
            if opened is not None and isinstance(opened, Restartable):
                opened.restart()
            elif self.conversation is None and self.engines is not None:
                with self._lock:
                    if self._closing.is_set():  # the window closed meanwhile
                        return
                    self._swap(self.cfg, self.engines)
            self.bridge.audio_problem.emit("")
            self.bridge.state_changed.emit(*self._state())
            self._await_warm_up()
            self.bridge.progress.emit("ready: talk to me" if self.session is not None else "")
        except DeviceError as exc:
            self.bridge.audio_problem.emit(str(exc))

    def _look_for_device(self) -> None:
        """No sound device when the conversation was to start: try again every AUDIO_RETRY_S (as Restart audio
        does) until a session runs or the window closes."""
        def look() -> None:
            while not self._closing.wait(AUDIO_RETRY_S) and self.session is None:
                self.restart_audio()

        if self._looking is None or not self._looking.is_alive():
            self._looking = threading.Thread(target=look, name="audio-retry", daemon=True)
            self._looking.start()

    def shutdown(self) -> None:
        self._closing.set()
        self.wait(30)
        with self._lock:
            self._stop_session()

    # ---- worker thread -------------------------------------------------------------------------------------------
    def _run_worker(self, cfg: Config, save: bool) -> None:
        self.bridge.loading.emit(True)
        if self.session is None:  # a running conversation keeps showing its own state during a hot swap
            self.bridge.state_changed.emit("loading", "Loading")
        self._worker = threading.Thread(target=self._load, args=(cfg, save), name="model-loader", daemon=True)
        self._worker.start()

    def _load(self, cfg: Config, save: bool) -> None:
        from app.audio.sounddevice_device import DeviceError

        try:
            with self._lock:
                running = self.session is not None
                try:
                    reuse = (self.cfg, self.engines) if self.engines is not None else None
                    engines = build_engines(cfg, self.bridge.progress.emit, reuse)
                except Exception as exc:  # ModelError, a bad file, a missing extra: keep what runs
                    log.log(logging.INFO if isinstance(exc, UserError) else logging.ERROR, "loading failed: %s",
                            exc, exc_info=not isinstance(exc, UserError))
                    keep = "; the previous settings stay in use" if running else ""
                    self.bridge.error.emit(f"could not load the models: {exc}{keep}")
                    return
                self.bridge.progress.emit("starting the conversation")
                try:
                    self._swap(cfg, engines)
                    self.bridge.audio_problem.emit("")
                except DeviceError as exc:
                    if self.session is not None:  # the old session goes on with the old settings
                        self.bridge.error.emit(f"{exc}; the previous settings stay in use")
                        return
                    self.cfg, self.engines = cfg, engines  # ready to start once a device is there
                    self.bridge.audio_problem.emit(str(exc))
                    self._look_for_device()
                except Exception as exc:  # a config that was not validated, a bug: what runs keeps running
                    log.log(logging.INFO if isinstance(exc, UserError) else logging.ERROR, "starting failed: %s",
                            exc, exc_info=not isinstance(exc, UserError))
                    keep = "; the previous settings stay in use" if self.session is not None else ""
                    self.bridge.error.emit(f"could not start the conversation: {exc}{keep}")
                    return
                if save:
                    config_mod.save(cfg, self.config_file)
            self._await_warm_up()
        finally:
            if self.engines is not None:
                self.bridge.ready.emit(dict(self.engines.names))
            self.bridge.progress.emit("ready: talk to me" if self.session is not None else "")
            if self.session is not None:
                print("cadence: ready", file=sys.stderr, flush=True)
            self.bridge.state_changed.emit(*self._state())
            self.bridge.loading.emit(False)

    def _await_warm_up(self) -> None:
        """Until the system prompt is in the LLM's cache the first answer is seconds slower (CPU): say so, and say
        "ready" only after it (the conversation listens already)."""
        session = self.session
        if session is None or session.ready.is_set():
            return
        self.bridge.progress.emit("preparing the language model")
        deadline = time.monotonic() + WARM_UP_WAIT_S
        while not session.ready.wait(0.1) and not self._closing.is_set() and time.monotonic() < deadline:
            pass

    def _state(self) -> tuple[str, str]:
        """What the state indicator should say once a load is over."""
        if self.session is not None:
            return state_label(self.session.state.phase)
        return ("no-audio", "No audio device") if self.engines is not None else ("no-audio", "Models not loaded")

    def _swap(self, cfg: Config, engines: Engines) -> None:
        """Replace the running conversation by one with `engines`, keeping the history (the caller holds the
        lock). The new one is wired first: a DeviceError from the device factory (a device that is not there) or
        any other failure leaves the running conversation untouched; a DeviceError when the new one opens the
        device leaves none running."""
        taps: list[LevelTap] = []

        def tap(device: DuplexDevice) -> DuplexDevice:
            taps.append(LevelTap(device))  # the meter shows what the session hears
            taps[0].set_muted(self.muted)
            return taps[0]

        old = self.conversation
        new = build_conversation(cfg, engines, lambda playback: self.device_factory(cfg, playback, self), wrap=tap,
                                 history=old.session.history if old is not None else None,
                                 observers=[self.bridge.on_session_item, _log_pause],
                                 on_span=self.bridge.on_span, on_record=self.bridge.on_turn_record)
        self._stop_session()
        try:
            new.start()
        except BaseException:  # a device that cannot be opened (DeviceError), or worse: no thread left behind
            new.stop()
            raise
        self.cfg, self.engines = cfg, engines
        self.conversation, self.device = new, taps[0]

    def _stop_session(self) -> None:
        conversation, self.conversation = self.conversation, None
        if conversation is not None:
            conversation.stop()

"""Runs the conversation behind the window: loads the engines on a worker thread (progress through the bridge),
assembles the scheduler and the session exactly as headless mode does (app/runtime.py) but on the sound card, and
swaps engines when the settings change.

Hot swap: the new engines are built on the worker thread while the old session keeps talking (engines whose
settings did not change are reused); on success the config is saved, the old session stops and a new one starts
with the conversation history kept; on failure the error is shown and the old engines stay. The window calls only
`start`, `apply`, `set_muted`, `restart_audio` and `shutdown`."""
from __future__ import annotations

import dataclasses
import logging
import sys
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from app import config as config_mod
from app.audio.duplex import Block, BlockHandler, DuplexDevice
from app.audio.echo_cancel import EchoCancellingDevice, with_echo_cancellation
from app.audio.playback import PlaybackBuffer
from app.config import Config
from app.conversation.actions import PausePlayback
from app.conversation.session import Engines, Session
from app.errors import UserError
from app.metrics.turns import TurnCollector
from app.runtime import new_scheduler, session_settings, system_prompt
from app.ui.bridge import UiBridge
from app.ui.view_models import state_label

log = logging.getLogger("cadence.ui")
AUDIO_RETRY_S = 2.0  # with no sound device when the conversation should start, look for one this often
DeviceFactory = Callable[[Config, PlaybackBuffer, "AppController"], DuplexDevice]
# which settings each engine is built from: an engine is rebuilt on Apply only when its key changed
ENGINE_KEYS: dict[str, Callable[[Config], tuple]] = {
    "vad": lambda c: (c.models.vad,),
    "turn": lambda c: (c.models.turn,),
    "asr": lambda c: (c.models.asr, c.models.asr_path, c.scheduler.device_threads),
    "llm": lambda c: (c.models.llm, c.models.llm_path, c.llm.n_threads, c.llm.n_gpu_layers, c.llm.n_ctx,
                      c.llm.temperature),
    "tts": lambda c: (c.models.tts, c.models.tts_path, c.scheduler.device_threads,
                      c.models.voice if c.models.tts_path or c.models.tts.startswith("kokoro") else ""),
}
STEPS = {"vad": "the voice activity detector", "turn": "Smart Turn", "asr": "the speech recognizer",
         "llm": "the language model", "tts": "the voice"}


def sound_card(cfg: Config, playback: PlaybackBuffer, controller: "AppController") -> DuplexDevice:
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


def build_changed(new: Config, old: Config | None, engines: Engines | None,
                  progress: Callable[[str], None]) -> Engines:
    """Engines for `new`, reusing those of `engines` (built from `old`) whose settings did not change."""
    from app import engine_factory as f
    from engines.catalog import get

    builders = {"vad": f.build_vad, "turn": f.build_turn, "asr": f.build_asr, "llm": f.build_llm, "tts": f.build_tts}
    built = {}
    for kind, key in ENGINE_KEYS.items():
        if engines is not None and old is not None and key(old) == key(new):
            built[kind] = getattr(engines, kind)
        else:
            progress(f"loading {STEPS[kind]}")
            built[kind] = builders[kind](new)
    m = new.models
    names = {"vad": m.vad, "turn": m.turn, "asr": m.asr_path or m.asr, "llm": m.llm_path or m.llm,
             "tts": m.tts_path or m.tts}
    if get(m.tts).engine.startswith("kokoro"):
        names["voice"] = m.voice
    return Engines(**built, names=names)


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
        if hasattr(self.device, "muted"):
            self.device.muted = muted


def _log_pause(item) -> None:
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
        self.session: Session | None = None
        self.device: LevelTap | None = None
        self.muted = False
        self._unsubscribe: Callable[[], None] | None = None
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()  # one load or swap at a time
        self._closing = threading.Event()
        self._looking: threading.Thread | None = None  # looks for a sound device while there is none
        bridge.latency_changed.connect(self._log_turn)  # the same snapshot the graphs draw

    def _log_turn(self, snapshot) -> None:
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

    def echo_stats(self):
        """The echo canceller's figures (delay estimate, echo reduction) or None when it is off."""
        inner = self.device.device if self.device is not None else None
        return inner.stats() if isinstance(inner, EchoCancellingDevice) and self.session is not None else None

    def mic_level(self) -> float:
        return self.device.level if self.device is not None and self.session is not None else 0.0

    def restart_audio(self) -> None:
        """Reopen the audio device after it disappeared, or start the session once a device is there."""
        from app.audio.sounddevice_device import DeviceError

        try:
            inner = self.device.device if self.device is not None else None
            if self.busy():
                return
            if self.session is not None and hasattr(inner, "restart"):
                inner.restart()
            elif self.engines is not None:
                with self._lock:
                    if self._closing.is_set():  # the window closed meanwhile
                        return
                    self._swap(self.cfg, self.engines)
            self.bridge.audio_problem.emit("")
            self.bridge.state_changed.emit(*self._state())
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
                    engines = build_changed(cfg, self.cfg if self.engines else None, self.engines,
                                            self.bridge.progress.emit)
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
                if save:
                    config_mod.save(cfg, self.config_file)
        finally:
            if self.engines is not None:
                self.bridge.ready.emit(dict(self.engines.names))
            self.bridge.progress.emit("ready: talk to me" if self.session is not None else "")
            if self.session is not None:
                print("cadence: ready", file=sys.stderr, flush=True)
            self.bridge.state_changed.emit(*self._state())
            self.bridge.loading.emit(False)

    def _state(self) -> tuple[str, str]:
        """What the state indicator should say once a load is over."""
        if self.session is not None:
            return state_label(self.session.state.phase)
        return ("no-audio", "No audio device") if self.engines is not None else ("no-audio", "Models not loaded")

    def _swap(self, cfg: Config, engines: Engines) -> None:
        """Replace the running session by one with `engines`, keeping the history (the caller holds the lock).
        DeviceError when the audio device cannot be used; raised by the device factory (a device that is not
        there), it leaves a running session untouched."""
        from app.audio.sounddevice_device import DeviceError

        playback = PlaybackBuffer(16000)
        card = self.device_factory(cfg, playback, self)  # resolves the devices; opens nothing yet
        device = LevelTap(with_echo_cancellation(card, cfg.audio))  # the meter shows what the session hears
        device.set_muted(self.muted)
        history = self.session.history if self.session is not None else None
        self._stop_session()
        scheduler = new_scheduler(cfg)
        session = Session(engines, device, scheduler, system_prompt(cfg), session_settings(cfg), playback=playback)
        if history is not None:
            session.history = dataclasses.replace(history, system=system_prompt(cfg))
        collector = TurnCollector(scheduler)
        collector.listeners.append(self.bridge.on_turn_record)
        session.subscribe(self.bridge.on_session_item)
        session.subscribe(collector)
        session.subscribe(_log_pause)
        unsubscribe = scheduler.spans.subscribe(self.bridge.on_span)
        try:
            session.start()
        except DeviceError:
            session.stop()
            scheduler.close()
            unsubscribe()
            raise
        self.cfg, self.engines = cfg, engines
        self.device, self.session, self._unsubscribe = device, session, unsubscribe

    def _stop_session(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        session.stop()
        session.scheduler.close()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

"""The sound-card device: a `DuplexDevice` over sounddevice (PortAudio), one input and one output stream.

The session runs at 16 kHz mono in blocks of 512 samples. A device that cannot run at 16 kHz runs at its own rate and
is resampled with soxr's streaming resampler (input: device rate -> 16 kHz; output: the `PlaybackBuffer`'s 16 kHz ->
device rate). Times are mapped from PortAudio's stream clock (`inputBufferAdcTime`, `outputBufferDacTime`) to
`time.perf_counter()` by an offset measured at start, so blocks carry session-clock times like the headless device.

The callbacks never block and never raise: the output callback queues "what was played when" for the input callback,
which attaches it to the next block. A monitor thread notices a stream that stopped (a device unplugged) or fell
silent, reports it through `on_status`, then reopens the streams every `RETRY_S` until sound flows again, and reports
that through `on_recovered`; `restart()` does the same at once. PortAudio lists devices only when it starts, so it is
restarted (`refresh_devices`, never under an open stream) before devices are looked up. Every expected failure
(PortAudio not installed, no device, an unknown device) is a `DeviceError` with one sentence that says what to do."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from app.audio.duplex import Block, BlockHandler
from app.audio.far_reference import FarReference
from app.audio.playback import PlaybackBuffer, PlaybackNote

log = logging.getLogger("cadence.audio")
RATE = 16000
BLOCK = 512
SILENT_AFTER_S = 1.5  # a running input stream that delivered nothing for this long has lost its device
WATCH_S = 0.25  # the monitor looks at the streams this often
OUTPUT_LATENCY_S = 0.035  # PortAudio's "low" (~9 ms on PulseAudio) underran hundreds of times a reply on 2 cores
RETRY_S = 2.0  # while the device is lost, the monitor tries to reopen it this often
RECOVERED = "the audio device is back: listening again"
StatusCallback = Callable[[str], None]


class DeviceError(ValueError):
    """An audio device cannot be used; the message is one sentence that says what to do."""


def load_sounddevice() -> Any:
    """The sounddevice module, or DeviceError when the PortAudio library is missing."""
    try:
        import sounddevice
    except OSError as exc:  # "PortAudio library not found"
        raise DeviceError(f"PortAudio is not installed ({exc}): install it with "
                          "`apt-get install libportaudio2` and start Cadence again") from None
    return sounddevice


_open_devices: set[int] = set()  # ids of the SoundDeviceDuplex objects whose streams are open


def refresh_devices(sd: Any) -> None:
    """Restart PortAudio so that it lists the devices there now (it enumerates them only when it starts); skipped
    while any stream of this process is open. DeviceError when PortAudio cannot start (no sound system)."""
    if _open_devices or not hasattr(sd, "_terminate"):  # streams running, or a test stub
        return
    try:
        if sd._initialized > 0:
            sd._terminate()
        sd._initialize()
    except Exception as exc:
        raise DeviceError(f"cannot start PortAudio ({exc}): check the sound system is running") from None


def list_devices() -> tuple[list[str], list[str]]:
    """(microphone names, speaker names) as PortAudio lists them; DeviceError without PortAudio."""
    sd = load_sounddevice()
    devices = list(sd.query_devices())
    return ([d["name"] for d in devices if d.get("max_input_channels", 0) > 0],
            [d["name"] for d in devices if d.get("max_output_channels", 0) > 0])


def resolve_device(sd: Any, spec: str, kind: str) -> int:
    """The PortAudio index of the microphone (`kind="input"`) or speaker chosen by `spec`: empty = the system
    default, a number = that index, otherwise the first device whose name contains `spec` (case-insensitive)."""
    what = "microphone" if kind == "input" else "speaker"
    channels = f"max_{kind}_channels"
    devices = list(sd.query_devices())
    usable = [i for i, d in enumerate(devices) if d.get(channels, 0) > 0]
    if not usable:
        raise DeviceError(f"no {what} found: connect one or choose it in Settings → Audio")
    spec = str(spec).strip()
    if not spec:
        default = sd.default.device[0 if kind == "input" else 1]
        return default if isinstance(default, int) and default in usable else usable[0]
    if spec.isdigit():
        if int(spec) in usable:
            return int(spec)
        raise DeviceError(f"{what} #{spec} does not exist: choose another one in Settings → Audio")
    for i in usable:
        if spec.lower() in devices[i]["name"].lower():
            return i
    raise DeviceError(f"{what} {spec!r} not found: connect it or choose another one in Settings → Audio")


def stream_format(sd: Any, device: int, kind: str) -> tuple[int, int]:
    """(rate, channels): 16 kHz mono when the device takes it, else its default rate (resampled) and/or two
    channels (the microphone's first channel is used; the speaker gets the same signal on both)."""
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    info = sd.query_devices(device)
    default_rate = int(info["default_samplerate"])
    wide = max(1, min(2, int(info.get(f"max_{kind}_channels", 1))))
    for rate, channels in ((RATE, 1), (default_rate, 1), (RATE, wide), (default_rate, wide)):
        try:
            check(device=device, samplerate=rate, channels=channels, dtype="float32")
            return rate, channels
        except Exception:  # PortAudioError / ValueError: this format is not supported
            continue
    return default_rate, wide


class _Resampler:
    """soxr.ResampleStream, or a pass-through when the rates are equal."""

    def __init__(self, rate_in: int, rate_out: int):
        import soxr

        self.ratio = rate_out / rate_in
        self._stream = None if rate_in == rate_out else soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x if self._stream is None else self._stream.resample_chunk(x)

    def delay(self) -> float:
        """Output samples held inside the resampler."""
        return 0.0 if self._stream is None else float(self._stream.delay())


class SoundDeviceDuplex:
    """Microphone + speaker for a session: 512-sample 16 kHz blocks in, `PlaybackBuffer` audio out."""

    rate = RATE
    block = BLOCK

    def __init__(self, playback: PlaybackBuffer, input_device: str = "", output_device: str = "",
                 on_status: StatusCallback | None = None, on_recovered: StatusCallback | None = None,
                 retry_s: float = RETRY_S, output_latency_s: float = OUTPUT_LATENCY_S):
        if playback.sample_rate != RATE:
            raise ValueError("the playback buffer must run at 16 kHz")
        self.playback = playback
        self.input_spec, self.output_spec = input_device, output_device
        self.on_status = on_status or (lambda msg: log.warning("%s", msg))  # the device was lost
        self.on_recovered = on_recovered or (lambda msg: log.info("%s", msg))  # ... and is back
        self.retry_s = retry_s
        self.output_latency_s = output_latency_s
        self.lost: str | None = None  # the problem reported, until sound flows again
        self._lock = threading.RLock()  # one open, close or restart at a time (monitor and UI threads)
        self.index = 0  # block numbers go on across restarts
        self.muted = False  # a flag the UI sets: zeroes the microphone blocks
        self.sd = load_sounddevice()
        refresh_devices(self.sd)  # a device plugged in since PortAudio started is listed too
        self.in_index = resolve_device(self.sd, input_device, "input")  # fail early, before models load
        self.out_index = resolve_device(self.sd, output_device, "output")
        self._on_block: BlockHandler | None = None
        self._streams: list[Any] = []
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self._reset_state()

    # ---- lifecycle --------------------------------------------------------------------------------------
    def start(self, on_block: BlockHandler) -> None:
        with self._lock:
            self._on_block = on_block
            self._stopping.clear()
            self._open()
        self._start_monitor()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._close()
            self.lost = None

    def restart(self) -> None:
        """Reopen the streams (after a device disappeared or came back), PortAudio's device list refreshed;
        DeviceError when it is still missing."""
        if self._on_block is None:
            raise RuntimeError("restart() before start()")
        with self._lock:
            self._stopping.clear()
            self._reopen()
        self._start_monitor()

    def _start_monitor(self) -> None:
        if self._monitor is None or not self._monitor.is_alive():
            self._monitor = threading.Thread(target=self._watch, name="audio-monitor", daemon=True)
            self._monitor.start()

    def _reopen(self) -> None:
        """Close the streams, restart PortAudio so it lists the devices there now, and open them again."""
        self._close()
        sd = self.sd
        refresh_devices(sd)
        self.in_index = resolve_device(sd, self.input_spec, "input")
        self.out_index = resolve_device(sd, self.output_spec, "output")
        self._open()

    def device_names(self) -> tuple[str, str]:
        return (self.sd.query_devices(self.in_index)["name"], self.sd.query_devices(self.out_index)["name"])

    def _reset_state(self) -> None:
        self._inputs = 0  # input callbacks since the streams opened
        self._in_fifo = np.zeros(0, np.float32)
        self._out_fifo = np.zeros(0, np.float32)
        self._pending: deque[tuple[float, list[PlaybackNote]]] = deque()  # (t_out, notes) from the output side
        self._far = FarReference(RATE)  # what the output side sent to the speaker, paced by the microphone
        self._next_out = 0.0  # session-clock time the next output sample plays (when nothing is pending)
        self._dac_next: float | None = None  # when the next output callback's first sample should play
        self._last_input = 0.0  # perf_counter time of the last input callback
        self._flags: deque[str] = deque(maxlen=8)  # problems the callbacks saw, reported by the monitor
        self._finished = threading.Event()
        self._offset: float | None = None  # perf_counter - PortAudio stream time, measured once the streams run

    def _open(self) -> None:
        sd = self.sd
        self._reset_state()
        self.in_rate, in_channels = stream_format(sd, self.in_index, "input")
        self.out_rate, out_channels = stream_format(sd, self.out_index, "output")
        self._down = _Resampler(self.in_rate, RATE)
        self._up = _Resampler(RATE, self.out_rate)
        _open_devices.add(id(self))
        try:
            self._streams.append(sd.InputStream(
                device=self.in_index, samplerate=self.in_rate, channels=in_channels, dtype="float32",
                latency="low", callback=self._input_callback, finished_callback=self._finished.set))
            self._streams.append(sd.OutputStream(
                device=self.out_index, samplerate=self.out_rate, channels=out_channels, dtype="float32",
                latency=self.output_latency_s, callback=self._output_callback, finished_callback=self._finished.set))
            self._last_input = time.perf_counter()
            for stream in reversed(self._streams):  # the speaker first: the first block finds it running
                stream.start()
            pa_now = self._streams[0].time
            self._offset = time.perf_counter() - pa_now if pa_now > 0 else None  # PortAudio clock -> perf_counter
        except Exception as exc:  # sd.PortAudioError, or ValueError for a device that vanished
            self._close()
            raise DeviceError(f"cannot open the audio device ({exc}): check it is connected, "
                              "or choose another one in Settings → Audio") from None

    def _close(self) -> None:
        streams, self._streams = self._streams, []
        for stream in streams:
            try:
                stream.abort()
                stream.close()
            except Exception:  # a vanished device may refuse even this
                pass
        _open_devices.discard(id(self))

    # ---- callbacks (PortAudio's thread: no locks held long, no exceptions out) ------------------------------
    def _perf(self, pa_time: float, fallback: float) -> float:
        offset = self._offset
        return pa_time + offset if offset is not None and pa_time > 0 else fallback

    def _input_callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        try:
            now = time.perf_counter()
            self._last_input = now
            self._inputs += 1
            if status:
                self._flags.append(f"input: {status}")
            t_last = self._perf(time_info.inputBufferAdcTime, now) + frames / self.in_rate
            self._in_fifo = np.concatenate([self._in_fifo, self._down(np.asarray(indata[:, 0], np.float32))])
            while len(self._in_fifo) >= BLOCK and self._on_block is not None:
                mic, self._in_fifo = self._in_fifo[:BLOCK].copy(), self._in_fifo[BLOCK:]
                t_end = t_last - len(self._in_fifo) / RATE
                if self.muted:
                    mic[:] = 0.0
                np.clip(np.nan_to_num(mic, copy=False, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0, out=mic)
                t_out, notes = self._take_notes()
                self._on_block(Block(self.index, mic, t_end, notes, t_out, self._far.take(BLOCK)))
                self.index += 1
        except Exception as exc:  # never raise into PortAudio
            self._flags.append(f"input callback failed: {exc!r}")

    def _take_notes(self) -> tuple[float, tuple[PlaybackNote, ...]]:
        """Everything the output side played since the last block, on the time of its first chunk."""
        if not self._pending:
            return self._next_out, ()
        t0, merged = self._pending[0][0], []
        while self._pending:
            t, notes = self._pending.popleft()
            shift = round((t - t0) * RATE)
            merged += [PlaybackNote(n.turn, n.played_s, n.first, n.offset + shift, n.drained) for n in notes]
        return t0, tuple(merged)

    def _output_callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        try:
            if status:
                self._flags.append(f"output: {status}")
            t_dac = self._perf(time_info.outputBufferDacTime, time.perf_counter())
            if status and getattr(status, "output_underflow", False) and self._dac_next is not None:
                self._far.gap(t_dac - self._dac_next)  # the silence the speaker played meanwhile
            self._dac_next = t_dac + frames / self.out_rate
            while len(self._out_fifo) < frames:
                ahead = (len(self._out_fifo) + self._up.delay()) / self.out_rate
                audio, notes = self.playback.read(BLOCK)
                if notes:
                    self._pending.append((t_dac + ahead, notes))
                self._far.add(audio)
                self._out_fifo = np.concatenate([self._out_fifo, self._up(audio)])
            outdata[:] = self._out_fifo[:frames, None]  # every channel
            self._out_fifo = self._out_fifo[frames:]
            self._next_out = t_dac + (frames + len(self._out_fifo)) / self.out_rate
        except Exception as exc:
            outdata.fill(0)
            self._flags.append(f"output callback failed: {exc!r}")

    # ---- watching for a device that went away -----------------------------------------------------------------
    def _watch(self) -> None:
        """Report a lost device once, reopen it every `retry_s` until sound flows again, then report that."""
        last_try = 0.0
        while not self._stopping.wait(WATCH_S):
            while self._flags:
                log.info("audio: %s", self._flags.popleft())
            problem = self.problem()
            if self.lost is None:
                if problem:
                    self.lost, last_try = problem, time.perf_counter()
                    self.on_status(problem)
                continue
            if self._streams and self._inputs > 0 and problem is None:
                self.lost = None
                self.on_recovered(RECOVERED)
            elif time.perf_counter() - last_try >= self.retry_s:
                last_try = time.perf_counter()
                self._retry()

    def _retry(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            try:
                self._reopen()
            except Exception as exc:  # still gone (DeviceError, or PortAudio refusing): try again later
                log.info("audio: still no device (%s)", exc)

    def problem(self) -> str | None:
        """A sentence when the running streams stopped or fell silent, else None."""
        if self._stopping.is_set() or not self._streams:
            return None
        if self._finished.is_set() or not all(s.active for s in self._streams):
            return ("the audio device stopped (was it unplugged?): reconnect it and Cadence picks it up again, "
                    "or press Restart audio, or choose another one in Settings → Audio")
        if time.perf_counter() - self._last_input > SILENT_AFTER_S:
            return ("the microphone stopped delivering sound: reconnect it and Cadence picks it up again, "
                    "or press Restart audio")
        return None

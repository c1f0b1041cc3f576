"""Faults: a sound device that cannot be opened is one clear line; one that disappears is reported once, reopened
every few seconds (PortAudio restarted so it lists the devices there now) and reported again when sound flows: with
a stub, for real on a private PulseAudio daemon (devices removed, then the whole server stopped), and in the window."""
from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from app.config import Config
from app.conversation.state import Phase
from engines.engine_set import Engines
from tests.conftest import ROOT

RATE = 16000


# ---- the sound device disappearing and coming back ------------------------------------------------------------
MIC = {"name": "USB Mic", "max_input_channels": 1, "max_output_channels": 0, "default_samplerate": 16000.0}
SPEAKER = {"name": "Speakers", "max_input_channels": 0, "max_output_channels": 1, "default_samplerate": 16000.0}


class PortAudioError(Exception):
    pass


class StubStream:
    def __init__(self, **kw):
        self.kw, self.active, self.closed, self.time = kw, False, False, 100.0

    def start(self):
        self.active = True

    def abort(self):
        self.active = False

    def close(self):
        self.closed = True

    def feed(self, seconds: float = 0.1) -> None:
        frames = int(seconds * RATE)
        self.kw["callback"](np.zeros((frames, 1), np.float32), frames, SimpleNamespace(inputBufferAdcTime=0.0), None)


class StubSd:
    """sounddevice with PortAudio's behaviour for a device that is unplugged: it is no longer listed, and
    opening a stream on it fails."""

    def __init__(self):
        self.devices, self.streams, self.fail_open = [MIC, SPEAKER], [], False
        self.default = SimpleNamespace(device=[0, 1])
        self._initialized, self.restarts = 1, 0

    def _terminate(self):  # PortAudio must not be restarted under an open stream
        assert all(s.closed for s in self.streams), "PortAudio restarted with a stream open"
        self._initialized -= 1

    def _initialize(self):  # PortAudio lists the devices there now
        self._initialized += 1
        self.restarts += 1

    def query_devices(self, index=None):
        return list(self.devices) if index is None else self.devices[index]

    def check_input_settings(self, **kw):
        pass

    check_output_settings = check_input_settings

    def InputStream(self, **kw):
        if self.fail_open:
            raise PortAudioError("Error opening InputStream: Device unavailable [PaErrorCode -9985]")
        self.streams.append(StubStream(**kw))
        return self.streams[-1]

    OutputStream = InputStream


def wait_until(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.02)
    return condition()


def test_a_device_that_cannot_be_opened_is_one_clear_line(monkeypatch):
    from app.audio import sounddevice_device as sdd
    from app.audio.playback import PlaybackBuffer

    stub = StubSd()
    stub.fail_open = True
    monkeypatch.setattr(sdd, "load_sounddevice", lambda: stub)
    device = sdd.SoundDeviceDuplex(PlaybackBuffer(RATE))
    with pytest.raises(sdd.DeviceError) as err:
        device.start(lambda block: None)
    message = str(err.value)
    assert "\n" not in message and message.startswith("cannot open the audio device (Error opening InputStream")
    assert "Settings → Audio" in message and device._streams == []
    device.stop()


def test_a_lost_device_is_reported_once_and_picked_up_again_when_it_returns(monkeypatch):
    from app.audio import sounddevice_device as sdd
    from app.audio.playback import PlaybackBuffer

    stub, lost, back, blocks = StubSd(), [], [], []
    monkeypatch.setattr(sdd, "load_sounddevice", lambda: stub)
    device = sdd.SoundDeviceDuplex(PlaybackBuffer(RATE), on_status=lost.append, on_recovered=back.append,
                                   retry_s=0.1)
    device.start(blocks.append)
    try:
        stub.streams[0].feed()
        assert len(blocks) == 3 and device.problem() is None
        assert stub.streams[1].kw["latency"] == sdd.OUTPUT_LATENCY_S  # "low" underran hundreds of times a reply
        stub.streams[0].active = False  # unplugged: PortAudio stops the stream, and no longer lists the device
        stub.devices, stub.fail_open = [SPEAKER], True
        assert wait_until(lambda: lost)
        assert "stopped" in lost[0] and "picks it up again" in lost[0] and "Restart audio" in lost[0]
        time.sleep(0.5)  # several retries while it is away: no new stream, no second message
        assert len(lost) == 1 and not back and device._streams == []
        stub.devices, stub.fail_open = [MIC, SPEAKER], False  # plugged in again
        assert wait_until(lambda: device._streams)
        assert not back  # open is not enough: sound must flow
        device._streams[0].feed()
        assert wait_until(lambda: back) and back == [sdd.RECOVERED] and len(lost) == 1
        assert [b.index for b in blocks] == list(range(6))  # block numbers go on across the restart
        assert stub.restarts >= 2 and stub._initialized == 1  # PortAudio restarted for every try, once at a time
        assert device.lost is None and device.problem() is None
    finally:
        device.stop()


PULSE_TOOLS = ("pulseaudio", "pactl", "pacat")
PULSE_DEVICES = ("load-module module-null-sink sink_name=spk", "load-module module-null-sink sink_name=micfeed",
                 "load-module module-remap-source master=micfeed.monitor source_name=vmic",
                 "set-default-sink spk", "set-default-source vmic")
WATCHER = """
import sys, threading, time
from app.audio.playback import PlaybackBuffer
from app.audio.sounddevice_device import SoundDeviceDuplex
say = lambda *words: print(*words, flush=True)
blocks = [0]
device = SoundDeviceDuplex(PlaybackBuffer(16000), on_status=lambda m: say("lost", m),
                           on_recovered=lambda m: say("back", m), retry_s=0.5)
device.start(lambda block: blocks.__setitem__(0, block.index + 1))
say("started")
while not sys.stdin.closed and sys.stdin.readline():
    say("blocks", blocks[0])
device.stop()
"""


class Pulse:
    """A private PulseAudio daemon (the recipe of shared/docs/desktop-ci.md): a null sink `spk` (the speaker) and a
    virtual microphone `vmic`; its devices can be removed and added again, and the daemon stopped and restarted."""

    def __init__(self, base: Path):
        from tests.test_desktop_e2e import stop

        self.stop = stop
        self.runtime, self.home = base / "runtime", base / "home"
        self.runtime.mkdir(mode=0o700)
        self.home.mkdir()
        self.config = base / "cadence.pa"
        self.config.write_text("load-module module-native-protocol-unix auth-anonymous=1\n" + "\n".join(PULSE_DEVICES))
        self.env = {**os.environ, "XDG_RUNTIME_DIR": str(self.runtime),
                    "PULSE_SERVER": f"unix:{self.runtime}/pulse/native"}
        self.daemon, self.clients = None, []

    def pactl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=10)

    def start(self) -> None:
        self.daemon = subprocess.Popen(
            ["pulseaudio", "-n", "-F", str(self.config), "--daemonize=no", "--exit-idle-time=-1"],
            env={**self.env, "HOME": str(self.home)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        assert wait_until(lambda: self.pactl("info").returncode == 0, 20), "pulseaudio did not start"
        self.feed()

    def feed(self) -> None:
        """A silent low-latency client on each null sink keeps capture flowing."""
        for client in self.clients:
            self.stop(client)
        self.clients = [subprocess.Popen(["pacat", "--raw", "--latency-msec=10", "-d", sink], env=self.env,
                                         stdin=open("/dev/zero", "rb"), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
                        for sink in ("micfeed", "spk")]

    def remove_devices(self) -> None:
        modules = [line.split()[0] for line in self.pactl("list", "short", "modules").stdout.splitlines()
                   if "null-sink" in line or "remap-source" in line]
        for module in reversed(modules):
            assert self.pactl("unload-module", module).returncode == 0

    def add_devices(self) -> None:
        for line in PULSE_DEVICES:
            assert self.pactl(*line.split()).returncode == 0, line
        self.feed()

    def close(self) -> None:
        for proc in [*self.clients, self.daemon]:
            if proc is not None:
                self.stop(proc)


@pytest.mark.desktop
def test_the_sound_device_recovers_by_itself_when_pulseaudio_loses_and_regains_it(tmp_path):
    missing = [t for t in PULSE_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"PulseAudio is not installed ({', '.join(missing)} missing): packaging/install.sh installs it")
    pulse = Pulse(tmp_path)
    pulse.start()
    errors = open(tmp_path / "watcher.err", "w+")
    lines: queue.Queue = queue.Queue()

    def launch() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", WATCHER], cwd=ROOT, env=pulse.env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=errors, text=True, bufsize=1)
        threading.Thread(target=lambda: [lines.put(x.strip()) for x in proc.stdout], daemon=True).start()
        return proc

    watcher = launch()
    messages: list[str] = []

    def started() -> bool:  # a cold machine may take a while to import numpy and PortAudio
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line == "started":
                return True
            messages.append(line)
        return False

    def blocks() -> int:
        watcher.stdin.write("?\n")
        while True:
            try:
                line = lines.get(timeout=20)
            except queue.Empty:
                errors.seek(0)
                raise AssertionError(f"the watcher stopped answering; its stderr: {errors.read()[-2000:]!r}") from None
            if line.startswith("blocks "):
                return int(line.split()[1])
            messages.append(line)

    def flowing(timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            first = blocks()
            time.sleep(0.5)
            if blocks() >= first + 8:  # 0.5 s is 15 blocks
                return True
        return False

    def heard(prefix: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            blocks()
            found = [m for m in messages if m.startswith(prefix)]
            if found:
                messages.clear()
                return found[0]
            time.sleep(0.2)
        return None

    try:
        errors.seek(0)
        assert started(), f"the watcher did not start the device; its stderr: {errors.read()[-2000:]!r}"
        try:
            first_flow = flowing(15)
        except AssertionError:
            # Seen in 2 of 4 full-suite runs on the AMD machine, never when run alone or with the desktop tests (six
            # runs): the watcher goes silent before any sound flowed, with nothing on stderr (cause not found yet).
            # The recovery under test comes after this point; a watcher that never got going is started again, once.
            watcher.kill()
            watcher = launch()
            assert started(), f"the watcher did not start the device; its stderr: {errors.read()[-2000:]!r}"
            first_flow = flowing(15)
        assert first_flow, "no sound from the virtual microphone"
        for lose, regain in ((pulse.remove_devices, pulse.add_devices), (pulse.close, pulse.start)):
            messages.clear()
            lose()  # every sink and source removed; then the whole sound server stopped
            lost = heard("lost ", 10)
            assert lost and "stopped" in lost and "picks it up again" in lost, (lost, messages)
            stalled = blocks()
            time.sleep(1.0)
            assert blocks() == stalled
            regain()
            back = heard("back ", 20)
            assert back == "back the audio device is back: listening again", (back, messages)
            assert flowing(10), "the device came back but no sound flows"
    finally:
        watcher.stdin.close()
        try:
            watcher.wait(10)
        except subprocess.TimeoutExpired:
            watcher.kill()
        errors.close()
        pulse.close()


def test_the_window_shows_a_lost_device_and_clears_it_when_it_is_back(monkeypatch):
    """The sound card's monitor runs on its own thread: its two messages reach the window through the bridge."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtWidgets import QApplication

    from app.audio import sounddevice_device as sdd
    from app.audio.playback import PlaybackBuffer
    from app.ui.app_controller import AppController, sound_card
    from app.ui.bridge import UiBridge
    from app.ui.main_window import MainWindow

    qapp = QApplication.instance() or QApplication([])
    monkeypatch.setattr(sdd, "load_sounddevice", StubSd)
    bridge = UiBridge()
    controller = AppController(Config(), bridge, device_factory=sound_card)
    window = MainWindow(bridge, controller)
    running = SimpleNamespace(state=SimpleNamespace(phase=Phase.LISTENING))
    controller.conversation = SimpleNamespace(session=running)  # a conversation runs
    device = sound_card(controller.cfg, PlaybackBuffer(RATE), controller)

    def shown(condition) -> bool:
        return wait_until(lambda: (qapp.processEvents(), condition())[1], 5)

    threading.Thread(target=device.on_status, args=("the audio device stopped (was it unplugged?)",)).start()
    assert shown(lambda: window.audio_banner.isVisibleTo(window) and window.state_key == "no-audio")
    assert "unplugged" in window.audio_banner.text() and window.restart_button.isVisibleTo(window)
    threading.Thread(target=device.on_recovered, args=(sdd.RECOVERED,)).start()
    # three queued signals from the monitor's thread: wait for the last one too
    assert shown(lambda: not window.audio_banner.isVisibleTo(window) and window.state_key == "listening"
                 and window.progress_label.text() == sdd.RECOVERED)
    assert not window.restart_button.isVisibleTo(window)
    controller.conversation = None
    window.close()


def test_with_no_device_at_start_the_conversation_starts_by_itself_once_one_is_there(monkeypatch):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtWidgets import QApplication

    import app.ui.app_controller as ctl
    from app.audio import sounddevice_device as sdd
    from app.audio.headless import HeadlessDuplex
    from app.ui.bridge import UiBridge
    from app.ui.main_window import MainWindow

    qapp = QApplication.instance() or QApplication([])
    plugged, tries = threading.Event(), []

    def microphone(cfg, playback, controller):
        tries.append(time.monotonic())
        if not plugged.is_set():
            raise sdd.DeviceError("no microphone found: connect one or choose it in Settings → Audio")
        return HeadlessDuplex(lambda start, n: np.zeros(n, np.float32), playback, RATE)

    monkeypatch.setattr(ctl, "AUDIO_RETRY_S", 0.2)
    monkeypatch.setattr(ctl, "build_engines", lambda *a, **k: Engines(*[object()] * 5, names={"llm": "x"}))
    bridge = UiBridge()
    controller = ctl.AppController(Config(), bridge, device_factory=microphone)
    window = MainWindow(bridge, controller)

    def shown(condition) -> bool:
        return wait_until(lambda: (qapp.processEvents(), condition())[1], 5)

    controller.start()
    try:
        assert shown(lambda: window.audio_banner.isVisibleTo(window) and "no microphone" in window.audio_banner.text())
        assert wait_until(lambda: len(tries) >= 3) and controller.session is None  # it keeps looking
        plugged.set()  # nobody presses Restart audio
        assert wait_until(lambda: controller.session is not None)
        assert shown(lambda: not window.audio_banner.isVisibleTo(window) and window.state_key == "listening")
    finally:
        window.close()
    count = len(tries)
    time.sleep(0.5)
    assert len(tries) == count and controller.session is None  # closed: it stopped looking, nothing runs

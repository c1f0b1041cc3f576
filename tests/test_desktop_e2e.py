"""End to end on a real X server with real audio devices: Xvfb + a private PulseAudio daemon whose null sinks are the
app's speaker (`spk`) and, through a remapped monitor (`vmic`), its microphone (`micfeed`) — the recipe of
shared/docs/desktop-ci.md. The real app (`python -m app.cli`, the window) runs on PortAudio's default device (ALSA
`default` → the pulse plugin → this daemon). A real spoken question is played into the microphone; the app must
answer through the speaker (captured with `parec`, checked for level and transcribed by Whisper), report the turn
the graphs draw (its `cadence: turn N ...` stderr line, emitted from the graphs' own LatencySnapshot), and a
screenshot of the X screen is kept (tmp_path and /tmp/cadence-artifacts/desktop_e2e.png).

Running as root: pulseaudio warns ("not intended to be run as root") but runs fine in per-user mode with
`XDG_RUNTIME_DIR` (and, for the daemon only, `HOME`) in a temp dir; `auth-anonymous=1` on the native protocol avoids
the cookie.
Everything started here is stopped at the end, also on failure."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.desktop

QUESTION = ROOT / "assets" / "demo" / "q1_tallest_mountain.wav"
ARTIFACT = Path("/tmp/cadence-artifacts/desktop_e2e.png")
RATE = 16000
READY_TIMEOUT_S = 120.0
TURN_TIMEOUT_S = 40.0
TOOLS = ("Xvfb", "pulseaudio", "pacat", "parec", "paplay", "pactl", "xwd")
PA_CONFIG = """\
load-module module-native-protocol-unix auth-anonymous=1
load-module module-null-sink sink_name=spk
load-module module-null-sink sink_name=micfeed
load-module module-remap-source master=micfeed.monitor source_name=vmic
set-default-sink spk
set-default-source vmic
"""


class Desktop:
    """The processes of one virtual desktop and the environment that reaches them."""

    def __init__(self, base: Path):
        self.base = base
        self.procs: list[subprocess.Popen] = []
        self.env: dict[str, str] = {}

    def spawn(self, cmd: list[str], **kw) -> subprocess.Popen:
        kw.setdefault("env", self.env or None)
        proc = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def start_x(self) -> str:
        read, write = os.pipe()
        self.spawn(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                   pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write)
        with os.fdopen(read) as fh:
            number = fh.readline().strip()  # Xvfb writes its display number once it accepts clients
        if not number:
            raise RuntimeError("Xvfb did not start")
        return f":{number}"

    def start_pulse(self) -> None:
        runtime, home = self.base / "runtime", self.base / "home"
        runtime.mkdir(mode=0o700)
        home.mkdir()
        (self.base / "cadence.pa").write_text(PA_CONFIG)
        self.env.update(XDG_RUNTIME_DIR=str(runtime), PULSE_SERVER=f"unix:{runtime}/pulse/native")
        self.spawn(["pulseaudio", "-n", "-F", str(self.base / "cadence.pa"), "--daemonize=no",
                    "--exit-idle-time=-1", "--log-target=stderr"],
                   env={**self.env, "HOME": str(home)},  # its cookie and state land in the temp dir
                   stdout=subprocess.DEVNULL, stderr=open(self.base / "pulseaudio.log", "wb"))
        deadline = time.monotonic() + 20
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("pulseaudio did not start: " + (self.base / "pulseaudio.log").read_text()[-2000:])
            time.sleep(0.1)
        for sink in ("micfeed", "spk"):  # a silent low-latency client on each null sink keeps capture flowing
            self.spawn(["pacat", "--raw", "--latency-msec=10", "-d", sink], stdin=open("/dev/zero", "rb"),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = self.spawn(["parec", "-d", "vmic", "--format=s16le", f"--rate={RATE}", "--channels=1", "--raw"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        got = read_with_timeout(probe.stdout, RATE * 2 // 10, 20.0)  # 100 ms of audio
        stop(probe)
        if len(got) < RATE * 2 // 10:
            raise RuntimeError("the virtual microphone delivers no audio")

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)


def read_with_timeout(stream, n: int, timeout: float) -> bytes:
    out = bytearray()

    def read() -> None:
        while len(out) < n:
            chunk = stream.read1(n - len(out)) if hasattr(stream, "read1") else stream.read(n - len(out))
            if not chunk:
                return
            out.extend(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(timeout)
    return bytes(out)


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> int | None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


@pytest.fixture(scope="module")
def desktop(tmp_path_factory) -> Iterator[Desktop]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    assert not missing, f"missing {missing}: run packaging/install.sh (as root) to install the desktop test tools"
    env = Desktop(tmp_path_factory.mktemp("desktop"))
    try:
        env.env.update({k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY",
                                                                          "QT_QPA_PLATFORM", "PULSE_SERVER")})
        env.env["DISPLAY"] = env.start_x()
        env.start_pulse()
        yield env
    finally:
        env.close()


def xwd_to_png(xwd: Path, png: Path) -> np.ndarray:
    """Convert an `xwd -root` dump (24/32-bit TrueColor ZPixmap) to PNG with Pillow (which cannot read XWD)."""
    from PIL import Image

    data = xwd.read_bytes()
    head = np.frombuffer(data[:100], dtype=">u4")  # the header is written in the writer's byte order
    if int(head[1]) != 7:  # XWD file version 7
        head = np.frombuffer(data[:100], dtype="<u4")
    header_size, width, height = int(head[0]), int(head[4]), int(head[5])
    byte_order, bpp, stride, ncolors = int(head[7]), int(head[11]), int(head[12]), int(head[19])
    assert bpp == 32, f"unexpected XWD pixel size {bpp}"
    start = header_size + 12 * ncolors
    pixels = np.frombuffer(data[start:start + stride * height], dtype=np.uint8).reshape(height, stride)
    words = pixels[:, :width * 4].reshape(height, width, 4)
    rgb = words[:, :, [2, 1, 0]] if byte_order == 0 else words[:, :, [1, 2, 3]]  # LSBFirst: B G R x
    Image.fromarray(np.ascontiguousarray(rgb)).save(png)
    return rgb


def speech_seconds(audio: np.ndarray, threshold_dbfs: float = -40.0, frame: int = 320) -> float:
    """Seconds of 20 ms frames whose RMS is above the threshold."""
    n = len(audio) // frame
    if n == 0:
        return 0.0
    frames = audio[:n * frame].reshape(n, frame).astype(np.float64)
    rms = np.sqrt(np.mean(frames ** 2, axis=1))
    return float(np.sum(20 * np.log10(np.maximum(rms, 1e-9)) > threshold_dbfs)) * frame / RATE


def test_spoken_question_answered_through_real_devices(desktop: Desktop, tmp_path):
    # this test's own XDG config/data/state dirs (conftest), the desktop's display and sound server
    xdg = {k: os.environ[k] for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME") if k in os.environ}
    env = {**desktop.env, **xdg, "PYTHONUNBUFFERED": "1"}
    lines: list[str] = []
    app = desktop.spawn([sys.executable, "-m", "app.cli", "--set", "llm.max_reply_tokens=32"], cwd=ROOT, env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    threading.Thread(target=lambda: lines.extend(app.stderr), daemon=True).start()

    def wait_line(prefix: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and app.poll() is None:
            hit = next((line for line in lines if line.startswith(prefix)), None)
            if hit:
                return hit
            time.sleep(0.1)
        return next((line for line in lines if line.startswith(prefix)), None)

    assert wait_line("cadence: ready", READY_TIMEOUT_S), "the app never got ready:\n" + "".join(lines)[-3000:]
    capture = tmp_path / "speaker.raw"
    rec = desktop.spawn(["parec", "-d", "spk.monitor", "--format=s16le", f"--rate={RATE}", "--channels=1", "--raw"],
                        stdout=open(capture, "wb"), stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    played = time.monotonic()
    subprocess.run(["paplay", "-d", "micfeed", str(QUESTION)], env=desktop.env, check=True, timeout=30)
    question_s = time.monotonic() - played
    turn = wait_line("cadence: turn 1 ", TURN_TIMEOUT_S)
    assert turn, "no turn reported:\n" + "".join(lines)[-3000:]
    time.sleep(4.0)  # let the (short) reply finish playing
    stop(rec)

    xwd = tmp_path / "screen.xwd"
    subprocess.run(["xwd", "-root", "-silent", "-out", str(xwd)], env=desktop.env, check=True, timeout=20)
    shot = xwd_to_png(xwd, tmp_path / "desktop_e2e.png")
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / "desktop_e2e.png", ARTIFACT)

    code = stop(app, timeout=30)
    assert code == 0, f"the app did not exit cleanly ({code}):\n" + "".join(lines)[-3000:]
    assert "Traceback" not in "".join(lines), "".join(lines)[-3000:]

    # the turn the graphs drew: voice-to-voice measured, and at most the wall time since the question
    fields = dict(f.split("=") for f in turn.split()[3:])
    assert "v2v_ms" in fields and 0 < float(fields["v2v_ms"]) < TURN_TIMEOUT_S * 1000, turn

    # the reply came out of the speaker, after the question was played
    audio = np.frombuffer(capture.read_bytes(), dtype="<i2").astype(np.float32) / 32768.0
    after = audio[int((0.5 + question_s) * RATE):]
    assert speech_seconds(after) >= 0.5, f"no reply on the speaker ({speech_seconds(after):.2f} s above -40 dBFS)"
    from engines.asr_whisper import WhisperRecognizer

    words = WhisperRecognizer.from_catalog(threads=1).transcribe(after).split()
    assert len(words) >= 2, f"the reply does not sound like speech: {words}"

    # the screenshot shows the window (not a blank screen)
    assert shot.shape[:2] == (800, 1280) and float(shot.std()) > 5.0 and len(np.unique(shot.reshape(-1, 3)[::97],
                                                                                          axis=0)) > 20


def loopback_speaker_into_microphone(desktop: Desktop, level_db: float, latency_ms: int) -> int:
    """Route the virtual speaker's monitor into the virtual microphone's feed (where the test's speech is played
    too) at `level_db`: the app's own voice comes back to it as from laptop speakers. Returns the module index."""
    loaded = subprocess.run(["pactl", "load-module", "module-loopback", "source=spk.monitor", "sink=micfeed",
                             f"latency_msec={latency_ms}", "adjust_time=0", "source_dont_move=true",
                             "sink_dont_move=true"],
                            env=desktop.env, capture_output=True, text=True, check=True, timeout=20)
    module = int(loaded.stdout.strip())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listing = subprocess.run(["pactl", "list", "short", "sink-inputs"], env=desktop.env, capture_output=True,
                                 text=True, check=True, timeout=20).stdout
        ours = [line.split()[0] for line in listing.splitlines() if "module-loopback" in line]
        if ours:
            for index in ours:
                percent = 100 * 10 ** (level_db / 60)  # PulseAudio's volume scale is cubic
                subprocess.run(["pactl", "set-sink-input-volume", index, f"{percent:.0f}%"], env=desktop.env,
                               check=True, timeout=20)
            return module
        time.sleep(0.1)
    raise RuntimeError("the loopback's sink input did not appear")


def test_the_app_does_not_interrupt_itself_on_speakers(desktop: Desktop, tmp_path):
    """The speaker's sound comes back into the microphone at -20 dB with ~60 ms of delay; the app, with echo
    cancellation on (the default), must answer without pausing for its own voice."""
    xdg = {k: os.environ[k] for k in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME") if k in os.environ}
    env = {**desktop.env, **xdg, "PYTHONUNBUFFERED": "1"}
    module = loopback_speaker_into_microphone(desktop, -20.0, 60)
    lines: list[str] = []
    app = desktop.spawn([sys.executable, "-m", "app.cli", "--set", "llm.max_reply_tokens=80"], cwd=ROOT, env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    threading.Thread(target=lambda: lines.extend(app.stderr), daemon=True).start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not any(line.startswith("cadence: ready") for line in lines) and time.monotonic() < deadline:
            assert app.poll() is None, "".join(lines)[-3000:]
            time.sleep(0.1)
        assert any(line.startswith("cadence: ready") for line in lines), "".join(lines)[-3000:]
        mic = tmp_path / "mic.raw"
        rec = desktop.spawn(["parec", "-d", "micfeed.monitor", "--format=s16le", f"--rate={RATE}", "--channels=1",
                             "--raw"], stdout=open(mic, "wb"), stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        subprocess.run(["paplay", "-d", "micfeed", str(QUESTION)], env=desktop.env, check=True, timeout=30)
        question_end = time.monotonic()
        deadline = question_end + TURN_TIMEOUT_S
        while not any(line.startswith("cadence: turn 1 ") for line in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(8.0)  # the reply plays on; its echo comes back into the microphone all along
        stop(rec)
    finally:
        subprocess.run(["pactl", "unload-module", str(module)], env=desktop.env, timeout=20)
    code = stop(app, timeout=30)
    log = "".join(lines)
    assert code == 0 and "Traceback" not in log, log[-3000:]
    assert any(line.startswith("cadence: turn 1 ") for line in lines), "no reply:\n" + log[-3000:]
    # the echo really reached the microphone: the agent's voice is in the microphone feed after the question
    audio = np.frombuffer(mic.read_bytes(), dtype="<i2").astype(np.float32) / 32768.0
    question_s = speech_seconds(audio[: int(6 * RATE)])
    echo_s = speech_seconds(audio[int((0.5 + 6.0) * RATE):], threshold_dbfs=-55.0)
    assert question_s > 1.0 and echo_s >= 1.0, (question_s, echo_s)
    paused = [line for line in lines if line.startswith("cadence: paused for speech")]
    said = "".join(line for line in lines if line.startswith("cadence"))
    assert not paused, f"the app interrupted itself {len(paused)} time(s):\n" + said
    assert not any(line.startswith("cadence: turn 2 ") for line in lines), "it answered its own voice"

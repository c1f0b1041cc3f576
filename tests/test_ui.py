"""The desktop window, offscreen: it builds; a recorded event stream (spans, turn records, session events) drives the
graphs, the timeline, the transcript and the state indicator; the settings dialog refuses invalid values with the
config's message; `cadence --screenshot` writes a real screenshot; the sound-card device fails with one clear
sentence. Hot swaps with real engines: tests/test_ui_hot_swap.py."""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt6.QtGui import QImage  # noqa: E402

from app.audio import sounddevice_device as sdd  # noqa: E402
from app.audio.duplex import Block  # noqa: E402
from app.audio.playback import PlaybackBuffer  # noqa: E402
from app.config import Config  # noqa: E402
from app.metrics.turns import STAGES  # noqa: E402
from app.ui.app_controller import AppController, LevelTap  # noqa: E402
from app.ui.bridge import UiBridge  # noqa: E402
from app.ui.main_window import MainWindow  # noqa: E402
from app.ui.recording import DEMO_RECORDING, load_stream, replay  # noqa: E402
from app.ui.settings_dialog import SettingsDialog, kokoro_voices  # noqa: E402
from engines.engine_set import Engines  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from tests.ui_helpers import silent_device, wait_for  # noqa: E402

NO_DEVICES = ([], [], "")


@pytest.fixture(scope="module")
def stream():
    return load_stream(DEMO_RECORDING)


# ---- window, graphs, timeline, transcript ---------------------------------------------------------------------
def test_window_builds(qapp):
    window = MainWindow(UiBridge())
    window.show()
    assert set(window.graphs.plots) == set(STAGES)
    assert window.graphs.plots["v2v"].readout.text() == "no turns yet"
    assert "no turn yet" in window.timeline.title.text()
    assert window.state.text() == "Starting" and window.entries == ()
    window.close()


def test_recorded_stream_drives_graphs_timeline_transcript_and_state(qapp, stream):
    bridge = UiBridge()
    window = MainWindow(bridge)
    states: list[str] = []
    bridge.state_changed.connect(lambda key, _text: states.append(key))
    replay(stream, bridge)
    records = [obj for kind, obj in stream if kind == "record"]
    assert len(records) >= 2 and any(r.interrupted for r in records)

    snapshot = window.graphs.snapshot
    for stage in STAGES:
        series = snapshot.series[stage]
        assert len(series.turns) == len(records) == len(series.values_ms)
        x, _y = window.graphs.plots[stage].curve.getData()
        assert len(x) == len(records)
    v2v = [r.stages_ms["v2v"] for r in records if r.stages_ms.get("v2v") is not None]
    readout = window.graphs.plots["v2v"].readout.text()
    assert f"P50 <b>{np.percentile(v2v, 50):,.0f}</b>" in readout
    assert f"P90 <b>{np.percentile(v2v, 90):,.0f}</b>" in readout

    timeline = window.timeline.timeline
    assert timeline.turn == records[-1].turn
    assert all(timeline.counts[row] > 0 for row in ("cpu", "device", "mic", "speaker")), timeline.counts
    stages_drawn = {bar.stage for bar in timeline.bars}
    assert {"vad", "turn", "asr", "llm", "tts", "user_speech", "playback"} <= stages_drawn
    assert [label for _x, label in timeline.markers] == ["you stopped", "agent speaks"]
    assert window.timeline.items and "voice-to-voice" in window.timeline.title.text()

    users = [e.text for e in window.entries if e.role == "user"]
    assert users == [r.transcript for r in records if r.transcript]
    replies = [e for e in window.entries if e.role == "assistant"]
    assert [e.interrupted for e in replies] == [r.interrupted for r in records]
    cut = next(e for e in replies if e.interrupted and e.text)
    assert cut.unheard, "the unplayed rest of an interrupted reply is kept for the mark"
    page = window.transcript.toHtml()
    assert "interrupted" in page and cut.text.split()[0] in page

    assert {"hearing", "thinking", "speaking", "listening"} <= set(states)
    assert window.state.text() == "Listening"
    window.close()


def test_audio_problem_is_a_message_not_a_crash(qapp, monkeypatch):
    import app.ui.app_controller as ctl

    def no_microphone(cfg, playback, controller):
        raise sdd.DeviceError("no microphone found: connect one or choose it in Settings → Audio")

    monkeypatch.setattr(ctl, "build_engines", lambda *a, **k: Engines(*[object()] * 5, names={"llm": "x"}))
    bridge = UiBridge()
    controller = AppController(Config(), bridge, device_factory=no_microphone)
    window = MainWindow(bridge, controller)
    controller.start()
    assert controller.wait(10)
    assert wait_for(qapp, lambda: window.audio_banner.isVisibleTo(window) and window.state_key == "no-audio", 5)
    assert "no microphone found" in window.audio_banner.text()
    assert window.restart_button.isVisibleTo(window) and window.state_key == "no-audio"
    assert controller.engines is not None and controller.session is None  # ready once a device is there
    controller.device_factory = silent_device  # the microphone is plugged in; the user presses Restart audio
    window.restart_button.click()
    assert controller.session is not None
    assert wait_for(qapp, lambda: not window.audio_banner.isVisibleTo(window) and window.state_key == "listening", 5)
    window.close()
    assert controller.session is None  # closing the window stops the conversation


def test_mute_zeroes_the_microphone():
    class Fake:
        rate, block = 16000, 512

        def start(self, on_block):
            self.on_block = on_block

    got: list[Block] = []
    tap = LevelTap(Fake())
    tap.start(got.append)
    loud = np.full(512, 0.5, np.float32)
    tap.device.on_block(Block(0, loud, 0.032, (), 0.064))
    assert tap.level == pytest.approx(0.5)
    tap.set_muted(True)
    tap.device.on_block(Block(1, loud, 0.064, (), 0.096))
    assert not got[1].mic.any() and tap.level == 0.0


# ---- settings -------------------------------------------------------------------------------------------------
def test_settings_refuse_invalid_values_with_the_config_message(qapp):
    dialog = SettingsDialog(Config(), devices=NO_DEVICES)
    emitted: list = []
    dialog.applied.connect(emitted.append)
    dialog.pause_ms.setValue(10)
    assert not dialog.apply()
    assert "turn.pause_ms" in dialog.error.text() and "out of range" in dialog.error.text()
    dialog.pause_ms.setValue(300)
    dialog.vad_threshold.setValue(1.5)
    assert not dialog.apply() and "turn.vad_threshold" in dialog.error.text()
    assert emitted == []
    dialog.vad_threshold.setValue(0.6)
    assert dialog.apply() and dialog.error.text() == ""
    cfg = emitted[-1]
    assert cfg.turn.pause_ms == 300 and cfg.turn.vad_threshold == pytest.approx(0.6)


def test_settings_offer_catalog_models_voices_and_files(qapp):
    dialog = SettingsDialog(Config(), devices=(["Mic A"], ["Speaker B"], ""))
    assert len(kokoro_voices()) == 28 and dialog.voice.count() == 28
    assert "qwen2.5-coder-0.5b" in [dialog.llm.combo.itemText(i) for i in range(dialog.llm.combo.count())]
    dialog.llm.combo.setCurrentText("GGUF file…")
    dialog.llm.path.setText("/models/mine.gguf")
    dialog.input_device.setCurrentText("Mic A")
    values = dialog.values()
    assert values["models"]["llm_path"] == "/models/mine.gguf" and values["audio"]["input_device"] == "Mic A"
    assert values["audio"]["output_device"] == ""  # system default


def test_settings_point_the_llm_at_a_server_and_test_the_connection(qapp):
    from app.llama_server import free_port
    from app.ui.remote_llm_form import REMOTE

    dialog = SettingsDialog(Config(), devices=NO_DEVICES)
    emitted: list = []
    dialog.applied.connect(emitted.append)
    form = dialog.remote
    assert not form.url.isEnabled()  # the local model until the user picks a server
    form.source.setCurrentText(REMOTE)
    form.url.setText("localhost:8080")
    assert not dialog.apply() and "llm.base_url" in dialog.error.text()
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: a real refused connection
    form.url.setText(url)
    form.model.setText("qwen")
    assert dialog.apply() and emitted[-1].llm.base_url == url and emitted[-1].llm.remote_model == "qwen"
    results: list = []
    form.tested.connect(lambda text, ok: results.append((text, ok)))
    form.test_connection()
    wait_for(qapp, lambda: bool(results), 10)
    assert results and not results[0][1] and "cannot reach" in results[0][0] and url in form.result.text()

# ---- command line ---------------------------------------------------------------------------------------------
def test_help_still_works_and_lists_screenshot():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "--screenshot" in proc.stdout and "headless" in proc.stdout


def test_no_display_is_one_clear_line():
    proc = run_cli(env={"DISPLAY": "", "WAYLAND_DISPLAY": "", "QT_QPA_PLATFORM": ""}, timeout=60)
    assert proc.returncode == 2 and "no display" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_screenshot_writes_a_real_png(tmp_path):
    out = tmp_path / "shot.png"
    proc = run_cli("--screenshot", str(out), "--set", "llm.max_reply_tokens=24",
                   env={"QT_QPA_PLATFORM": "offscreen"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    image = QImage(str(out))
    assert image.width() >= 1000 and image.height() >= 600
    small = image.scaled(160, 100)
    colours = {small.pixel(x, y) for x in range(small.width()) for y in range(small.height())}
    assert len(colours) > 50  # not blank: graphs, text, bars


# ---- the sound-card device ------------------------------------------------------------------------------------
class FakeStream:
    def __init__(self, **kw):
        self.kw, self.active, self.time = kw, False, 100.0

    def start(self):
        self.active = True

    def abort(self):
        self.active = False

    def close(self):
        pass


class FakeSd:
    def __init__(self, devices, accepts_16k=True):
        self.devices, self.accepts_16k = devices, accepts_16k
        self.default = SimpleNamespace(device=[0, 1])
        self.streams: list[FakeStream] = []

    def query_devices(self, index=None):
        return list(self.devices) if index is None else self.devices[index]

    def check_input_settings(self, **kw):
        if kw["samplerate"] == 16000 and not self.accepts_16k:
            raise ValueError("Invalid sample rate")

    check_output_settings = check_input_settings

    def InputStream(self, **kw):
        self.streams.append(FakeStream(**kw))
        return self.streams[-1]

    OutputStream = InputStream


MIC = {"name": "USB Mic", "max_input_channels": 1, "max_output_channels": 0, "default_samplerate": 48000.0}
SPEAKER = {"name": "Speakers", "max_input_channels": 0, "max_output_channels": 2, "default_samplerate": 48000.0}


def test_no_devices_is_a_clear_device_error(monkeypatch):
    monkeypatch.setattr(sdd, "load_sounddevice", lambda: FakeSd([]))
    with pytest.raises(sdd.DeviceError, match="no microphone found: connect one or choose it in Settings"):
        sdd.SoundDeviceDuplex(PlaybackBuffer(16000))
    monkeypatch.setattr(sdd, "load_sounddevice", lambda: FakeSd([MIC]))
    with pytest.raises(sdd.DeviceError, match="no speaker found"):
        sdd.SoundDeviceDuplex(PlaybackBuffer(16000))
    monkeypatch.setattr(sdd, "load_sounddevice", lambda: FakeSd([MIC, SPEAKER]))
    with pytest.raises(sdd.DeviceError, match="microphone 'Blue Yeti' not found"):
        sdd.SoundDeviceDuplex(PlaybackBuffer(16000), input_device="Blue Yeti")


def test_missing_portaudio_is_a_clear_device_error(monkeypatch):
    class NoPortAudio(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            return importlib.machinery.ModuleSpec(name, self) if name == "sounddevice" else None

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            raise OSError("PortAudio library not found")

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    with pytest.raises(sdd.DeviceError, match="PortAudio is not installed"):
        sdd.list_devices()


def test_device_resamples_to_16k_blocks_on_the_session_clock(monkeypatch):
    fake = FakeSd([MIC, SPEAKER], accepts_16k=False)  # 48 kHz only: resampled both ways
    monkeypatch.setattr(sdd, "load_sounddevice", lambda: fake)
    playback = PlaybackBuffer(16000)
    statuses: list[str] = []
    device = sdd.SoundDeviceDuplex(playback, on_status=statuses.append)
    blocks: list[Block] = []
    device.start(blocks.append)
    try:
        inp, out = fake.streams
        assert inp.kw["samplerate"] == 48000 and out.kw["samplerate"] == 48000
        playback.push(7, np.full(4000, 0.1, np.float32), 16000)
        outdata = np.zeros((1440, 1), np.float32)
        out.kw["callback"](outdata, 1440, SimpleNamespace(outputBufferDacTime=100.2), None)
        for i in range(40):  # 40 x 30 ms of a 48 kHz tone
            tone = np.sin(np.arange(1440) / 48000 * 2 * np.pi * 440).astype(np.float32)[:, None] * 0.3
            inp.kw["callback"](tone, 1440, SimpleNamespace(inputBufferAdcTime=100.0 + i * 0.03), None)
        assert 35 <= len(blocks) <= 38 and all(len(b.mic) == 512 and b.mic.dtype == np.float32 for b in blocks)
        assert [b.index for b in blocks] == list(range(len(blocks)))
        steps = np.diff([b.t_end for b in blocks])
        assert np.all(np.abs(steps - 0.032) < 0.012)
        offset = time.perf_counter() - 100.0  # PortAudio time -> perf_counter, about what the device measured
        assert abs(blocks[-1].t_end - (100.0 + 40 * 0.03 + offset)) < 0.1
        noted = [n for b in blocks for n in b.notes]
        assert noted and noted[0].turn == 7 and noted[0].first
        assert abs(blocks[0].t_out - (100.2 + offset)) < 0.1
        assert np.abs(outdata).max() > 0.05  # the reply reached the speaker, resampled
        device.muted = True
        inp.kw["callback"](np.full((1440, 1), 0.3, np.float32), 1440,
                           SimpleNamespace(inputBufferAdcTime=101.3), None)
        assert not blocks[-1].mic.any()
        assert device.problem() is None
        inp.active = False  # the microphone was unplugged: the monitor thread reports it
        assert "stopped" in device.problem()
        deadline = time.monotonic() + 3
        while not statuses and time.monotonic() < deadline:
            time.sleep(0.05)
        assert statuses and "Restart audio" in statuses[0]
        fake.devices = [SPEAKER]
        with pytest.raises(sdd.DeviceError, match="no microphone found"):
            device.restart()
    finally:
        device.stop()

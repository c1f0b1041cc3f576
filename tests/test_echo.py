"""Echo cancellation: the simulated speaker path puts the echo where and how loud it should; the delay tracker
finds a known delay in real speech; the block canceller keeps block sizes and clocks (one 10 ms frame late) and
hands the speaker's frames over before the microphone's; WebRTC's canceller on real speech removes the echo and
keeps a person talking over it; the settings choose the device; `cadence bench echo` reports its table."""
from __future__ import annotations

import numpy as np
import pytest

from app.audio.duplex import Block
from app.audio.echo_cancel import BlockEchoCanceller, EchoCancellingDevice, with_echo_cancellation
from app.audio.echo_delay import DelayTracker, gcc_phat_delay
from app.audio.echo_path import EchoPath, SpeakerEcho
from app.config import from_dict
from engines.audio_io import read_audio
from tests.conftest import SPEECH, run_cli, speech_manifest
from tests.wer import wer

RATE, BLOCK = 16000, 512


def speech(*names: str) -> np.ndarray:
    return np.concatenate([read_audio(SPEECH / n) for n in names])


# ---- the simulated speaker-to-microphone path -------------------------------------------------------------------
def test_echo_lands_one_block_plus_the_delay_later_at_the_level():
    path = SpeakerEcho(RATE, BLOCK, level_db=-20.0, delay_ms=100.0)
    out = np.zeros(BLOCK, np.float32)
    out[10] = 1.0
    mic = []
    for i in range(8):
        mic.append(path.add_to(np.zeros(BLOCK, np.float32)))
        path.play(out if i == 0 else np.zeros(BLOCK, np.float32))
    mic = np.concatenate(mic)
    hits = np.nonzero(mic)[0]
    assert list(hits) == [BLOCK + 1600 + 10]  # block 0 plays during block 1; 100 ms = 1600 samples
    assert mic[hits[0]] == pytest.approx(0.1)  # -20 dB


def test_reverberation_adds_a_decaying_tail_below_the_direct_sound():
    path = SpeakerEcho(RATE, BLOCK, level_db=0.0, delay_ms=0.0, reverb=True)
    response = path.response
    assert response[0] == 1.0
    tail = response[1:]
    assert 10 * np.log10(np.sum(tail ** 2)) == pytest.approx(-12.0, abs=0.5)
    early, late = np.sum(tail[:1600] ** 2), np.sum(tail[-1600:] ** 2)
    assert late < early / 100  # it decays


# ---- delay estimate -------------------------------------------------------------------------------------------
def test_gcc_phat_finds_a_known_delay_in_real_speech():
    far = speech("en_librivox_0870.wav")[: 2 * RATE]
    delay = 1392  # 87 ms
    mic = 0.1 * np.concatenate([np.zeros(delay, np.float32), far])[: len(far)]
    mic += np.random.default_rng(0).normal(0, 1e-3, len(mic)).astype(np.float32)
    found, prominence = gcc_phat_delay(far, mic, RATE)
    assert found * 1000 == pytest.approx(87.0, abs=0.1) and prominence > 10


def test_delay_tracker_waits_for_the_speaker_then_reports_the_median():
    tracker = DelayTracker(RATE)
    far = speech("en_librivox_0870.wav", "en_librivox_0890.wav")
    quiet = np.zeros(len(far), np.float32)
    for i in range(0, 3 * RATE, BLOCK):  # nothing played: nothing to estimate
        tracker.add(quiet[i:i + BLOCK], quiet[i:i + BLOCK])
    tracker.wait()  # the correlation runs on the tracker's own thread
    assert tracker.delay_ms() is None
    mic = 0.05 * np.concatenate([np.zeros(2400, np.float32), far])[: len(far)]
    for i in range(0, len(far) - BLOCK, BLOCK):
        tracker.add(far[i:i + BLOCK], mic[i:i + BLOCK])
        tracker.wait()
    assert tracker.delay_ms() == pytest.approx(150.0, abs=1.0)


# ---- the block canceller ----------------------------------------------------------------------------------------
class Recording:
    """A canceller that removes nothing and records the order of the calls."""

    frame_samples = 160

    def __init__(self):
        self.calls: list[str] = []
        self.delays: list[int] = []

    def far(self, frame):
        assert len(frame) == 160
        self.calls.append("far")

    def near(self, frame):
        assert len(frame) == 160
        self.calls.append("near")
        return frame.copy()

    def set_delay_ms(self, delay_ms):
        self.delays.append(delay_ms)


def test_block_canceller_keeps_sizes_and_clocks_one_frame_late():
    fake = Recording()
    processor = BlockEchoCanceller(fake, RATE)
    signal = np.random.default_rng(1).uniform(-0.5, 0.5, 40 * BLOCK).astype(np.float32)
    out = []
    for i in range(40):
        block = Block(i, signal[i * BLOCK:(i + 1) * BLOCK], (i + 1) * BLOCK / RATE, (), 0.0,
                      np.ones(BLOCK, np.float32) * 0.01)
        cleaned = processor.process(block)
        assert len(cleaned.mic) == BLOCK and cleaned.index == i
        assert cleaned.t_end == pytest.approx(block.t_end - 0.010)
        out.append(cleaned.mic)
    out = np.concatenate(out)
    assert np.array_equal(out[160:], signal[:-160]) and not out[:160].any()  # exactly one frame late
    # the speaker's frames of a block go in before the microphone frames of that block
    assert fake.calls[:4] == ["far", "far", "far", "near"]
    assert fake.calls.count("far") == 40 * BLOCK // 160
    assert processor.stats().frames == 40 * BLOCK // 160


def test_settings_choose_the_device():
    class Device:
        rate, block = RATE, BLOCK

    device = Device()
    off = from_dict({"audio": {"echo_cancellation": False}}).audio
    headphones = from_dict({"audio": {"headphones": True}}).audio
    assert with_echo_cancellation(device, off) is device
    assert with_echo_cancellation(device, headphones) is device
    on = with_echo_cancellation(device, from_dict({}).audio)
    assert isinstance(on, EchoCancellingDevice) and on.processor.canceller.echo_cancellation
    only_noise = with_echo_cancellation(device, from_dict({"audio": {"headphones": True,
                                                                      "noise_suppression": True}}).audio)
    assert isinstance(only_noise, EchoCancellingDevice) and not only_noise.processor.canceller.echo_cancellation


# ---- WebRTC's canceller on real speech ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scene_parts():
    far = speech("en_librivox_0870.wav", "en_librivox_0890.wav", "en_LJ001-0006.wav")
    far *= 0.1 / np.sqrt(np.mean(far ** 2))  # the agent's voice at -20 dBFS
    clips = [(n, read_audio(SPEECH / n)) for n in ("en_goforward.wav", "en_LJ001-0008.wav", "en_arctic_a0024.wav")]
    return far, clips


@pytest.mark.slow
@pytest.mark.parametrize("path", [EchoPath(-20.0, 60.0), EchoPath(-20.0, 150.0, reverb=True)])
def test_webrtc_removes_the_echo_and_keeps_the_person(scene_parts, path):
    from app.bench.echo import build_scene, cancel, erle_db, near_level_change_db
    from app.commands.transcribe import transcribe
    from app.config import Config
    from app.engine_factory import build_asr
    from engines.aec_webrtc import WebRtcEchoCanceller

    far, clips = scene_parts
    scene = build_scene(far, clips, path)
    cleaned, processor = cancel(scene, WebRtcEchoCanceller())
    assert erle_db(scene, cleaned) > 30.0
    assert -4.0 < near_level_change_db(scene, cleaned) < 1.0
    assert processor.stats().delay_ms == pytest.approx(path.delay_ms + 32.0, abs=3.0)
    refs = {r["file"]: r["transcript"] for r in speech_manifest()}
    asr = build_asr(Config())
    errors_echo = errors_cancelled = 0.0
    for start, end, name in scene.spans:
        a, b = start - RATE // 4, end + RATE // 4
        errors_cancelled += wer(refs[name], transcribe(asr, cleaned[a:b]))
        errors_echo += wer(refs[name], transcribe(asr, scene.mic[a:b]))
    assert errors_cancelled / len(clips) <= 0.15, errors_cancelled
    assert errors_cancelled < errors_echo  # the echo hurt, and cancelling it helped


@pytest.mark.slow
def test_bench_echo_quick_prints_the_table(tmp_path):
    import json

    out = tmp_path / "echo.json"
    proc = run_cli("bench", "echo", "--quick", "--json", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| echo path | ERLE after 2 s |" in proc.stdout and "-20 dB, 60 ms" in proc.stdout
    row = json.loads(out.read_text())["rows"][0]
    assert row["erle_db"] > 25 and row["delay_estimate_ms"] == pytest.approx(92.0, abs=3.0)
    assert set(row["wer"]) == {"clean", "echo", "cancelled"}

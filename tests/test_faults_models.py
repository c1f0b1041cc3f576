"""Faults: a missing or corrupt model (a user GGUF, a catalog model) is one line at start, and at hot swap the
message is shown and the old engines keep answering a real spoken turn."""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.config import Config, from_dict
from engines.store import cache_root
from tests.conftest import SPEECH, run_cli
from tests.conversation_watch import RATE, clip, reference
from tests.wer import clip_limit, wer

SHARED_MODELS = cache_root()  # read at import, before a test empties the cache


def assert_one_error_line(proc, *needles: str) -> None:
    """Exit 2 and one error line (the model-loading progress lines before it aside), no traceback."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [x for x in proc.stderr.strip().splitlines() if not (x.startswith("[") and x.endswith("]"))]
    assert len(lines) == 1 and lines[0].startswith("cadence: error:") and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def broken_gguf(tmp_path: Path, kind: str) -> Path:
    """A GGUF header followed by garbage, or the first 2 MB of the real model (a download cut short)."""
    path = tmp_path / f"{kind}.gguf"
    if kind == "garbage":
        path.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(range(256)) * 64)
    else:
        from engines.store import ensure

        with open(ensure("qwen2.5-coder-0.5b").file(), "rb") as fh:
            path.write_bytes(fh.read(2_000_000))
    return path


def corrupt_kokoro() -> None:
    """Kokoro installed in the (empty, per-test) model cache, then one of its bytes changed on disk. Its voices are
    copied from the shared cache when they are there (extracting them again takes ~30 s)."""
    from engines import store

    store.install("kokoro-82m-int8")
    voices = SHARED_MODELS / "kokoro-voices-en"
    if voices.is_dir():
        shutil.copytree(voices, store.cache_root() / voices.name,
                        ignore=shutil.ignore_patterns(".*"))  # no stamps: verified again, by hash
    store.install("kokoro-voices-en")
    with open(store.ensure("kokoro-82m-int8").file(), "r+b") as fh:
        fh.seek(5000)
        byte = fh.read(1)
        fh.seek(5000)
        fh.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.slow
@pytest.mark.parametrize("kind, needle", [("missing", "does not exist"), ("garbage", "llama.cpp cannot load"),
                                          ("truncated", "llama.cpp cannot load")])
def test_a_missing_or_corrupt_llm_file_at_start_is_one_line(tmp_path, kind, needle):
    path = "/nonexistent/model.gguf" if kind == "missing" else str(broken_gguf(tmp_path, kind))
    proc = run_cli("headless", str(SPEECH / "en_goforward.wav"), "--set", f"models.llm_path={path}")
    assert_one_error_line(proc, needle, path, "models.llm_path")


@pytest.mark.slow
def test_a_missing_or_corrupt_catalog_model_at_start_is_one_line(empty_model_cache):
    question = str(SPEECH / "en_goforward.wav")
    proc = run_cli("headless", question)  # the default LLM is assembled into the cache on install: not there
    assert_one_error_line(proc, "is not installed", f"cadence models install {Config().models.llm}")
    corrupt_kokoro()
    proc = run_cli("headless", question, "--set", "models.llm=smollm2-135m", "--set", "models.tts=kokoro-82m-int8")
    assert_one_error_line(proc, "sha256", "cadence models install --force kokoro-82m-int8")


class Microphone:
    """A headless device's input: silence, and a clip each time `say()` is called."""

    def __init__(self):
        self._clip, self._pos, self._lock = None, 0, threading.Lock()

    def say(self, audio: np.ndarray) -> None:
        with self._lock:
            self._clip, self._pos = audio, 0

    def __call__(self, start: int, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        with self._lock:
            if self._clip is not None:
                part = self._clip[self._pos:self._pos + n]
                out[:len(part)] = part
                self._pos += len(part)
                if self._pos >= len(self._clip):
                    self._clip = None
        return out


@pytest.mark.slow
def test_a_missing_or_corrupt_model_at_hot_swap_keeps_the_old_engines_answering(tmp_path, empty_model_cache):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtWidgets import QApplication

    from app.audio.headless import HeadlessDuplex
    from app.ui.app_controller import AppController
    from app.ui.bridge import UiBridge

    qapp = QApplication.instance() or QApplication([])

    def wait_for(condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            qapp.processEvents()
            time.sleep(0.02)
        return condition()

    corrupt_kokoro()
    mic, bridge, errors, config_file = Microphone(), UiBridge(), [], tmp_path / "config.toml"
    bridge.error.connect(errors.append)
    cfg = from_dict({"models": {"llm": "smollm2-135m"}, "llm": {"max_reply_tokens": 24}})
    controller = AppController(cfg, bridge, config_file,
                               device_factory=lambda cfg, playback, _: HeadlessDuplex(mic, playback, RATE))
    controller.start()
    try:
        assert controller.wait(120) and controller.session is not None, errors
        engines, session = controller.engines, controller.session
        changes = [({"models": {"llm_path": "/nonexistent/model.gguf"}}, "does not exist"),
                   ({"models": {"llm_path": str(broken_gguf(tmp_path, "garbage"))}}, "llama.cpp cannot load"),
                   ({"models": {"tts": "kokoro-82m-int8"}}, "sha256")]
        for change, needle in changes:
            before = len(errors)
            assert controller.apply(from_dict(change, controller.cfg)) and controller.wait(60)
            assert wait_for(lambda before=before: len(errors) > before, 5), change
            assert needle in errors[-1] and "the previous settings stay in use" in errors[-1], errors[-1]
            assert controller.engines is engines and controller.session is session
        assert not config_file.exists()  # nothing of the failed settings was saved
        mic.say(clip("en_goforward.wav"))  # the old engines still answer a spoken turn
        assert wait_for(lambda: [m.role for m in session.history.messages] == ["user", "assistant"], 60), \
            session.history
        user, reply = session.history.messages
        said = reference("en_goforward.wav")
        assert wer(said, user.text) <= clip_limit(said, 0.2) and reply.text.strip(), session.history
    finally:
        controller.shutdown()

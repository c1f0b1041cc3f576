"""The fast loop's guard (tests/model_guard.py): every model load point is refused while it is installed, in a
module imported before or after, and in a subprocess; undoing it gives the libraries back untouched."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from tests import model_guard
from tests.conftest import ROOT


class Refused(Exception):
    pass


def test_every_point_is_refused_and_undo_restores_it():
    import ctranslate2
    import llama_cpp
    import onnxruntime

    originals = (onnxruntime.InferenceSession, llama_cpp.llama_model_load_from_file, ctranslate2.models.Whisper)
    seen: list[str] = []

    def refused(what: str) -> None:
        seen.append(what)
        raise Refused(what)

    undo = model_guard.install(refused)
    try:
        with pytest.raises(Refused):
            onnxruntime.InferenceSession("model.onnx")
        with pytest.raises(Refused):
            llama_cpp.llama_model_load_from_file(b"model.gguf", None)
        with pytest.raises(Refused):
            ctranslate2.models.Whisper("whisper-dir")
    finally:
        undo()
    assert seen == ["an onnxruntime session", "a GGUF through llama.cpp", "a Whisper model through CTranslate2"]
    # the conftest's own guard (this test is not slow) is what the undo gives back, not a third function
    assert (onnxruntime.InferenceSession, llama_cpp.llama_model_load_from_file,
            ctranslate2.models.Whisper) == originals


def test_a_module_imported_later_is_guarded_and_a_stale_reference_works_after_undo(tmp_path, monkeypatch):
    (tmp_path / "fake_ml_lib.py").write_text("def load(path):\n    return 'loaded ' + path\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(model_guard, "POINTS", [("fake_ml_lib", "load", "fake weights")])
    monkeypatch.delitem(sys.modules, "fake_ml_lib", raising=False)

    def refused(what: str) -> None:
        raise Refused(what)

    undo = model_guard.install(refused)
    try:
        lib = importlib.import_module("fake_ml_lib")  # imported after the guard: patched on import
        stale = lib.load
        with pytest.raises(Refused, match="fake weights"):
            lib.load("w.bin")
    finally:
        undo()
    assert lib.load("w.bin") == "loaded w.bin"
    assert stale("w.bin") == "loaded w.bin"  # a reference taken meanwhile no longer refuses


def test_a_subprocess_writes_the_refused_load_and_exits(tmp_path):
    report = tmp_path / "refused.txt"
    code = ("from tests.model_guard import install_in_subprocess; install_in_subprocess(); "
            "import onnxruntime; onnxruntime.InferenceSession('model.onnx'); print('not reached')")
    proc = subprocess.run([sys.executable, "-c", code, "say", "hi"], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, model_guard.ENV: str(report)}, timeout=60)
    assert proc.returncode == model_guard.EXIT_CODE, proc.stderr
    assert "not reached" not in proc.stdout and "model load was refused" in proc.stderr
    assert report.read_text().splitlines() == ["cadence say hi: an onnxruntime session"]


def test_the_message_says_what_to_do():
    text = model_guard.message("tests/test_x.py::test_y", "an onnxruntime session")
    assert "tests/test_x.py::test_y" in text and "an onnxruntime session" in text and "pytest.mark.slow" in text

"""The fast test loop's guard: a test that is not marked `slow` (or `desktop`) must not load a model.

`install(refused)` replaces every point a model load goes through with a function that calls `refused(what)`;
the returned function puts the originals back. The points are the libraries' own constructors, so every engine,
catalog model or user file, is covered whatever path it took there:
- `onnxruntime.InferenceSession`: Silero VAD, Smart Turn, Piper, Kokoro (ONNX), Moonshine (`engines/onnx_cpu.py`);
- `llama_cpp.llama_model_load_from_file`: every GGUF, catalog or the user's (`engines/llama_loader.py`);
- `ctranslate2.models.Whisper`: Whisper through faster-whisper (`engines/asr_whisper.py`);
- `torch.load`: the torch engines' weights (NeMo `.nemo` restore, Kokoro `.pth`).
Each is patched when its module is imported (now or later: importing them all just to guard them would cost
every test and every `cadence` subprocess a second or more).
Checking or installing model files (`engines.store.ensure`, `verify`, `install`) is not a load: the store's tests
run on small fake catalog entries and on missing models, and stay in the fast loop.

The conftest installs it around every test not marked slow; `cadence` subprocesses started with `run_cli` install
it too (`python -c BOOTSTRAP`), write what they refused to the file named by `ENV` and exit with `EXIT_CODE`."""
from __future__ import annotations

import importlib.abc
import os
import sys
from collections.abc import Callable

ENV = "CADENCE_TEST_MODEL_GUARD"  # a file: the subprocess writes each refused load there, one a line
EXIT_CODE = 97
BOOTSTRAP = ("import runpy, sys; from tests.model_guard import install_in_subprocess; install_in_subprocess(); "
             "runpy.run_module('app.cli', run_name='__main__', alter_sys=True)")


def message(test: str, what: str) -> str:
    return (f"{test} loads a model ({what}) but is not marked slow: mark it `@pytest.mark.slow` (or the module "
            "`pytestmark = pytest.mark.slow`), so that `pytest -m \"not slow and not desktop\"` stays fast")


# (module, attribute, what it loads): every place a model load goes through
POINTS = [("onnxruntime", "InferenceSession", "an onnxruntime session"),
          ("llama_cpp", "llama_model_load_from_file", "a GGUF through llama.cpp"),
          ("ctranslate2.models", "Whisper", "a Whisper model through CTranslate2"),
          ("torch", "load", "torch weights (torch.load)")]


class _Guard(importlib.abc.MetaPathFinder):
    """Patches each point whose module is imported, now or later (importing torch or onnxruntime just to guard
    them would cost every test run seconds); `undo()` puts the originals back and leaves the import system alone.
    A patched function that outlives the guard (a `from onnxruntime import InferenceSession` made meanwhile)
    calls the original."""

    def __init__(self, refused: Callable[[str], None]):
        self.refused, self.active, self.saved = refused, True, []
        self.waiting = {}  # module -> [(attribute, what)]
        for module, name, what in POINTS:
            self.waiting.setdefault(module, []).append((name, what))
        for module in list(self.waiting):
            if module in sys.modules:
                self._patch(sys.modules[module])
        sys.meta_path.insert(0, self)

    def _patch(self, module) -> None:
        for name, what in self.waiting.pop(module.__name__, []):
            original = getattr(module, name)

            def refuse(*args, _what=what, _original=original, **kwargs):
                if not self.active:
                    return _original(*args, **kwargs)
                self.refused(_what)
                raise RuntimeError(f"model load refused: {_what}")  # `refused` should have raised already

            setattr(module, name, refuse)
            self.saved.append((module, name, original))

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.waiting or not self.active:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader, guard = spec.loader, self
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module):
            run(module)
            if guard.active:
                guard._patch(module)

        loader.exec_module = exec_module
        return spec

    def undo(self) -> None:
        self.active = False
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        for module, name, original in reversed(self.saved):
            setattr(module, name, original)


def install(refused: Callable[[str], None]) -> Callable[[], None]:
    """Make every model load call `refused(what)` (which should raise); returns the undo."""
    return _Guard(refused).undo


def install_in_subprocess() -> None:
    """In a `cadence` subprocess of a test not marked slow: a model load is written to the file named by `ENV`,
    said on stderr, and ends the process at once (from whatever thread it came) with `EXIT_CODE`."""
    path = os.environ.get(ENV)
    if not path:
        return

    def refused(what: str) -> None:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"cadence {' '.join(sys.argv[1:])}: {what}\n")
        print(f"model_guard: a model load was refused ({what}): the test is not marked slow", file=sys.stderr,
              flush=True)
        os._exit(EXIT_CODE)

    install(refused)

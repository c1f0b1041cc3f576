"""Shared test setup: every test runs with its own XDG config/data/state dirs (nothing of a test run lands in the
user's home), while the model cache (XDG_CACHE_HOME) stays shared so verified models are not assembled again.
Tests that need an empty model cache use the `empty_model_cache` fixture.

The fast loop: a test not marked `slow` (or `desktop`) fails if it loads a model, in this process or in a `cadence`
subprocess started with `run_cli` (`tests/model_guard.py`), so `pytest -m "not slow and not desktop"` stays fast."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from tests import model_guard

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SPEECH = FIXTURES / "speech"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub during tests


def _may_load_models(item: pytest.Item) -> bool:
    return item.get_closest_marker("slow") is not None or item.get_closest_marker("desktop") is not None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """Before any fixture of a test not marked slow (module- and session-scoped ones load engines too): every model
    load fails the test; `cadence` subprocesses write theirs to a file that teardown reads."""
    if not _may_load_models(item):
        refused: list[str] = []  # loads refused in other threads (the main thread's fail the test at once)

        def refuse(what: str) -> None:
            if threading.current_thread() is not threading.main_thread():
                refused.append(what)
            pytest.fail(model_guard.message(item.nodeid, what), pytrace=False)

        fd, name = tempfile.mkstemp(prefix="cadence-model-guard-", suffix=".txt")
        os.close(fd)
        report = Path(name)
        previous = os.environ.get(model_guard.ENV)
        os.environ[model_guard.ENV] = str(report)
        item.stash[_GUARD] = (model_guard.install(refuse), refused, report, previous)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield
    guard = item.stash.get(_GUARD, None)
    if guard is None:
        return
    undo, refused, report, previous = guard
    undo()
    if previous is None:
        os.environ.pop(model_guard.ENV, None)
    else:
        os.environ[model_guard.ENV] = previous
    refused += report.read_text(encoding="utf-8").splitlines() if report.exists() else []
    report.unlink(missing_ok=True)
    if refused:  # a load in a thread or a subprocess: the test may not have failed by itself
        pytest.fail(model_guard.message(item.nodeid, "; ".join(dict.fromkeys(refused))), pytrace=False)


_GUARD = pytest.StashKey[tuple]()


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.mktemp("xdg")
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        (base / var).mkdir()
        monkeypatch.setenv(var, str(base / var))
    return base


@pytest.fixture
def empty_model_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture
def sched():
    """A default scheduler, closed after the test."""
    from scheduler import Scheduler

    s = Scheduler()
    yield s
    s.close()


def run_cli(*args: str, env: dict | None = None, timeout: float = 300, prefix: tuple[str, ...] = ()):
    """Run the real `cadence` entry point in a subprocess; returns CompletedProcess with text output."""
    guarded = bool(os.environ.get(model_guard.ENV))  # a test not marked slow: its subprocess loads no model either
    cmd = [*prefix, sys.executable, *(("-c", model_guard.BOOTSTRAP) if guarded else ("-m", "app.cli")), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def speech_manifest() -> list[dict]:
    import csv

    with open(SPEECH / "manifest.tsv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture
def debug_logs(caplog):
    """Every log record at DEBUG: the root, every cadence.* logger and the scheduler's."""
    for name in (None, "cadence", "scheduler"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture(scope="session")
def engines():
    """The default engines, loaded once for the conversation tests that share them (a module may define its own)."""
    from app.config import Config
    from app.engine_factory import build_engines

    return build_engines(Config())


@pytest.fixture(scope="session")
def qapp():
    """The Qt application for the window tests (offscreen unless a display is set)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtWidgets import QApplication

    return QApplication.instance() or QApplication([])

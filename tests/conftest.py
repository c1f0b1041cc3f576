"""Shared test setup: every test runs with its own XDG config/data/state dirs (nothing of a test run lands in the
user's home), while the model cache (XDG_CACHE_HOME) stays shared so verified models are not assembled again.
Tests that need an empty model cache use the `empty_model_cache` fixture."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SPEECH = FIXTURES / "speech"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub during tests


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
    cmd = [*prefix, sys.executable, "-m", "app.cli", *args]
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

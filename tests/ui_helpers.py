"""Shared by the window tests (the Qt application is the `qapp` fixture in conftest): waiting while Qt runs its
events, and a silent headless device standing in for a sound card."""
from __future__ import annotations

import time

import numpy as np

from app.audio.headless import HeadlessDuplex


def wait_for(qapp, condition, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        qapp.processEvents()
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def silent_device(cfg, playback, controller):
    return HeadlessDuplex(lambda start, n: np.zeros(n, np.float32), playback, 16000)

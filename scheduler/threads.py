"""Thread-pool sizing for the native math libraries, set before any heavy import.

On a 2-core machine, oversubscribed OpenMP/BLAS pools cost several-fold slowdowns, so the process
pins them once, early. Engines take their own thread counts from the settings
(``SchedulerSettings.device_threads`` / ``cpu_lane_threads``), never from the scheduler.
"""

from __future__ import annotations

import os

THREAD_POOL_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> int:
    """CPU cores this process may run on (affinity-aware where the OS supports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def configure_thread_pools(threads: int | None = None) -> int:
    """Default the native pools' sizes to ``threads`` and return the count engines should use.

    ``threads`` None means every available core. Variables the user already set are kept
    (``os.environ.setdefault``). Call this before importing numpy, onnxruntime, llama_cpp or torch.
    """
    if threads is None:
        threads = available_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an int >= 1 or None, got {threads!r}")
    for name in THREAD_POOL_ENV_VARS:
        os.environ.setdefault(name, str(threads))
    return threads

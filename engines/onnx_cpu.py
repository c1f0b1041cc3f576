"""onnxruntime CPU sessions as every ONNX engine here opens them: a bounded number of intra-op threads, no
inter-op pool, quiet logs.

Engines whose input size varies from call to call (a TTS segment, an utterance) would otherwise keep the memory
arena sized for the largest call ever made: onnxruntime grows its arena in powers of two and never gives memory
back, so one long sentence left Piper ~150 MB larger for the rest of the session (and 700 MB after a 30 s one).
Those sessions are wrapped so every run releases the arena regions it no longer uses (onnxruntime's
"memory.enable_memory_arena_shrinkage" run option): measured on this project's 2-core machine, Piper's speed is
unchanged and its memory returns after each call."""
from __future__ import annotations

from pathlib import Path
from typing import Any

SHRINK_ARENA = ("memory.enable_memory_arena_shrinkage", "cpu:0")


def cpu_session(model_path: str | Path, threads: int = 1, release_memory: bool = False) -> Any:
    """An onnxruntime CPU session on `threads` intra-op threads; with `release_memory`, one that frees its unused
    arena after every run (for inputs of varying size)."""
    import onnxruntime as ort

    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
    return ReleasingSession(session) if release_memory else session


class ReleasingSession:
    """An `InferenceSession` (everything is delegated) whose `run` shrinks the arena afterwards unless the caller
    passes its own run options. Libraries that call `session.run(...)` themselves (Piper) get it too."""

    def __init__(self, session: Any):
        import onnxruntime as ort

        self.session = session
        self.run_options = ort.RunOptions()
        self.run_options.add_run_config_entry(*SHRINK_ARENA)

    def run(self, output_names, input_feed, run_options=None):
        return self.session.run(output_names, input_feed, run_options or self.run_options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

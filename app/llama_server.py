"""Start llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`, the `server` extra) on a free
loopback port with a catalog model: the real server the remote-LLM tests and `cadence bench remote` talk to.

`LlamaServer(model_id).start()` returns once `GET /v1/models` answers; `stop()` ends the process (`kill()` ends it
at once, as a crash would). The server logs to a pipe that is drained and dropped: it would print prompts."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from app.errors import InputError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_available() -> bool:
    """Whether llama-cpp-python's server extra (fastapi, uvicorn, sse-starlette) is installed."""
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError:
        return False
    return True


class LlamaServer:
    def __init__(self, model_id: str, *, port: int | None = None, n_ctx: int = 4096, n_threads: int = 2,
                 api_key: str = "", alias: str | None = None, logprobs: bool = False):
        from engines.store import ensure

        self.model_id, self.alias = model_id, alias or model_id
        self.path = ensure(model_id).file()
        self.port = port or free_port()
        self.n_ctx, self.n_threads, self.api_key = n_ctx, n_threads, api_key
        # The server's default (logits_all on) computes the logits of every prompt token, which log-probabilities
        # need and which slows every prompt (README: first token 421 -> 4085 ms): on only for the text score.
        self.logprobs = logprobs
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 120.0) -> LlamaServer:
        if not server_available():
            raise InputError("llama-cpp-python's server is not installed: pip install 'cadence[server]'")
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.path), "--model_alias", self.alias,
               "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx),
               "--n_threads", str(self.n_threads), "--n_threads_batch", str(self.n_threads), "--verbose", "False",
               "--logits_all", str(self.logprobs)]
        if self.api_key:
            cmd += ["--api_key", self.api_key]
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        tail: list[bytes] = []
        threading.Thread(target=_drain, args=(self.process, tail), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited ({self.process.returncode}): "
                                   f"{b''.join(tail)[-600:].decode(errors='replace')}")
            if self.ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {timeout_s:g} s")

    def ready(self) -> bool:
        request = urllib.request.Request(self.base_url + "/models",
                                         headers={"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})
        try:
            with urllib.request.urlopen(request, timeout=1.0):
                return True
        except OSError as exc:  # refused while loading; 401 means it is up (and wants a key)
            return getattr(exc, "code", None) == 401

    def kill(self) -> None:
        """End the server at once, as a crash would (the tests' "killed mid-reply")."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _drain(process: subprocess.Popen, tail: list[bytes]) -> None:
    """Read the server's output so it never blocks on a full pipe; keep only the last lines, for a start error."""
    assert process.stdout is not None
    for line in process.stdout:
        tail.append(line)
        del tail[:-20]

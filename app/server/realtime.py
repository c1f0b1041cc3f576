"""The WebSocket side of `cadence serve`: `/v1/realtime` (the path the OpenAI SDK builds from `base_url`), one
`RealtimeConnection` per client. The engines are loaded once; each client gets forks of the stateful ones (its own
VAD state, utterance, LLM context and voice on the same weights) and one shared scheduler, so every client's work
takes turns on the one device lane by priority (a long reply yields to another client's first words).

Refusals are close codes with a reason: 1008 for a missing or wrong token, 1013 when the server is full, 1009 for
a message over the size limit (websockets' own). A malformed or unknown event gets an `error` event and the
connection stays up; a client that vanishes frees its conversation at once."""
from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from app.config import Config, runtime_settings
from app.runtime import TURN_RANGE
from app.server import protocol as p
from app.server.connection import RealtimeConnection
from engines.engine_set import Engines, NotForkable
from engines.protocols import Forkable, Message, RemoteModel, TextTurnScorer
from scheduler import DEVICE_LANE, NO_TURN, Priority, Scheduler, WorkUnit, configure_thread_pools

log = logging.getLogger("cadence.serve")
PATHS = ("/v1/realtime", "/realtime")
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # one event; an append of 6 MiB of pcm16 is ~2 min of 24 kHz audio
CLOSE_UNAUTHORIZED, CLOSE_FULL = 1008, 1013


class RealtimeServer:
    def __init__(self, cfg: Config, engines: Engines, host: str = "127.0.0.1", port: int = 8765,
                 token: str = "", max_clients: int = 4):
        self.cfg, self.engines, self.host, self.port = cfg, engines, host, port
        self.token, self.max_clients = token, max_clients
        configure_thread_pools(cfg.scheduler.device_threads)
        settings = runtime_settings(cfg)
        self.scheduler = Scheduler(settings.scheduler, device_barrier=engines.device_barrier())
        warm_system_prompt(engines, settings.system_prompt)
        self.active: dict[int, RealtimeConnection] = {}
        self._numbers = itertools.count(1)
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # the conversations' start and stop block: their own threads, alive until every client is freed (asyncio's
        # default executor is shut down before the last handlers' cleanup when the loop ends)
        self._executor = ThreadPoolExecutor(max_workers=2 * max_clients + 2, thread_name_prefix="serve")

    # ---- running -----------------------------------------------------------------------------------------
    def run(self, on_ready: Callable[[int], None] = lambda _port: None) -> None:
        """Serve until `stop()` (or Ctrl-C); `on_ready(port)` once listening (port 0 picks a free one)."""
        try:
            asyncio.run(self._serve(on_ready))
        finally:
            self._executor.shutdown(wait=True)
            self.scheduler.close()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def _serve(self, on_ready: Callable[[int], None]) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with serve(self._client, self.host, self.port, process_request=self._check_path,
                         max_size=MAX_MESSAGE_BYTES, compression=None) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            on_ready(self.port)
            await self._stop.wait()
            server.close()  # every client's connection: their handlers free their conversations
            for _ in range(200):  # up to 10 s
                if not self.active:
                    break
                await asyncio.sleep(0.05)

    @staticmethod
    def _check_path(connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0].rstrip("/") in PATHS:
            return None
        return connection.respond(404, f"Cadence serves the Realtime API at {PATHS[0]}\n")

    def _authorized(self, headers: Headers) -> bool:
        if not self.token:
            return True
        given = headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode())

    # ---- one client ----------------------------------------------------------------------------------------
    async def _client(self, ws: ServerConnection) -> None:
        assert ws.request is not None, "the handshake is done"
        if not self._authorized(ws.request.headers):
            await ws.close(CLOSE_UNAUTHORIZED, "unauthorized: send Authorization: Bearer <the server's token>")
            return
        if len(self.active) >= self.max_clients:
            await ws.close(CLOSE_FULL, f"busy: this server takes {self.max_clients} client(s) at a time")
            return
        try:
            engines = self.engines.fork()
        except NotForkable as exc:
            if self.active:
                await ws.close(CLOSE_FULL, f"busy: {exc}")
                return
            engines = self.engines
        number = next(self._numbers)
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue[str | None] = asyncio.Queue()

        def send(event: dict) -> None:  # from any thread
            loop.call_soon_threadsafe(outbox.put_nowait, json.dumps(event))

        connection = RealtimeConnection(self.cfg, engines, self.scheduler, number * TURN_RANGE, send,
                                        f"sess_{number}")
        self.active[number] = connection
        writer = asyncio.create_task(self._write(ws, outbox))
        log.info("client %d connected (%d active)", number, len(self.active))
        try:
            await loop.run_in_executor(self._executor, connection.start)
            async for message in ws:
                try:
                    event = p.parse(message)
                except p.ProtocolError as exc:
                    send(connection.events.error(exc))
                    continue
                connection.handle(event)
        except ConnectionClosed:
            pass
        finally:
            outbox.put_nowait(None)
            await loop.run_in_executor(self._executor, connection.close)
            if engines is not self.engines:  # on the device lane, after any unit still using them
                self.scheduler.submit(WorkUnit(lambda _token: Engines.close_forks(engines, self.engines),
                                               "close", NO_TURN, Priority.BACKGROUND, DEVICE_LANE))
            del self.active[number]
            await asyncio.gather(writer, return_exceptions=True)
            log.info("client %d left (%d active)", number, len(self.active))

    @staticmethod
    async def _write(ws: ServerConnection, outbox: asyncio.Queue[str | None]) -> None:
        while (message := await outbox.get()) is not None:
            try:
                await ws.send(message)
            except ConnectionClosed:
                return


def warm_system_prompt(engines: Engines, system: str) -> None:
    """Evaluate the system prompt once in the shared LLM, before any client: each client's fork starts from a copy
    of this cache instead of evaluating it anew while other clients' replies hold the lane (measured with the 0.5B
    on 2 cores: first token 99 ms instead of 1149 ms cold)."""
    llm = engines.llm
    if not isinstance(llm, Forkable) or isinstance(llm, RemoteModel):
        return
    messages = [Message("system", system), Message("user", "Hello")]
    if isinstance(llm, TextTurnScorer):
        llm.end_of_utterance_score(messages)
    else:
        generation = llm.start(messages, 1)
        generation.prefill()
        generation.cancel()


def serve_in_thread(server: RealtimeServer, timeout: float = 60.0) -> threading.Thread:
    """Start `server` on a daemon thread; returns once it listens (for tests and benchmarks)."""
    ready = threading.Event()
    thread = threading.Thread(target=server.run, kwargs={"on_ready": lambda _port: ready.set()}, daemon=True,
                              name="cadence-serve")
    thread.start()
    if not ready.wait(timeout):
        raise RuntimeError("the Realtime server did not start listening")
    return thread

"""A real HTTP proxy on 127.0.0.1 in front of a real LLM server, which injects the faults a server or a network can
cause: an error status, a slow first byte, a stream cut half-way, malformed stream data. Without a fault it passes
every request and response through unchanged (streamed line by line), so the server behind it does the work.

`proxy.fault = Fault(...)` applies to the next chat or completions requests (`times`: how many; None: all)."""
from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Fault:
    status: int | None = None  # answer this HTTP status instead of forwarding
    delay_s: float = 0.0  # wait this long before forwarding
    cut_after_lines: int | None = None  # forward this many stream lines, then drop the connection
    garbage_after_lines: int | None = None  # forward this many stream lines, then send malformed data
    times: int | None = 1


class FaultProxy:
    def __init__(self, upstream_base_url: str):
        parts = urlsplit(upstream_base_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.fault: Fault | None = None
        self.requests = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # the proxy prints nothing
                pass

            def do_GET(self) -> None:
                proxy._handle(self, "GET")

            def do_POST(self) -> None:
                proxy._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        path = parts.path.rstrip("/")
        self.base_url = f"http://127.0.0.1:{self.port}{path}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _take_fault(self, path: str) -> Fault | None:
        if not path.endswith(("/chat/completions", "/completions")):
            return None
        with self._lock:
            self.requests += 1
            fault = self.fault
            if fault is None:
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.fault = None
            return fault

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        fault = self._take_fault(h.path)
        if fault and fault.status is not None:
            payload = json.dumps({"error": {"message": "injected by the test proxy", "type": "server_error",
                                            "code": fault.status}}).encode()
            h.send_response(fault.status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
            return
        if fault and fault.delay_s:
            time.sleep(fault.delay_s)
        conn = http.client.HTTPConnection(*self.upstream, timeout=120)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        try:
            conn.request(method, h.path, body=body or None, headers=headers)
            response = conn.getresponse()
            h.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                    h.send_header(key, value)
            h.send_header("Connection", "close")
            h.end_headers()  # HTTP/1.0: the body ends when the connection closes
            lines = 0
            while line := response.readline():
                h.wfile.write(line)
                h.wfile.flush()
                if line.startswith(b"data:"):
                    lines += 1
                if line.strip() or not fault:  # faults strike between two events
                    continue
                if fault.cut_after_lines is not None and lines >= fault.cut_after_lines:
                    return  # the connection closes mid-stream
                if fault.garbage_after_lines is not None and lines >= fault.garbage_after_lines:
                    h.wfile.write(b'data: {"choices": [{"delta": {"content": \n\n')
                    h.wfile.flush()
                    return
        except OSError:  # the client went away, or the server did: the connection ends here
            return
        finally:
            conn.close()

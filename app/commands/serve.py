"""`cadence serve`: the OpenAI Realtime API on a WebSocket (`ws://HOST:PORT/v1/realtime`), so clients that already
speak it (the official SDKs, browser demos, phone bridges) talk to Cadence. Binds 127.0.0.1 unless told otherwise;
any other address needs a token (read from an environment variable, never from the command line, where other
users could read it). Nothing of a conversation is written to disk or logs."""
from __future__ import annotations

import argparse
import os
import sys

from app.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the OpenAI Realtime API on a WebSocket (default ws://127.0.0.1:8765)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 picks a free one)")
    p.add_argument("--token-env", default="CADENCE_SERVE_TOKEN", metavar="NAME",
                   help="environment variable holding the token clients must send as 'Authorization: Bearer "
                        "<token>' (required when --host is not a loopback address; default CADENCE_SERVE_TOKEN)")
    p.add_argument("--max-clients", type=int, default=4, help="clients served at once (default 4)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from app.config import load_config
    from app.engine_factory import build_engines
    from app.server.realtime import RealtimeServer
    from engines.llm_remote import is_loopback_host

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be 0-65535, got {args.port}")
    if args.max_clients < 1:
        raise InputError(f"--max-clients must be at least 1, got {args.max_clients}")
    token = os.environ.get(args.token_env, "")
    if not is_loopback_host(args.host) and not token:
        raise InputError(f"--host {args.host} is reachable from other machines: set a token in ${args.token_env} "
                         "(clients send it as 'Authorization: Bearer <token>')")
    cfg = load_config(args)
    engines = build_engines(cfg, lambda msg: print(f"[{msg}]", file=sys.stderr))
    server = RealtimeServer(cfg, engines, args.host, args.port, token, args.max_clients)

    def ready(port: int) -> None:
        print(f"cadence serve: listening on ws://{args.host}:{port}/v1/realtime (up to {args.max_clients} "
              f"client(s){', token required' if token else ''}); Ctrl-C stops", flush=True)
    try:
        server.run(ready)
    except OSError as exc:
        raise InputError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return 0

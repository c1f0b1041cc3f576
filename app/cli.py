"""`cadence` command line: parses arguments, dispatches to app/commands/, and turns every expected failure
into one clear line on stderr with exit code 2 (never a traceback; set CADENCE_DEBUG=1 to see one)."""
from __future__ import annotations

import argparse
import os
import sys

from app import config as config_mod
from app.errors import UserError, EXIT_USER
from app.commands import models as models_cmd
from app.commands import config as config_cmd
from app.commands import say as say_cmd
from app.commands import transcribe as transcribe_cmd
from app.commands import headless as headless_cmd

COMMANDS = [models_cmd, config_cmd, say_cmd, transcribe_cmd, headless_cmd]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cadence",
        description="Cadence: a local voice assistant that listens, answers and shows its latency.",
    )
    parser.add_argument("--config", metavar="FILE", help="config file (default: %s)" % config_mod.config_path())
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                        help="override one setting for this run, e.g. --set llm.n_threads=1 (repeatable)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def load_config(args: argparse.Namespace) -> config_mod.Config:
    from pathlib import Path

    return config_mod.load(Path(args.config) if args.config else None, args.overrides)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("cadence: interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        if os.environ.get("CADENCE_DEBUG"):
            raise
        print(f"cadence: error: {exc}", file=sys.stderr)
        return EXIT_USER


if __name__ == "__main__":
    sys.exit(main())

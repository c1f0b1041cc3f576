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
from app.commands import bench as bench_cmd

COMMANDS = [models_cmd, config_cmd, say_cmd, transcribe_cmd, headless_cmd, bench_cmd]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cadence",
        description="Cadence: a local voice assistant that listens, answers and shows its latency. "
                    "With no command, opens the desktop window.",
    )
    parser.add_argument("--config", metavar="FILE", help="config file (default: %s)" % config_mod.config_path())
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                        help="override one setting for this run, e.g. --set llm.n_threads=1 (repeatable)")
    parser.add_argument("--screenshot", metavar="FILE.png",
                        help="open the window, run one demo turn, save a screenshot and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def load_config(args: argparse.Namespace) -> config_mod.Config:
    from pathlib import Path

    return config_mod.load(Path(args.config) if args.config else None, args.overrides)


GLOBAL_OPTIONS = ("--set", "--config")


def hoist_global_options(argv: list[str]) -> list[str]:
    """`--set` and `--config` may appear anywhere (`cadence headless a.wav --set llm.n_threads=1`): move them in
    front of the command, where argparse expects them."""
    front, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in GLOBAL_OPTIONS and i + 1 < len(argv):
            front += argv[i:i + 2]
            i += 2
            continue
        (front if arg.split("=", 1)[0] in GLOBAL_OPTIONS else rest).append(arg)
        i += 1
    return front + rest


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(hoist_global_options(sys.argv[1:] if argv is None else list(argv)))
    if not getattr(args, "func", None):  # no command: the desktop window
        from app.commands.gui import cmd_gui

        args.func = cmd_gui
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

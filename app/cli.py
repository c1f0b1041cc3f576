"""`cadence` command line: parses arguments, dispatches to app/commands/, and turns every expected failure
into one clear line on stderr with exit code 2 (never a traceback; set CADENCE_DEBUG=1 to see one).

Global options (`--config`, `--set`, `--log-level`, `-v`) may come anywhere on the line. Logs go to stderr:
`-v` shows each turn's decisions (why a turn ended, barge-ins, failures), `-vv` or `--log-level debug` every step
of the turn-taking with its inputs. Logs carry timings, counts and reasons, never a word of the conversation."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from app import config as config_mod
from app.commands import bench as bench_cmd
from app.commands import config as config_cmd
from app.commands import doctor as doctor_cmd
from app.commands import headless as headless_cmd
from app.commands import models as models_cmd
from app.commands import say as say_cmd
from app.commands import serve as serve_cmd
from app.commands import transcribe as transcribe_cmd
from app.errors import EXIT_USER, UserError

COMMANDS = [models_cmd, config_cmd, say_cmd, transcribe_cmd, headless_cmd, serve_cmd, bench_cmd, doctor_cmd]
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMAT = "cadence: %(levelname)s %(name)s: %(message)s"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cadence",
        description="Cadence: a local voice assistant that listens, answers and shows its latency. "
                    "With no command, opens the desktop window.",
    )
    parser.add_argument("--config", metavar="FILE", help=f"config file (default: {config_mod.config_path()})")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                        help="override one setting for this run, e.g. --set llm.n_threads=1 (repeatable)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default=None,
                        help="log to stderr from this level on (default: warning): info shows why each turn "
                             "ended, debug every turn-taking step; never words of the conversation")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v: --log-level info, -vv: --log-level debug")
    parser.add_argument("--screenshot", metavar="FILE.png",
                        help="open the window, run one demo turn, save a screenshot and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


GLOBAL_OPTIONS = ("--set", "--config", "--log-level")  # options that take a value
GLOBAL_FLAGS = ("-v", "-vv", "-vvv", "--verbose")


def hoist_global_options(argv: list[str]) -> list[str]:
    """Global options may appear anywhere (`cadence headless a.wav --set llm.n_threads=1 -v`): move them in front
    of the command, where argparse expects them."""
    front, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":  # everything after is positional
            rest += argv[i:]
            break
        if arg in GLOBAL_OPTIONS and i + 1 < len(argv):
            front += argv[i:i + 2]
            i += 2
            continue
        global_option = arg.split("=", 1)[0] in GLOBAL_OPTIONS or arg in GLOBAL_FLAGS
        (front if global_option else rest).append(arg)
        i += 1
    return front + rest


def log_level(args: argparse.Namespace) -> int:
    if args.log_level:
        return getattr(logging, args.log_level.upper())
    return {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)


class _StderrHandler(logging.StreamHandler):
    """Cadence's own handler on the root logger (replaced, not added again, when `main` runs twice)."""


def setup_logging(level: int) -> None:
    """One stderr handler on the root logger; the engine libraries that log their input stay quiet (engines/)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(hoist_global_options(sys.argv[1:] if argv is None else list(argv)))
    setup_logging(log_level(args))
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

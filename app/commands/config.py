"""`cadence config path | show | init`: where the config lives, the effective settings, and a starter file."""
from __future__ import annotations

import argparse
import shutil

import tomli_w

from app import config as config_mod
from app.paths import asset


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show or create the config file")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    csub.add_parser("path", help="print the config file's path").set_defaults(func=cmd_path)
    csub.add_parser("show", help="print the effective settings as TOML").set_defaults(func=cmd_show)
    csub.add_parser("init", help="write the documented defaults to the config file if it does not exist"
                    ).set_defaults(func=cmd_init)


def cmd_path(args) -> int:
    print(args.config or config_mod.config_path())
    return 0


def cmd_show(args) -> int:
    from app.config import load_config

    print(tomli_w.dumps(config_mod.to_dict(load_config(args))), end="")
    return 0


def cmd_init(args) -> int:
    from pathlib import Path

    path = Path(args.config) if args.config else config_mod.config_path()
    if path.exists():
        print(f"{path} exists; left as it is")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(asset("default_config.toml"), path)
    print(f"wrote {path}")
    return 0

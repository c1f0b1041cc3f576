"""Where Cadence's shipped assets live (a source checkout, an installed wheel or a PyInstaller bundle)."""
from __future__ import annotations

import sys
from pathlib import Path


def assets_dir() -> Path:
    bundle = getattr(sys, "_MEIPASS", None)  # PyInstaller one-folder app
    candidates = ([Path(bundle) / "assets"] if bundle else []) + [Path(__file__).resolve().parent.parent / "assets"]
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError("Cadence's assets folder is missing; reinstall Cadence")


def asset(name: str) -> Path:
    return assets_dir() / name

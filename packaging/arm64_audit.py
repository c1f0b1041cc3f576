"""Which of Cadence's installed dependencies have Linux aarch64 wheels (the DGX Spark) and which would build from
source there: for each distribution installed in this environment, at its installed version, PyPI's file list
(its JSON API; nothing is downloaded) is read and classified:

- `wheel`: a manylinux/musllinux aarch64 wheel for this Python (cp311, or abi3), or a pure `py3-none-any` wheel;
- `source`: only an sdist (pip builds it on the Spark: a compiler, and for some a CUDA toolkit, needed there);
- `none`: neither (the version has no usable file for aarch64: another version, or another way to get it);
- `unknown`: PyPI did not answer (offline, or a package that is not on PyPI).
A version PyPI does not have (from a private index) is judged by PyPI's latest release, and says so.

Usage: python packaging/arm64_audit.py [--json FILE] [--only NAME,...]. Exit 0; the table is the answer."""
from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata

PY_TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"
_AARCH64 = re.compile(r"(manylinux|musllinux)[^-]*aarch64")


def classify(files: list[str], py_tag: str = PY_TAG) -> str:
    """`wheel` / `source` / `none` from the file names of one release."""
    for name in files:
        if not name.endswith(".whl"):
            continue
        parts = name[:-4].split("-")
        if len(parts) < 5:
            continue
        python, abi, plat = parts[-3], parts[-2], parts[-1]
        tags = python.split(".")
        usable = abi == "abi3" or any(t == py_tag or t == "py3" or t == "py" + py_tag[2:] for t in tags)
        if usable and (plat == "any" or any(_AARCH64.search(p) for p in plat.split("."))):
            return "wheel"
    return "source" if any(n.endswith((".tar.gz", ".zip")) for n in files) else "none"


def release_files(name: str, version: str, timeout: float = 20.0) -> tuple[str, list[str]] | None:
    """(the version looked at, its file names): the installed one, or PyPI's latest when PyPI lacks it (a
    version from a private index); None when PyPI does not answer."""
    try:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=timeout) as r:
            data = json.load(r)
    except (OSError, ValueError):
        return None
    releases = data.get("releases", {})
    looked = version if releases.get(version) else data.get("info", {}).get("version", "")
    return looked, [f["filename"] for f in releases.get(looked, [])]


def audit(only: set[str] | None = None) -> list[dict]:
    dists = sorted({(d.metadata["Name"], d.version) for d in metadata.distributions() if d.metadata["Name"]},
                   key=lambda x: x[0].lower())
    if only:
        dists = [d for d in dists if d[0].lower() in only]

    def one(dist: tuple[str, str]) -> dict:
        found = release_files(*dist)
        if found is None:
            return {"name": dist[0], "version": dist[1], "checked": "", "aarch64": "unknown"}
        return {"name": dist[0], "version": dist[1], "checked": found[0], "aarch64": classify(found[1])}

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, dists))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--only", help="comma-separated distribution names")
    args = parser.parse_args(argv)
    rows = audit({x.strip().lower() for x in args.only.split(",")} if args.only else None)
    for kind in ("source", "none", "unknown"):
        names = [f"{r['name']}=={r['version']}" + (f" (PyPI {r['checked']})" if r["checked"] not in ("", r["version"])
                                                    else "") for r in rows if r["aarch64"] == kind]
        print(f"{kind} ({len(names)}): {', '.join(names) or '-'}")
    print(f"wheel ({sum(r['aarch64'] == 'wheel' for r in rows)} of {len(rows)} distributions)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

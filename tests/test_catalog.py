"""The model catalog is consistent with what ships: every entry resolves, installed files match their hashes,
and every default the config names exists with the right kind."""
from __future__ import annotations

import pytest

from app.config import Config
from engines import store
from engines.catalog import KINDS, load_catalog

CATALOG = load_catalog()


def test_ids_unique_and_kinds_valid():
    assert len(CATALOG) >= 10
    assert all(entry.kind in KINDS for entry in CATALOG.values())


@pytest.mark.parametrize("kind", ["vad", "turn", "asr", "llm", "tts", "voice"])
def test_every_kind_has_an_embedded_default(kind):
    assert any(e.default and e.pinned for e in CATALOG.values() if e.kind == kind)


def test_config_defaults_name_catalog_models_of_the_right_kind():
    models = Config().models
    for kind in ("vad", "turn", "asr", "llm", "tts"):
        assert CATALOG[getattr(models, kind)].kind == kind


def test_hub_models_name_a_repo_and_file_and_are_not_defaults():
    hub = [e for e in CATALOG.values() if e.source.type == "hub"]
    assert {e.kind for e in hub} >= {"asr", "llm"}  # the big GPU models a user with internet gets
    assert all(e.source.repo.count("/") == 1 and e.source.file and not e.default for e in hub)
    converted = [e for e in CATALOG.values() if e.source.type == "converted"]
    assert [e.id for e in converted] == ["kokoro-82m-pth"]  # the GPU voice, built offline from the int8 ONNX
    assert all(e.source.from_model in CATALOG and not e.default and not e.pinned for e in converted)


@pytest.mark.parametrize("entry", [e for e in CATALOG.values() if e.source.type == "package" and e.default],
                         ids=lambda e: e.id)
def test_package_files_resolve_in_the_installed_packages(entry):
    for f in entry.files:
        if f.parts:
            located = [store._locate(at) for at in f.parts]
            if all(p is not None and p.is_file() for p in located):
                assert sum(p.stat().st_size for p in located if p) == f.size
            else:  # split weights are read once: a cache assembled earlier needs no part packages (install skips pip)
                cached = store._cached(entry, f)
                assert cached.is_file() and cached.stat().st_size == f.size, \
                    f"{entry.id}: {f.name}: neither its part packages nor an assembled copy are installed"
        else:
            path = store._locate(f.at)
            assert path is not None and path.is_file(), f"{entry.id}: {f.at} not found in the installed packages"
            assert path.stat().st_size == f.size


@pytest.mark.parametrize("model_id", store.default_ids())
def test_installed_defaults_match_their_sha256(model_id):
    entry = CATALOG[model_id]
    assert store.verify(entry) == []
    assert store.status(entry) == store.Status.VERIFIED
    files = store.ensure(model_id)
    assert set(files.paths) == {f.name for f in entry.files}

"""The model store on an empty cache: missing models give the fixing command, split weights assemble atomically
and are verified, corrupt files are never handed out, hub models fail clearly without a network."""
from __future__ import annotations

import dataclasses
import os

import pytest

from engines import store
from engines.catalog import get

SPLIT = "kokoro-82m-int8"  # 4 parts, 92 MB: the smallest split model


def test_missing_split_model_names_the_fix(empty_model_cache):
    assert store.status(get(SPLIT)) == store.Status.MISSING
    with pytest.raises(store.ModelMissing) as err:
        store.ensure(SPLIT)
    assert f"cadence models install {SPLIT}" in str(err.value)


def test_install_assembles_once_and_verifies(empty_model_cache):
    seen = []
    done = store.install(SPLIT, progress=lambda d, t, what: seen.append((d, t, what)))
    assert done == ["assembled kokoro-v1.0.int8.onnx"]
    assert seen and seen[-1][0] == seen[-1][1]  # progress reached the end
    path = store.ensure(SPLIT).file()
    assert path.parent.parent == empty_model_cache / "cadence" / "models"
    assert store.status(get(SPLIT)) == store.Status.VERIFIED
    assert store.install(SPLIT) == []  # nothing to do the second time
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".kokoro")] == []  # no temp files left


def test_corrupt_file_is_never_loaded(empty_model_cache):
    store.install(SPLIT)
    path = store.ensure(SPLIT).file()
    with open(path, "r+b") as fh:  # flip one byte, same size
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(store.ModelCorrupt) as err:
        store.ensure(SPLIT)
    assert "sha256" in str(err.value) and f"--force {SPLIT}" in str(err.value)
    assert store.status(get(SPLIT)) != store.Status.VERIFIED
    store.install(SPLIT, force=True)
    assert store.ensure(SPLIT).file() == path


def test_truncated_file_shows_as_corrupt(empty_model_cache):
    store.install(SPLIT)
    path = store.ensure(SPLIT).file()
    os.truncate(path, 1000)
    assert store.status(get(SPLIT)) == store.Status.CORRUPT
    with pytest.raises(store.ModelCorrupt):
        store.ensure(SPLIT)


def test_assembly_with_wrong_hash_leaves_nothing_behind(empty_model_cache):
    entry = get(SPLIT)
    bad = dataclasses.replace(entry.files[0], sha256="0" * 64)
    with pytest.raises(store.ModelCorrupt):
        store._assemble(entry, bad, None)
    folder = empty_model_cache / "cadence" / "models" / SPLIT
    assert list(folder.iterdir()) == []


def test_hub_model_without_network_fails_clearly(empty_model_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(store.ModelMissing) as err:
        store.install("nemotron-3-nano-30b-a3b")
    assert "Hugging Face hub" in str(err.value) and "local file" in str(err.value)


def test_unknown_model_id_lists_known_ids():
    with pytest.raises(KeyError) as err:
        get("no-such-model")
    assert "qwen2.5-coder-0.5b" in str(err.value)


def test_ensure_rehashes_unstamped_files_and_returns_all_of_them():
    model_id = "piper-joe-medium"  # two files, used in place from its package
    store._stamp_file(get(model_id)).unlink(missing_ok=True)
    files = store.ensure(model_id)
    assert set(files.paths) == {"en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json"}
    assert store.status(get(model_id)) == store.Status.VERIFIED


# ---- converted models: built from another catalog model, stamped with the sha256 they had when built -------------

def _converter_copy(source, out) -> None:
    """A stand-in converter: the source's bytes with a header (the real one, engines/kokoro_convert.py, is tested
    in tests/test_kokoro_convert.py)."""
    with open(source, "rb") as src, open(out, "wb") as dst:
        dst.write(b"converted:" + src.read())


def _converter_refuses(source, out) -> None:
    with open(out, "wb") as dst:
        dst.write(b"half")
    raise ValueError("tensor bert.embeddings has no counterpart")


def _converted(monkeypatch, converter: str):
    from engines.catalog import ModelEntry, Source

    entry = ModelEntry(id="test-converted", kind="tts", engine="kokoro_torch", name="test", licence="-",
                       default=False, source=Source(type="converted", file="out.bin", from_model="piper-joe-medium",
                                                    converter=converter))
    real_get = store.get
    monkeypatch.setattr(store, "get", lambda model_id: entry if model_id == entry.id else real_get(model_id))
    return entry


def test_a_converted_model_is_built_once_stamped_and_checked(empty_model_cache, monkeypatch):
    entry = _converted(monkeypatch, "tests.test_store:_converter_copy")
    assert not entry.pinned and store.status(entry) == store.Status.MISSING
    with pytest.raises(store.ModelMissing, match="cadence models install test-converted"):
        store.ensure(entry.id)
    assert store.install(entry.id) == ["built from piper-joe-medium"]
    path = store.ensure(entry.id).file()
    assert path.read_bytes().startswith(b"converted:") and store.status(entry) == store.Status.VERIFIED
    stamp = store._read_stamps(entry)["out.bin"]
    assert stamp["sha256"] == store.sha256_file(path)
    assert store.install(entry.id) == []  # nothing to do the second time
    with open(path, "r+b") as fh:  # the built file changed afterwards: never handed out
        fh.seek(3)
        fh.write(b"X")
    with pytest.raises(store.ModelCorrupt, match="sha256"):
        store.ensure(entry.id)
    assert store.install(entry.id, force=True) == ["built from piper-joe-medium"]
    assert store.ensure(entry.id).file().read_bytes().startswith(b"converted:")


def test_a_converter_that_refuses_leaves_nothing_and_says_why(empty_model_cache, monkeypatch):
    entry = _converted(monkeypatch, "tests.test_store:_converter_refuses")
    with pytest.raises(store.ModelCorrupt) as err:
        store.install(entry.id)
    assert "bert.embeddings" in str(err.value) and "piper-joe-medium" in str(err.value)
    assert not store.hub_path(entry).exists()


def test_a_converter_whose_library_is_missing_names_the_extra(empty_model_cache, monkeypatch):
    entry = _converted(monkeypatch, "no_such_module_here:convert")
    with pytest.raises(store.ModelMissing) as err:
        store.install(entry.id)
    assert "no_such_module_here" in str(err.value) and "kokoro" in str(err.value)


def test_the_catalog_refuses_a_converted_model_without_its_converter():
    from engines.catalog import CatalogError, _entry

    raw = {"id": "x", "kind": "tts", "engine": "kokoro_torch", "name": "x", "licence": "-",
           "source": {"type": "converted", "file": "x.pth", "from_model": "kokoro-82m-int8"}}
    with pytest.raises(CatalogError, match="converter"):
        _entry(raw)
    assert get("kokoro-82m-pth").source.from_model == "kokoro-82m-int8"

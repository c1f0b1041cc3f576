"""Zero retention and no network: a headless conversation writes nothing of what was said (no audio, no
transcript, no reply) anywhere under HOME or the XDG folders, adds nothing to the model cache, and works inside a
network namespace with no network at all."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import platformdirs
import pytest

from tests.conftest import SPEECH, run_cli

pytestmark = pytest.mark.slow


def files_under(root) -> dict[str, int]:
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = os.stat(path).st_mtime_ns
    return out


def test_a_conversation_leaves_no_trace_on_disk(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    cache = platformdirs.user_cache_dir("cadence")  # the model cache stays where the models are
    env = {"HOME": str(home), "XDG_CACHE_HOME": os.path.dirname(cache), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local/share"), "XDG_STATE_HOME": str(home / ".local/state"),
           "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    before = files_under(cache)
    proc = run_cli("headless", str(SPEECH / "en_LDC93S1.wav"), "--set", "llm.max_reply_tokens=24", env=env)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "agent:" in proc.stdout  # a real turn happened
    assert files_under(home) == {}
    # onnxruntime's compiled module writes a `.ses` id file (a time stamp and a random id) to TMPDIR on import:
    # allowed, as long as it holds nothing of the conversation
    written = files_under(tmp_path / "tmp")
    assert set(written) <= {".ses"}, written
    for name in written:
        text = (tmp_path / "tmp" / name).read_text(errors="replace").lower()
        assert len(text) < 100 and not {"suit", "wash", "water", "year"} & set(text.split()), text
    after = files_under(cache)
    assert set(after) == set(before)  # nothing new beside the models (stamps may be refreshed in place)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="util-linux unshare is not installed")
def test_a_spoken_turn_works_with_no_network(tmp_path):
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.fail("unshare -n is not permitted here; run the tests as root (CI does)")
    report = tmp_path / "r.json"
    proc = run_cli("headless", str(SPEECH / "en_goforward.wav"), "--report", str(report),
                   "--set", "llm.max_reply_tokens=24", prefix=("unshare", "-n"))
    assert proc.returncode == 0, proc.stderr[-1500:]
    turns = json.loads(report.read_text())["turns"]
    assert len(turns) == 1 and turns[0]["reply"] and "forward" in turns[0]["transcript"].lower()

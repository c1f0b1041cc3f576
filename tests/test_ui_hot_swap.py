"""Settings changes on a running conversation with real engines: Apply hot-swaps an engine (and persists the config)
without restarting and keeps the history; a bad GGUF keeps the old engines; a short max wait applies live; the
dialog refuses a bad combination before anything stops; an LLM server that does not answer is a message and the
conversation goes on; a config that skipped validation keeps the running
conversation and leaks no lane thread."""
from __future__ import annotations

import dataclasses
import threading
from types import SimpleNamespace

import pytest

from app import config as config_mod
from app.ui.app_controller import AppController
from app.ui.bridge import UiBridge
from app.ui.main_window import MainWindow
from tests.ui_helpers import silent_device, wait_for


@pytest.fixture(scope="module")
def running(qapp, tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    bridge = UiBridge()
    cfg = config_mod.from_dict({"llm": {"max_reply_tokens": 32}})
    controller = AppController(cfg, bridge, path, device_factory=silent_device)
    window = MainWindow(bridge, controller)
    errors: list[str] = []
    bridge.error.connect(errors.append)
    controller.start()
    assert controller.wait(120) and controller.session is not None, errors
    yield SimpleNamespace(controller=controller, window=window, errors=errors, path=path, qapp=qapp)
    controller.shutdown()


@pytest.mark.slow
def test_apply_swaps_tts_without_restarting_and_persists(running):
    controller = running.controller
    old_session, old_llm = controller.session, controller.engines.llm
    controller.session.history = controller.session.history.append("user", "remember me")
    dialog = running.window.open_settings()
    dialog.tts.setCurrentText("kokoro-82m-int8")
    dialog.voice.setCurrentText("bf_emma")
    assert dialog.apply()
    assert controller.wait(120)
    tts = controller.engines.tts
    assert type(tts).__name__ == "KokoroOnnxSynthesizer" and tts.voice == "bf_emma"
    assert controller.engines.llm is old_llm  # unchanged engines are reused
    assert controller.session is not old_session and controller.session is not None
    assert controller.session.history.messages[-1].text == "remember me"
    assert config_mod.load(running.path).models.tts == "kokoro-82m-int8"
    assert wait_for(running.qapp, lambda: "kokoro-82m-int8" in running.window.engines_label.text(), 5)
    dialog.close()


@pytest.mark.slow
def test_a_bad_gguf_keeps_the_old_engines_and_shows_the_error(running, tmp_path):
    controller = running.controller
    engines, session = controller.engines, controller.session
    saved = running.path.read_text() if running.path.exists() else ""
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a model")
    cfg = config_mod.from_dict({"models": {"llm_path": str(bad)}}, controller.cfg)
    assert controller.apply(cfg)
    assert controller.wait(60)
    assert controller.engines is engines and controller.session is session
    assert wait_for(running.qapp, lambda: running.window.error_banner.isVisibleTo(running.window), 5)
    message = running.window.error_banner.text()
    assert "GGUF" in message and "previous settings stay in use" in message
    assert (running.path.read_text() if running.path.exists() else "") == saved


@pytest.mark.slow
def test_an_unreachable_llm_server_is_a_message_in_the_window_and_the_conversation_goes_on(running):
    from app.llama_server import free_port

    controller = running.controller
    engines, session = controller.engines, controller.session
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    assert controller.apply(config_mod.from_dict({"llm": {"base_url": url}}, controller.cfg))
    assert controller.wait(60)
    assert controller.engines is engines and controller.session is session
    assert wait_for(running.qapp, lambda: running.window.error_banner.isVisibleTo(running.window), 5)
    message = running.window.error_banner.text()
    assert f"cannot reach the LLM server at {url}" in message and "previous settings stay in use" in message

@pytest.mark.slow
def test_a_short_max_wait_applies_live_with_the_shorter_waits_scaled(running):
    """`turn.max_wait_ms=500` used to be accepted by the dialog, then stop the conversation and fail."""
    controller, window = running.controller, running.window
    old = controller.session
    dialog = window.open_settings()
    dialog.max_wait_ms.setValue(500)
    assert dialog.apply(), dialog.error.text()
    assert controller.wait(120)
    turn = controller.session.settings.turn
    assert controller.session is not old and (turn.max_wait_s, turn.uncertain_wait_s, turn.disagree_wait_s) == (
        0.5, 0.5, 0.5)
    assert wait_for(running.qapp, lambda: window.state_key == "listening", 5), window.state_key
    dialog.close()


@pytest.mark.slow
def test_the_dialog_refuses_a_bad_combination_and_the_conversation_goes_on(running):
    controller, window = running.controller, running.window
    session, threads = controller.session, {t.name for t in threading.enumerate()}
    dialog = window.open_settings()
    dialog.max_tokens.setValue(4096)  # in range alone, but no room is left for the prompt in the context
    assert not dialog.apply() and not controller.busy()
    assert dialog.error.text().startswith("llm.max_reply_tokens:"), dialog.error.text()
    assert controller.session is session and session.idle.wait(5)
    assert {t.name for t in threading.enumerate()} == threads  # nothing stopped, nothing started
    assert window.state_key == "listening"
    dialog.close()


@pytest.mark.slow
def test_a_config_that_skipped_validation_keeps_the_running_conversation(running):
    """Whatever gets past the dialog, the new conversation is wired before the old one stops."""
    controller, window = running.controller, running.window
    session, lanes = controller.session, sum(t.name.startswith("lane") for t in threading.enumerate())
    cfg = controller.cfg
    unchecked = dataclasses.replace(cfg, llm=dataclasses.replace(cfg.llm, max_reply_tokens=4096))
    assert controller.apply(unchecked) and controller.wait(60)
    assert controller.session is session and controller.cfg is cfg
    assert wait_for(running.qapp, lambda: window.error_banner.isVisibleTo(window), 5)
    assert "llm.max_reply_tokens" in window.error_banner.text() and "previous settings" in window.error_banner.text()
    assert sum(t.name.startswith("lane") for t in threading.enumerate()) == lanes, "lane threads leaked"
    assert window.state_key == "listening"

"""Config: documented defaults equal the code's, round trip through TOML, and clear errors naming the key."""
from __future__ import annotations

import dataclasses
import re
import tomllib

import pytest

from app import config
from app.paths import asset


def test_shipped_defaults_document_exactly_the_code_defaults():
    documented = tomllib.loads(asset("default_config.toml").read_text())
    assert documented == config.to_dict(config.Config())


def test_config_lives_under_the_xdg_config_dir(isolated_dirs):
    assert config.config_path() == isolated_dirs / "XDG_CONFIG_HOME" / "cadence" / "config.toml"


def test_round_trip(tmp_path):
    cfg = config.from_dict({"llm": {"n_threads": 1, "temperature": 0.7}, "scheduler": {"mode": "sequential"},
                            "models": {"voice": "bf_emma"}})
    path = config.save(cfg, tmp_path / "c.toml")
    assert config.load(path) == cfg
    assert config.load(path).llm.n_threads == 1


def test_missing_file_gives_defaults(tmp_path):
    assert config.load(tmp_path / "none.toml") == config.Config()


@pytest.mark.parametrize("raw, key", [
    ({"llm": {"n_thread": 2}}, "llm.n_thread"),
    ({"lm": {}}, "[lm]"),
    ({"llm": {"n_threads": "two"}}, "llm.n_threads"),
    ({"llm": {"n_threads": 0}}, "llm.n_threads"),
    ({"llm": {"n_threads": True}}, "llm.n_threads"),
    ({"scheduler": {"mode": "parallel"}}, "scheduler.mode"),
    ({"turn": {"vad_threshold": 1.5}}, "turn.vad_threshold"),
    ({"scheduler": {"first_chunk_max_tokens": 200, "max_chunk_tokens": 100}}, "scheduler.max_chunk_tokens"),
    ({"llm": 3}, "llm"),
])
def test_bad_values_name_the_key(raw, key):
    with pytest.raises(config.ConfigError) as err:
        config.from_dict(raw)
    assert key in str(err.value)


def test_int_is_accepted_for_float_and_device_index_for_str():
    cfg = config.from_dict({"llm": {"temperature": 1}, "audio": {"input_device": 3}})
    assert cfg.llm.temperature == 1.0 and cfg.audio.input_device == "3"


def test_overrides_apply_after_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[llm]\nn_threads = 1\n")
    cfg = config.load(path, ["llm.n_threads=4", "models.voice=am_adam", "privacy.save_transcripts=true"])
    assert (cfg.llm.n_threads, cfg.models.voice, cfg.privacy.save_transcripts) == (4, "am_adam", True)


@pytest.mark.parametrize("order", [1, -1])
def test_overrides_that_only_fit_together_are_checked_together(tmp_path, order):
    pair = ["llm.n_ctx=512", "llm.max_reply_tokens=16"][::order]  # 512 alone leaves no room for 160 reply tokens
    cfg = config.load(tmp_path / "none.toml", pair)
    assert (cfg.llm.n_ctx, cfg.llm.max_reply_tokens) == (512, 16)
    with pytest.raises(config.ConfigError, match="llm.max_reply_tokens"):
        config.load(tmp_path / "none.toml", ["llm.n_ctx=512"])


@pytest.mark.parametrize("text", ["llm", "llm.n_threads", "=3", ".x=1"])
def test_malformed_override(text):
    with pytest.raises(config.ConfigError):
        config.parse_override(text)


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[llm\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert str(path) in str(err.value)


def test_the_history_is_held_to_history_tokens_within_the_context_window():
    cfg = config.from_dict({"llm": {"n_ctx": 4096, "history_tokens": 1024}})
    settings = config.runtime_settings(cfg)
    assert settings.session.history_chars == len(settings.system_prompt) + 3 * 1024
    roomy = config.from_dict({"llm": {"n_ctx": 4096, "history_tokens": 100000}})  # the window is the limit then
    assert config.runtime_settings(roomy).session.history_chars == (4096 - 160 - 64) * 3  # system prompt included
    small = config.runtime_settings(config.from_dict({"llm": {"n_ctx": 512, "max_reply_tokens": 16}}))
    assert small.session.history_chars == (512 - 16 - 64) * 3 > len(small.system_prompt) + config.MIN_TURN_CHARS


def test_a_short_max_wait_scales_the_shorter_waits():
    """`turn.max_wait_ms=500` used to load every model, then fail: the 1.0 s and 1.5 s waits stayed longer."""
    turn = config.runtime_settings(config.load(None, ["turn.max_wait_ms=500"])).session.turn
    assert (turn.max_wait_s, turn.uncertain_wait_s, turn.disagree_wait_s) == (0.5, 0.5, 0.5)
    turn = config.runtime_settings(config.load(None, ["turn.max_wait_ms=1200"])).session.turn
    assert (turn.max_wait_s, turn.uncertain_wait_s, turn.disagree_wait_s) == (1.2, 1.2, 1.2)
    turn = config.runtime_settings(config.load(None, ["turn.max_wait_ms=1100"])).session.turn
    assert (turn.max_wait_s, turn.uncertain_wait_s, turn.disagree_wait_s) == (1.1, 1.1, 1.1)
    default = config.runtime_settings(config.Config()).session.turn
    assert (default.max_wait_s, default.uncertain_wait_s, default.disagree_wait_s) == (2.0, 1.2, 1.5)


def test_the_turn_and_vad_settings_come_from_the_config():
    s = config.runtime_settings(config.load(None, ["turn.pause_ms=300", "turn.min_barge_in_ms=0",
                                                   "turn.vad_threshold=0.6", "turn.turn_threshold=0.7",
                                                   "turn.onset_drop_db=0"]))
    assert (s.session.turn.pause_s, s.session.turn.min_barge_in_s, s.session.turn.turn_threshold) == (0.3, 0.0, 0.7)
    assert (s.session.vad.pause_s, s.session.vad.threshold, s.session.vad.onset_drop_db) == (0.3, 0.6, 0.0)


@pytest.mark.parametrize("raw, key", [
    ({"llm": {"max_reply_tokens": 4096}}, "llm.max_reply_tokens"),  # no room left for the prompt
    ({"llm": {"n_ctx": 512, "max_reply_tokens": 400}}, "llm.max_reply_tokens"),
    ({"scheduler": {"lead_target_s": 5.0}}, "scheduler.lead_comfortable_s"),
    ({"scheduler": {"chunk_tokens": 200}}, "scheduler.max_chunk_tokens"),
])
def test_bad_combinations_are_refused_at_load_naming_the_key(raw, key):
    with pytest.raises(config.ConfigError) as err:
        config.from_dict(raw)
    assert str(err.value).startswith(key), err.value


def test_every_accepted_value_builds_the_runtime_settings():
    """The ranges the config accepts and the rules of the settings it builds agree at the extremes of each key."""
    for section in dataclasses.fields(config.Config):
        for f in dataclasses.fields(type(getattr(config.Config(), section.name))):
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            for value in (v for v in (lo, hi) if v is not None):
                value = type(f.default)(value)
                try:
                    cfg = config.from_dict({section.name: {f.name: value}})
                except config.ConfigError as exc:  # only a combination rule may refuse it, naming a key
                    assert str(exc).split(":")[0].count(".") == 1, exc
                    continue
                config.runtime_settings(cfg)


# ---- the remote language model's settings ---------------------------------------------------------------------------
@pytest.mark.parametrize("llm, key", [
    ({"base_url": "127.0.0.1:8080"}, "llm.base_url"),
    ({"base_url": "ftp://host/v1"}, "llm.base_url"),
    ({"remote_model": "qwen"}, "llm.remote_model"),
    ({"base_url": "http://127.0.0.1:8080/v1", "api_key_env": "MY KEY"}, "llm.api_key_env"),
    ({"base_url": "http://127.0.0.1:8080/v1", "remote_chat_template": "llama9"}, "llm.remote_chat_template"),
])
def test_a_bad_remote_setting_names_its_key(llm, key):
    with pytest.raises(config.ConfigError, match=key):
        config.from_dict({"llm": llm})


def test_the_remote_settings_hold_no_key_and_plain_http_elsewhere_is_warned_about(tmp_path):
    from engines.llm_remote import plain_http_warning

    cfg = config.from_dict({"llm": {"base_url": "http://127.0.0.1:8080/v1", "remote_model": "qwen"}})
    saved = config.save(cfg, tmp_path / "c.toml").read_text()
    assert "api_key_env" in saved and not re.search(r"^api_key\s*=", saved, re.M)  # the variable's name, no key
    assert plain_http_warning("http://192.168.1.20:8080/v1") is not None
    assert plain_http_warning("https://llm.example.org/v1") is None
    assert plain_http_warning("http://127.0.0.1:8080/v1") is None and plain_http_warning("http://localhost/v1") is None

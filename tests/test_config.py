"""Config: documented defaults equal the code's, round trip through TOML, and clear errors naming the key."""
from __future__ import annotations

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
    from app.runtime import session_settings, system_prompt

    cfg = config.from_dict({"llm": {"n_ctx": 4096, "history_tokens": 1024}})
    assert session_settings(cfg).history_chars == len(system_prompt(cfg)) + 3 * 1024
    roomy = config.from_dict({"llm": {"n_ctx": 4096, "history_tokens": 100000}})  # the window is the limit then
    assert session_settings(roomy).history_chars == (4096 - 160 - 64) * 3 - len(system_prompt(roomy))

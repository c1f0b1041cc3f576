"""Typed settings <-> one TOML file under platformdirs' user config dir, and the one place they are validated.

The dataclasses below are the single source of truth for keys, types and defaults; `assets/default_config.toml`
documents them (a test keeps the two equal). Command-line overrides use the same path syntax: `--set
llm.n_threads=1`. Loading a config (`load`, `from_dict`) also builds what a conversation runs with from it
(`runtime_settings`: the scheduler's, the turn-taking's and the VAD's settings, the history budget, the system
prompt), so every bad value or bad combination is a ConfigError naming the key before any model loads; the
settings dialog refuses it the same way before it stops anything."""
from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

import platformdirs
import tomli_w

from app.conversation.settings import SessionSettings
from app.conversation.turn_rule import TurnSettings, TurnSettingsError
from app.conversation.vad_segmenter import VadSettings
from app.paths import asset
from scheduler import Mode, SchedulerSettings, SettingsError


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""


def _opt(default: Any, help: str = "", lo: float | None = None, hi: float | None = None,
         choices: tuple = ()) -> Any:
    return field(default=default, metadata={"help": help, "min": lo, "max": hi, "choices": choices})


@dataclass(frozen=True)
class ModelsConfig:
    vad: str = _opt("silero-vad", "catalog id of the voice activity detector")
    turn: str = _opt("smart-turn-v3.2", "catalog id of the end-of-turn model")
    asr: str = _opt("whisper-tiny.en", "catalog id of the speech recognizer")
    llm: str = _opt("qwen2.5-coder-1.5b", "catalog id of the language model (qwen2.5-coder-0.5b: faster, less "
                                          "often right)")
    tts: str = _opt("piper-joe-medium", "catalog id of the voice engine (piper-joe-medium or kokoro-82m-int8)")
    voice: str = _opt("af_heart", "Kokoro voice (one of the 28 English voices)")
    llm_path: str = _opt("", "a GGUF file to use instead of the catalog LLM")
    asr_path: str = _opt("", "a .nemo file (NeMo cache-aware streaming model) to use as the recognizer")
    tts_path: str = _opt("", "a Kokoro .pth file for the torch Kokoro engine")
    compute: str = _opt("auto", "where the LLM, NeMo ASR and the torch Kokoro run: auto (the GPU when this machine "
                                "has one and the build can use it), cpu, or cuda (an error when it cannot); VAD and "
                                "Smart Turn stay on the CPU", choices=("auto", "cpu", "cuda"))


@dataclass(frozen=True)
class LlmConfig:
    n_threads: int = _opt(2, "CPU threads for llama.cpp", 1, 256)
    n_gpu_layers: int = _opt(0, "layers offloaded to the GPU (-1 = all)", -1, 1000)
    n_ctx: int = _opt(4096, "context window in tokens", 256, 262144)
    max_reply_tokens: int = _opt(160, "longest reply in tokens (a reply cut here ends at its last full sentence)", 8,
                                 4096)
    max_spoken_words: int = _opt(60, "a reply longer than this many words ends at the next sentence end", 5, 2000)
    repetition_guard: bool = _opt(True, "stop the model from repeating itself in a loop (a 4-token sequence may "
                                        "occur twice in a reply, not three times)")
    history_tokens: int = _opt(1024, "conversation kept in the prompt, in tokens (oldest turns dropped first): more "
                                     "remembers longer but answers slower as a session grows", 64, 262144)
    temperature: float = _opt(0.0, "sampling temperature (0 = greedy)", 0.0, 2.0)
    system_prompt: str = _opt("", "system prompt; empty = assets/system_prompt.txt")
    base_url: str = _opt("", "an OpenAI-compatible server to answer instead of the local model, e.g. "
                             "http://127.0.0.1:8080/v1 (llama.cpp), http://127.0.0.1:11434/v1 (Ollama); empty = local")
    remote_model: str = _opt("", "the model name on that server; empty = the first one it lists")
    api_key_env: str = _opt("CADENCE_LLM_API_KEY", "the environment variable holding the server's API key (the key "
                                                   "itself is never written to the config)")
    remote_chat_template: str = _opt("", "the remote model's chat template, for the text end-of-turn score from the "
                                         "server's log-probabilities ('chatml' for Qwen; empty = none: the audio "
                                         "decides)", choices=("", "chatml"))
    first_token_timeout_s: float = _opt(10.0, "a remote server that sends nothing for this long fails the turn", 0.5,
                                        300.0)


@dataclass(frozen=True)
class TurnConfig:
    pause_ms: int = _opt(200, "silence after speech before the end-of-turn check", 50, 2000)
    max_wait_ms: int = _opt(2000, "reply anyway this long after the user stopped", 200, 10000)
    min_barge_in_ms: int = _opt(300, "speech must last this long to interrupt a reply", 0, 2000)
    vad_threshold: float = _opt(0.5, "speech probability threshold", 0.05, 0.95)
    onset_drop_db: float = _opt(35.0, "a pause starts (the recognizer decodes, the reply is prepared) once the level "
                                "is this far under the speech's loudest block; 0 = when Silero says so", 0.0, 90.0)
    turn_threshold: float = _opt(0.5, "Smart Turn probability for 'complete'", 0.05, 0.95)
    turn_sure_threshold: float = _opt(0.9, "Smart Turn probability for 'surely complete': below it, words that are "
                                      "only likely complete wait 1.2 s (a hesitation: 'What is the, ...'); 0 = no wait",
                                      0.0, 1.0)
    pipeline: str = _opt("cadence", "'naive' = a plain pipeline to compare with (bench conversation --baseline): "
                         "no decode or speculation before the end of turn, Smart Turn alone decides, the whole "
                         "first sentence before the voice", choices=("cadence", "naive"))


@dataclass(frozen=True)
class SchedulerConfig:
    mode: str = _opt("interleaved", "device scheduling", choices=("interleaved", "concurrent", "sequential"))
    device_threads: int = _opt(2, "threads the device lane's models use on a CPU-only machine", 1, 256)
    first_chunk_max_tokens: int = _opt(24, "cap on the first LLM chunk (it stops earlier at a clause end)", 4, 256)
    chunk_tokens: int = _opt(32, "later LLM chunk size", 4, 512)
    max_chunk_tokens: int = _opt(96, "LLM chunk size when the audio lead is comfortable", 4, 1024)
    lead_target_s: float = _opt(1.5, "keep at least this much synthesized, unplayed audio", 0.0, 30.0)
    lead_comfortable_s: float = _opt(3.0, "above this audio lead, LLM chunks grow", 0.0, 60.0)


@dataclass(frozen=True)
class AudioConfig:
    input_device: str = _opt("", "microphone (name or index; empty = system default)")
    output_device: str = _opt("", "speaker (name or index; empty = system default)")
    echo_cancellation: bool = _opt(True, "remove the assistant's own voice from the microphone (speakers)")
    noise_suppression: bool = _opt(False, "suppress steady background noise in the microphone")
    headphones: bool = _opt(False, "I use headphones: no echo to cancel")
    output_latency_ms: int = _opt(35, "speaker buffer in ms: lower answers sooner but may crackle on a busy CPU",
                                  5, 500)


@dataclass(frozen=True)
class PrivacyConfig:
    save_transcripts: bool = _opt(False, "write conversation transcripts to the data dir")
    record_audio: bool = _opt(False, "write conversation audio to the data dir")


@dataclass(frozen=True)
class Config:
    models: ModelsConfig = field(default_factory=ModelsConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    turn: TurnConfig = field(default_factory=TurnConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)


def config_path() -> Path:
    return Path(platformdirs.user_config_dir("cadence")) / "config.toml"


def _coerce(key: str, value: Any, typ: type, meta: Mapping[str, Any]) -> Any:
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if typ is str and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # device indices may be given as numbers
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {typ.__name__}, got {value!r}")
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise ConfigError(f"{key}: {value!r} is out of range [{lo}, {hi}]")
    if choices and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")
    return value


def _section(cls: type, key: str, raw: Any, base: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: expected a table [{key}]")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    changes = {}
    for name, value in raw.items():
        if name not in known:
            raise ConfigError(f"unknown key {key}.{name} (known: {', '.join(known)})")
        changes[name] = _coerce(f"{key}.{name}", value, hints[name], known[name].metadata)
    return dataclasses.replace(base, **changes)


def from_dict(raw: dict, base: Config | None = None) -> Config:
    """Overlay a parsed TOML dict on `base` (default: the built-in defaults), validating every key."""
    base = base or Config()
    changes = {}
    for name, value in raw.items():
        section = next((f for f in fields(Config) if f.name == name), None)
        if section is None:
            raise ConfigError(f"unknown section [{name}] (known: {', '.join(f.name for f in fields(Config))})")
        changes[name] = _section(type(getattr(base, name)), name, value, getattr(base, name))
    cfg = dataclasses.replace(base, **changes)
    runtime_settings(cfg)  # every combination is checked here, naming the key
    return cfg


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def parse_override(text: str) -> dict:
    """'llm.n_threads=1' -> {'llm': {'n_threads': 1}}; the value is read as TOML, else as a plain string."""
    path, sep, value = text.partition("=")
    section, dot, key = path.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(f"override {text!r}: expected section.key=value")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return {section: {key: parsed}}


def load_config(args: argparse.Namespace) -> Config:
    """The config a command runs with: `--config FILE` (or the default file), then its `--set` overrides."""
    return load(Path(args.config) if args.config else None, args.overrides)


def load(path: Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the config file (if it exists), then `--set` overrides, checked together (two overrides
    that only make sense as a pair, such as a smaller `llm.n_ctx` with a smaller `llm.max_reply_tokens`, are
    accepted in either order)."""
    path = path or config_path()
    raw: dict[str, Any] = {}
    if path.is_file():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for text in overrides:
        for section, values in parse_override(text).items():
            if isinstance(raw.get(section), dict) and isinstance(values, dict):
                raw[section] = {**raw[section], **values}
            else:
                raw[section] = values
    return from_dict(raw, Config())


def save(cfg: Config, path: Path | None = None) -> Path:
    """Write the whole config atomically."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(tomli_w.dumps(to_dict(cfg)), encoding="utf-8")
    os.replace(tmp, path)
    return path


def describe() -> list[tuple[str, Any, str]]:
    """(key, default, help) for every setting: used by `cadence config show --defaults` and the docs test."""
    out = []
    for section in fields(Config):
        for f in fields(type(getattr(Config(), section.name))):
            out.append((f"{section.name}.{f.name}", f.default, f.metadata.get("help", "")))
    return out


# ---- what a conversation runs with ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeSettings:
    """The config as the scheduler and the session use it (seconds, characters, enums), checked."""

    scheduler: SchedulerSettings
    session: SessionSettings
    system_prompt: str


# TurnSettings fields -> the config key a user sets
_TURN_KEYS = {"pause_s": "turn.pause_ms", "max_wait_s": "turn.max_wait_ms", "uncertain_wait_s": "turn.max_wait_ms",
              "disagree_wait_s": "turn.max_wait_ms", "min_barge_in_s": "turn.min_barge_in_ms",
              "turn_threshold": "turn.turn_threshold", "turn_sure_threshold": "turn.turn_sure_threshold"}
MIN_HISTORY_CHARS = 1000  # the history kept is at least this long when the context window has room for it
MIN_TURN_CHARS = 300  # besides the system prompt and the reply, the window must hold this much of what was said


def system_prompt(cfg: Config) -> str:
    return cfg.llm.system_prompt or asset("system_prompt.txt").read_text(encoding="utf-8").strip()


def _check_remote(c: LlmConfig) -> None:
    if not c.base_url:
        if c.remote_model or c.remote_chat_template:
            raise ConfigError("llm.remote_model: set llm.base_url too (the server it names a model of)")
        return
    parts = urlsplit(c.base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"llm.base_url: {c.base_url!r} is not an http(s) URL such as http://127.0.0.1:8080/v1")
    if not c.api_key_env.replace("_", "").isalnum():
        raise ConfigError(f"llm.api_key_env: {c.api_key_env!r} is not an environment variable name")


def runtime_settings(cfg: Config) -> RuntimeSettings:
    """Build (and so validate) the scheduler's and the session's settings; a ConfigError names the key."""
    s, t = cfg.scheduler, cfg.turn
    if s.mode not in {m.value for m in Mode}:
        raise ConfigError(f"scheduler.mode: {s.mode!r} is not one of {', '.join(m.value for m in Mode)}")
    try:
        scheduler = SchedulerSettings(mode=Mode(s.mode), first_chunk_max_tokens=s.first_chunk_max_tokens,
                                      chunk_tokens=s.chunk_tokens, max_chunk_tokens=s.max_chunk_tokens,
                                      lead_target_s=s.lead_target_s, lead_comfortable_s=s.lead_comfortable_s,
                                      device_threads=s.device_threads)
    except SettingsError as exc:
        raise ConfigError(f"scheduler.{exc}") from None
    try:
        turn = TurnSettings.scaled(t.max_wait_ms / 1000, pause_s=t.pause_ms / 1000,
                                   min_barge_in_s=t.min_barge_in_ms / 1000, turn_threshold=t.turn_threshold,
                                   turn_sure_threshold=t.turn_sure_threshold)
        vad = VadSettings(threshold=t.vad_threshold, pause_s=t.pause_ms / 1000, onset_drop_db=t.onset_drop_db)
    except TurnSettingsError as exc:
        raise ConfigError(f"{_TURN_KEYS.get(exc.field, 'turn')}: {exc}") from None
    _check_remote(cfg.llm)
    prompt = system_prompt(cfg)
    # The prompt must leave room for the reply: ~3 characters per token is a safe bound for English. Within the
    # window, the history is held to `llm.history_tokens`: each token of context slows every later answer (a
    # 200-turn soak with a full 4096-token window answered 84 % slower at the end than at the start).
    fits = (cfg.llm.n_ctx - cfg.llm.max_reply_tokens - 64) * 3 - len(prompt)
    if fits < MIN_TURN_CHARS:
        most = max(0, cfg.llm.n_ctx - 64 - -(-(len(prompt) + MIN_TURN_CHARS) // 3))
        raise ConfigError(f"llm.max_reply_tokens: {cfg.llm.max_reply_tokens} tokens leave no room for the system "
                          f"prompt and what the user says in llm.n_ctx = {cfg.llm.n_ctx} tokens (at most {most}, or "
                          "a larger llm.n_ctx)")
    # the budget counts the system prompt too (History.trim keeps it and measures it)
    history_chars = min(len(prompt) + fits, max(MIN_HISTORY_CHARS, len(prompt) + 3 * cfg.llm.history_tokens))
    if t.pipeline == "naive":  # Smart Turn alone: no text score is waited for
        turn = replace(turn, text_score_wait_s=None)
    session = SessionSettings(turn=turn, vad=vad, max_reply_tokens=cfg.llm.max_reply_tokens,
                              max_spoken_words=cfg.llm.max_spoken_words, history_chars=history_chars,
                              naive=t.pipeline == "naive")
    return RuntimeSettings(scheduler, session, prompt)

"""The one place that turns the config (catalog ids, user files, threads, GPU layers) into engines. Sessions,
`cadence say`, `cadence transcribe`, the benchmarks and the settings dialog all build engines here. A wrong id or
an engine whose optional package is missing raises InputError; a missing or corrupt model raises ModelError.
Heavy engine modules are imported only when chosen, so `cadence --help` stays fast."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from app.config import Config
from app.errors import InputError
from engines.catalog import ModelEntry, UnknownModel, get
from engines.engine_set import Engines
from engines.llm_remote import RemoteLlmError as RemoteLlmUnusable
from engines.user_files import check_user_file

log = logging.getLogger("cadence.engines")
Progress = Callable[[str], None]
T = TypeVar("T")


def _entry(model_id: str, kind: str, what: str) -> ModelEntry:
    try:
        entry = get(model_id)
    except UnknownModel as exc:
        raise InputError(str(exc)) from None
    if entry.kind != kind:
        raise InputError(f"{model_id!r} is not {what} (it is a {entry.kind} model)")
    return entry


def _torch_device(cfg: Config) -> str | None:
    """`models.compute = "cpu"` keeps the torch engines on the CPU; otherwise they take the GPU when torch sees one."""
    return "cpu" if cfg.models.compute == "cpu" else None


def build_vad(cfg: Config):
    from engines.vad_silero import SileroVad

    return SileroVad.from_catalog(_entry(cfg.models.vad, "vad", "a voice activity detector").id, threads=1)


def build_turn(cfg: Config):
    from engines.turn_smart import SmartTurn

    return SmartTurn.from_catalog(_entry(cfg.models.turn, "turn", "an end-of-turn model").id, threads=1)


def build_asr(cfg: Config, model_id: str | None = None):
    """`model_id`, or the config's recognizer (its `.nemo` file when `models.asr_path` is set)."""
    try:
        if model_id is None and cfg.models.asr_path:
            from engines.asr_nemo import NemoStreamingRecognizer

            return NemoStreamingRecognizer.from_user_file(check_user_file("asr", cfg.models.asr_path),
                                                          device=_torch_device(cfg))
        entry = _entry(model_id or cfg.models.asr, "asr", "a speech recognizer")
        threads = cfg.scheduler.device_threads
        if entry.engine == "whisper":
            from engines.asr_whisper import WhisperRecognizer

            return WhisperRecognizer.from_catalog(entry.id, threads=threads)
        if entry.engine == "moonshine":
            from engines.asr_moonshine import MoonshineRecognizer

            return MoonshineRecognizer.from_catalog(entry.id, threads=threads)
        if entry.engine == "nemo":
            from engines.asr_nemo import NemoStreamingRecognizer

            return NemoStreamingRecognizer.from_catalog(entry.id, device=_torch_device(cfg))
    except ImportError as exc:  # an optional engine's package (extra) is not installed
        raise InputError(f"this recognizer needs an optional package: {exc} (see the README's extras)") from None
    raise InputError(f"{entry.id}: no engine for {entry.engine!r}")


def build_remote_llm(cfg: Config):
    """The model on an OpenAI-compatible server (`llm.base_url`), checked at once: a server that does not answer,
    refuses the key or lacks the model is one clear line here, before the conversation starts."""
    from engines.llm_remote import RemoteGenerator, RemoteScoringGenerator, plain_http_warning

    c = cfg.llm
    if warning := plain_http_warning(c.base_url):
        log.warning("%s", warning)
    kw: dict[str, Any] = dict(api_key=os.environ.get(c.api_key_env, ""), api_key_env=c.api_key_env,
                              first_token_timeout_s=c.first_token_timeout_s, temperature=c.temperature)
    model = c.remote_model
    if not model:  # the server's first model (llama.cpp's and llama-cpp-python's servers serve one)
        names = RemoteGenerator(c.base_url, "", **kw).models()
        if not names:
            raise RemoteLlmUnusable(f"the LLM server at {c.base_url} lists no model: set llm.remote_model")
        model = names[0]
    gen = RemoteScoringGenerator(c.base_url, model, chat_template=c.remote_chat_template, **kw) \
        if c.remote_chat_template else RemoteGenerator(c.base_url, model, **kw)
    gen.check()
    return gen


def build_llm(cfg: Config, model_id: str | None = None):
    if model_id is None and cfg.llm.base_url:
        return build_remote_llm(cfg)
    from app.placement import plan, probe
    from engines.llm_llama import LlamaGenerator, LlmLoadError
    from engines.store import ModelError

    c = cfg.llm
    layers = plan(cfg, probe(with_torch=False)).llm_gpu_layers  # models.compute against this machine
    if model_id is None and cfg.models.llm_path:
        path = check_user_file("llm", cfg.models.llm_path)
        try:
            return LlamaGenerator(path, n_threads=c.n_threads, n_gpu_layers=layers, n_ctx=c.n_ctx,
                                  temperature=c.temperature, repetition_guard=c.repetition_guard)
        except LlmLoadError as exc:
            raise ModelError(f"user llm file {str(path)!r}", str(exc),
                             "point models.llm_path at a working GGUF") from None
    return LlamaGenerator.from_catalog(_entry(model_id or cfg.models.llm, "llm", "a language model").id,
                                       n_threads=c.n_threads, n_gpu_layers=layers, n_ctx=c.n_ctx,
                                       temperature=c.temperature, repetition_guard=c.repetition_guard)


def build_tts(cfg: Config, model_id: str | None = None, voice: str | None = None, explicit_voice: bool = False):
    """`model_id`, or the config's voice engine (the torch Kokoro on `models.tts_path` when that is set)."""
    voice = voice or cfg.models.voice
    threads = cfg.scheduler.device_threads
    if model_id is None and cfg.models.tts_path:
        model_id = "kokoro-82m-pth"
    entry = _entry(model_id or cfg.models.tts, "tts", "a voice engine")
    try:
        if entry.engine == "piper":
            if explicit_voice:
                raise InputError(f"{entry.id} has a single voice; a voice applies to the Kokoro engines")
            from engines.tts_piper import PiperSynthesizer

            return PiperSynthesizer.from_catalog(entry.id, threads=threads)
        if entry.engine == "kokoro_onnx":
            from engines.tts_kokoro_onnx import KokoroOnnxSynthesizer

            return KokoroOnnxSynthesizer.from_catalog(entry.id, voice=voice, threads=threads)
        if entry.engine == "kokoro_torch":
            from engines.tts_kokoro_torch import KokoroTorchSynthesizer

            weights = check_user_file("tts", cfg.models.tts_path) if cfg.models.tts_path else None
            return KokoroTorchSynthesizer.from_catalog(entry.id, model_path=weights, voice=voice,
                                                       device=_torch_device(cfg))
    except (ValueError, ImportError) as exc:  # unknown voice, bad voice file, missing `kokoro` extra
        if isinstance(exc, InputError):
            raise
        raise InputError(str(exc)) from None
    raise InputError(f"{entry.id}: no engine for {entry.engine!r}")


# which settings each engine is built from: on a settings change an engine is rebuilt only when its key changed
ENGINE_KEYS: dict[str, Callable[[Config], tuple]] = {
    "vad": lambda c: (c.models.vad,),
    "turn": lambda c: (c.models.turn,),
    "asr": lambda c: (c.models.asr, c.models.asr_path, c.scheduler.device_threads, c.models.compute),
    "llm": lambda c: (c.models.llm, c.models.llm_path, c.models.compute, c.llm.n_threads, c.llm.n_gpu_layers,
                      c.llm.n_ctx, c.llm.temperature, c.llm.repetition_guard, c.llm.base_url, c.llm.remote_model,
                      c.llm.api_key_env, c.llm.remote_chat_template, c.llm.first_token_timeout_s),
    "tts": lambda c: (c.models.tts, c.models.tts_path, c.scheduler.device_threads, c.models.compute,
                      c.models.voice if c.models.tts_path or c.models.tts.startswith("kokoro") else ""),
}
STEPS = {"vad": "the voice activity detector", "turn": "Smart Turn", "asr": "the speech recognizer",
         "llm": "the language model", "tts": "the voice"}
def engine_names(cfg: Config) -> dict[str, str]:
    """What the window and the reports call each engine (a user file by its path)."""
    m = cfg.models
    llm = f"{cfg.llm.remote_model or 'remote'} at {cfg.llm.base_url}" if cfg.llm.base_url else m.llm_path or m.llm
    names = {"vad": m.vad, "turn": m.turn, "asr": m.asr_path or m.asr, "llm": llm,
             "tts": m.tts_path or m.tts}
    if m.tts_path or get(m.tts).engine.startswith("kokoro"):
        names["voice"] = m.voice
    return names


def build_engines(cfg: Config, progress: Progress = lambda _msg: None,
                  reuse: tuple[Config, Engines] | None = None) -> Engines:
    """Every engine of a session, loaded in the order a user waits for them least. `reuse`: the config and the
    engines of a running session; engines whose settings did not change are taken over instead of loaded again.
    Optional abilities are checked once, here (`Engines`)."""
    def load(kind: str, build: Callable[[Config], T]) -> T:
        if reuse is not None and ENGINE_KEYS[kind](reuse[0]) == ENGINE_KEYS[kind](cfg):
            return getattr(reuse[1], kind)
        progress(f"loading {STEPS[kind]}")
        return build(cfg)

    engines = Engines(load("vad", build_vad), load("turn", build_turn), load("asr", build_asr),
                      load("llm", build_llm), load("tts", build_tts), names=engine_names(cfg))
    if missing := engines.missing_roles():
        raise InputError(f"these engines do not do their job's minimum: {', '.join(missing)}")
    log.info("engines: %s; %s", " ".join(f"{k}={v}" for k, v in engines.names.items()), engines.abilities.describe())
    return engines

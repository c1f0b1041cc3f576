"""The one place that turns the config (catalog ids, user files, threads, GPU layers) into engines. Sessions,
`cadence say`, `cadence transcribe`, the benchmarks and the settings dialog all build engines here. A wrong id or
an engine whose optional package is missing raises InputError; a missing or corrupt model raises ModelError.
Heavy engine modules are imported only when chosen, so `cadence --help` stays fast."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from app.config import Config
from app.errors import InputError
from engines.catalog import ModelEntry, get
from engines.user_files import check_user_file

if TYPE_CHECKING:
    from app.conversation.session import Engines

Progress = Callable[[str], None]


def _entry(model_id: str, kind: str, what: str) -> ModelEntry:
    try:
        entry = get(model_id)
    except KeyError as exc:
        raise InputError(exc.args[0]) from None
    if entry.kind != kind:
        raise InputError(f"{model_id!r} is not {what} (it is a {entry.kind} model)")
    return entry


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

            return NemoStreamingRecognizer.from_user_file(check_user_file("asr", cfg.models.asr_path))
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

            return NemoStreamingRecognizer.from_catalog(entry.id)
    except ImportError as exc:  # an optional engine's package (extra) is not installed
        raise InputError(f"this recognizer needs an optional package: {exc} (see the README's extras)") from None
    raise InputError(f"{entry.id}: no engine for {entry.engine!r}")


def build_llm(cfg: Config, model_id: str | None = None):
    from engines.llm_llama import LlamaGenerator, LlmLoadError
    from engines.store import ModelError

    kw = dict(n_threads=cfg.llm.n_threads, n_gpu_layers=cfg.llm.n_gpu_layers, n_ctx=cfg.llm.n_ctx,
              temperature=cfg.llm.temperature)
    if model_id is None and cfg.models.llm_path:
        path = check_user_file("llm", cfg.models.llm_path)
        try:
            return LlamaGenerator(path, **kw)
        except LlmLoadError as exc:
            raise ModelError(f"user llm file {str(path)!r}", str(exc), "point models.llm_path at a working GGUF")
    return LlamaGenerator.from_catalog(_entry(model_id or cfg.models.llm, "llm", "a language model").id, **kw)


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
            return KokoroTorchSynthesizer.from_catalog(entry.id, model_path=weights, voice=voice)
    except (ValueError, ImportError) as exc:  # unknown voice, bad voice file, missing `kokoro` extra
        if isinstance(exc, InputError):
            raise
        raise InputError(str(exc)) from None
    raise InputError(f"{entry.id}: no engine for {entry.engine!r}")


def build_engines(cfg: Config, progress: Progress = lambda _msg: None) -> "Engines":
    """Every engine of a session, loaded in the order a user waits for them least."""
    from app.conversation.session import Engines

    progress("loading the voice activity detector")
    vad = build_vad(cfg)
    progress("loading Smart Turn")
    turn = build_turn(cfg)
    progress("loading the speech recognizer")
    asr = build_asr(cfg)
    progress("loading the language model")
    llm = build_llm(cfg)
    progress("loading the voice")
    tts = build_tts(cfg)
    names = {"vad": cfg.models.vad, "turn": cfg.models.turn, "asr": cfg.models.asr_path or cfg.models.asr,
             "llm": cfg.models.llm_path or cfg.models.llm, "tts": cfg.models.tts_path or cfg.models.tts}
    if get(cfg.models.tts).engine.startswith("kokoro"):
        names["voice"] = cfg.models.voice
    return Engines(vad, turn, asr, llm, tts, names)

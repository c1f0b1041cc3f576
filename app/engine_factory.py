"""Builds the engines a session needs from the config: catalog ids or user files, thread counts, GPU layers.
Heavy engine modules are imported only when chosen, so `cadence --help` stays fast."""
from __future__ import annotations

from typing import Callable

from app.config import Config
from app.conversation.session import Engines
from engines.catalog import get
from engines.user_files import check_user_file

Progress = Callable[[str], None]


def build_vad(cfg: Config):
    from engines.vad_silero import SileroVad

    return SileroVad.from_catalog(cfg.models.vad, threads=1)


def build_turn(cfg: Config):
    from engines.turn_smart import SmartTurn

    return SmartTurn.from_catalog(cfg.models.turn, threads=1)


def build_asr(cfg: Config, model_id: str | None = None):
    threads = cfg.scheduler.device_threads
    if cfg.models.asr_path and model_id is None:
        from engines.asr_nemo import NemoStreamingRecognizer

        return NemoStreamingRecognizer.from_user_file(check_user_file("asr", cfg.models.asr_path))
    model_id = model_id or cfg.models.asr
    engine = get(model_id).engine
    if engine == "whisper":
        from engines.asr_whisper import WhisperRecognizer

        return WhisperRecognizer.from_catalog(model_id, threads=threads)
    if engine == "moonshine":
        from engines.asr_moonshine import MoonshineRecognizer

        return MoonshineRecognizer.from_catalog(model_id, threads=threads)
    if engine == "nemo":
        from engines.asr_nemo import NemoStreamingRecognizer

        return NemoStreamingRecognizer.from_catalog(model_id)
    raise ValueError(f"models.asr: {model_id!r} is not a speech recognizer")


def build_llm(cfg: Config, model_id: str | None = None):
    from engines.llm_llama import LlamaGenerator

    kw = dict(n_threads=cfg.llm.n_threads, n_gpu_layers=cfg.llm.n_gpu_layers, n_ctx=cfg.llm.n_ctx,
              temperature=cfg.llm.temperature)
    if cfg.models.llm_path and model_id is None:
        return LlamaGenerator(check_user_file("llm", cfg.models.llm_path), **kw)
    model_id = model_id or cfg.models.llm
    if get(model_id).kind != "llm":
        raise ValueError(f"models.llm: {model_id!r} is not a language model")
    return LlamaGenerator.from_catalog(model_id, **kw)


def build_tts(cfg: Config, model_id: str | None = None, voice: str | None = None):
    threads = cfg.scheduler.device_threads
    voice = voice or cfg.models.voice
    if cfg.models.tts_path and model_id is None:
        from engines.tts_kokoro_torch import KokoroTorchSynthesizer

        return KokoroTorchSynthesizer.from_catalog(model_path=check_user_file("tts", cfg.models.tts_path),
                                                   voice=voice)
    model_id = model_id or cfg.models.tts
    engine = get(model_id).engine
    if engine == "piper":
        from engines.tts_piper import PiperSynthesizer

        return PiperSynthesizer.from_catalog(model_id, threads=threads)
    if engine == "kokoro_onnx":
        from engines.tts_kokoro_onnx import KokoroOnnxSynthesizer

        return KokoroOnnxSynthesizer.from_catalog(model_id, voice=voice, threads=threads)
    if engine == "kokoro_torch":
        from engines.tts_kokoro_torch import KokoroTorchSynthesizer

        return KokoroTorchSynthesizer.from_catalog(model_id, voice=voice)
    raise ValueError(f"models.tts: {model_id!r} is not a voice engine")


def build_engines(cfg: Config, progress: Progress = lambda _msg: None) -> Engines:
    """Every engine of a session, loaded in the order a user waits for them least."""
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

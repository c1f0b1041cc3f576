"""`cadence bench engines`: per engine on this machine, median and P90 of VAD per frame, Smart Turn per call, ASR
finish() after a ~3 s utterance, LLM first token (cold and with the system prompt cached) and tokens/s, TTS first
audio and real-time factor. Engines are built through app/engine_factory.py from the config, so `--set` applies."""
from __future__ import annotations

import argparse
import time

import numpy as np

from app.bench import (
    PROMPTS,
    SPEECH_DIR,
    WARMUP_PROMPT,
    Log,
    figures_table,
    installed,
    machine_line,
    speech_clips,
    unique,
)
from app.config import Config
from app.metrics.stats import summarize
from engines.protocols import Closable, Recognizer, SteppedRecognizer

KINDS = ("vad", "turn", "asr", "llm", "tts")
FRAME = 512  # 32 ms at 16 kHz: one VAD frame, one audio-device block
ASR_STEP_BLOCKS = 8  # the session offers the recognizer a step every 8 blocks (256 ms)
VAD_CLIP = "en_silero_test.wav"  # 60 s with many pauses
TOKENS_PER_RUN = 64  # greedy continuation measured for tokens/s

LONG_PROMPT = "Tell me a long story about a dragon who learns to cook."  # greedy: runs past 64 tokens
SENTENCES = [
    "The weather should stay sunny for the rest of the week.",
    "Your next meeting starts in about fifteen minutes.",
    "I set a timer for ten minutes.",
    "Mount Kilimanjaro is the tallest mountain in Africa.",
    "Spiders have eight legs and most of them spin webs.",
    "Canberra is the capital city of Australia, not Sydney.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "Try some yogurt with fresh fruit and a handful of oats.",
]

Figures = dict[str, dict]  # metric -> summary (n, min, p50, p90, max)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", metavar="KINDS", default=",".join(KINDS),
                        help=f"comma-separated engine kinds to measure (default: {','.join(KINDS)})")


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def _selected(text: str) -> list[str]:
    from app.errors import InputError

    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise InputError(f"--only: unknown engine kind(s) {', '.join(bad) or '(none)'}; use {', '.join(KINDS)}")
    return kinds


# ---- one function per engine kind ---------------------------------------------------------------------------

def bench_vad(vad, audio: np.ndarray) -> Figures:
    """probability() per 512-sample frame over the audio, in order (the model is recurrent)."""
    frames = audio[: len(audio) // FRAME * FRAME].reshape(-1, FRAME)
    for frame in frames[:10]:  # warm-up
        vad.probability(frame)
    vad.reset()
    times = []
    for frame in frames:
        t0 = time.perf_counter()
        vad.probability(frame)
        times.append(_ms(t0))
    return {"frame_ms": summarize(times)}


def bench_turn(turn, clips: list[np.ndarray], repeats: int) -> Figures:
    """probability_complete() on whole-turn audio."""
    turn.probability_complete(clips[0])  # warm-up
    times = []
    for _ in range(repeats):
        for audio in clips:
            t0 = time.perf_counter()
            turn.probability_complete(audio)
            times.append(_ms(t0))
    return {"call_ms": summarize(times)}


def asr_finish_ms(asr: Recognizer, audio: np.ndarray) -> float:
    """Feed one utterance as the session does (32 ms blocks, a step offered every 256 ms); time finish() alone."""
    asr.start()
    stepper = asr if isinstance(asr, SteppedRecognizer) else None
    for index, start in enumerate(range(0, len(audio), FRAME), 1):
        asr.accept(audio[start:start + FRAME])
        if index % ASR_STEP_BLOCKS == 0 and stepper is not None and stepper.wants_step():
            stepper.step()
    t0 = time.perf_counter()
    asr.finish()
    return _ms(t0)


def bench_asr(asr, clips: list[np.ndarray], repeats: int) -> Figures:
    asr_finish_ms(asr, clips[0])  # warm-up
    return {"finish_ms": summarize(asr_finish_ms(asr, audio) for _ in range(repeats) for audio in clips)}


def bench_llm(llm, system: str, questions: list[str], throughput_runs: int) -> Figures:
    """First token cold (empty KV cache) and with the system prompt cached; tokens/s over greedy step(8) chunks."""
    from engines.protocols import Message

    llm.set_sampling(0.0)

    def ask(question: str, max_tokens: int = 1):
        return llm.start([Message("system", system), Message("user", question)], max_tokens)

    llm.reset()
    ask(WARMUP_PROMPT).step(1)  # warm-up: the weights are paged in, the code paths are hot
    cold = []
    for question in questions:
        llm.reset()
        t0 = time.perf_counter()
        ask(question).step(1)
        cold.append(_ms(t0))
    llm.reset()
    ask(WARMUP_PROMPT).prefill()  # the system prompt is now in the KV cache
    cached, reused = [], []
    for question in questions:
        t0 = time.perf_counter()
        generation = ask(question)
        generation.step(1)
        cached.append(_ms(t0))
        reused.append(generation.reused_tokens)
    rates = []
    for _ in range(throughput_runs):
        generation = ask(LONG_PROMPT, TOKENS_PER_RUN + 1)
        generation.step(1)
        tokens, t0 = 0, time.perf_counter()
        while tokens < TOKENS_PER_RUN:
            step = generation.step(8)
            tokens += step.tokens
            if step.finished:
                break
        elapsed = time.perf_counter() - t0
        if tokens >= 8:
            rates.append(tokens / elapsed)
    return {"first_token_cold_ms": summarize(cold), "first_token_cached_ms": summarize(cached),
            "tokens_per_s": summarize(rates), "reused_prompt_tokens": summarize(reused)}


def bench_tts(tts, sentences: list[str]) -> Figures:
    """Time to the first AudioChunk and real-time factor (synthesis time / audio duration) per sentence."""
    list(tts.synthesize(sentences[0]))  # warm-up
    first, rtf = [], []
    for sentence in sentences:
        t0 = time.perf_counter()
        first_ms, audio_s = None, 0.0
        for chunk in tts.synthesize(sentence):
            if first_ms is None:
                first_ms = _ms(t0)
            audio_s += chunk.duration_s
        elapsed = time.perf_counter() - t0
        first.append(first_ms)
        if audio_s > 0:
            rtf.append(elapsed / audio_s)
    return {"first_audio_ms": summarize(first), "rtf": summarize(rtf)}


# ---- the run ----------------------------------------------------------------------------------------------------

def _optional(model_ids: list[str], required: str, notes: list[str]) -> list[str]:
    """`required` always (a missing one fails with the fix), the others only when installed (else a note)."""
    chosen = []
    for model_id in model_ids:
        if model_id == required or installed(model_id):
            chosen.append(model_id)
        else:
            notes.append(f"{model_id}: not installed, skipped (cadence models install {model_id})")
    return chosen


def _close(engine: object) -> None:
    """Free a model at once (llama.cpp's) rather than when the garbage collector gets to it."""
    if isinstance(engine, Closable):
        engine.close()


def run(cfg: Config, args: argparse.Namespace, log: Log) -> dict:
    from app import engine_factory as factory
    from app.config import system_prompt
    from engines.audio_io import read_audio
    from engines.catalog import get

    kinds = _selected(getattr(args, "only", ",".join(KINDS)))
    quick = bool(args.quick)
    repeats = 1 if quick else 3
    results: dict[str, dict] = {}
    notes: list[str] = []

    def record(model_id: str, kind: str, figures: Figures, clips: list[str] | None = None) -> None:
        results[model_id] = {"kind": kind, "metrics": figures, **({"clips": clips} if clips else {})}

    if "vad" in kinds:
        log(f"VAD: {cfg.models.vad}")
        audio = read_audio(SPEECH_DIR / VAD_CLIP)
        record(cfg.models.vad, "vad", bench_vad(factory.build_vad(cfg), audio[: 10 * 16000] if quick else audio),
               clips=[VAD_CLIP])
    clips = speech_clips(1.5, 12.0) if {"turn", "asr"} & set(kinds) else []
    if "turn" in kinds:
        log(f"Smart Turn: {cfg.models.turn}")
        turn_clips = clips[: 2 if quick else 8]
        record(cfg.models.turn, "turn", bench_turn(factory.build_turn(cfg), [a for _, a in turn_clips], repeats),
               clips=[name for name, _ in turn_clips])
    if "asr" in kinds:
        utterances = [(n, a) for n, a in clips if 2.5 <= len(a) / 16000 <= 3.55][: 2 if quick else 8]
        candidates = [m for m in unique([cfg.models.asr, "whisper-tiny.en", "moonshine-base-en"])
                      if get(m).engine in ("whisper", "moonshine")]
        for model_id in _optional(candidates, cfg.models.asr, notes):
            log(f"ASR: {model_id}")
            asr = factory.build_asr(cfg, model_id)
            record(model_id, "asr", bench_asr(asr, [a for _, a in utterances], repeats),
                   clips=[name for name, _ in utterances])
            _close(asr)
    if "llm" in kinds:
        questions = PROMPTS[: 2 if quick else len(PROMPTS)]
        configured = cfg.models.llm_path or cfg.models.llm
        for model_id in _optional(unique([configured, "smollm2-135m"]), configured, notes):
            log(f"LLM: {model_id}")
            llm = factory.build_llm(cfg, None if model_id == configured else model_id)
            record(model_id, "llm", bench_llm(llm, system_prompt(cfg), questions, 1 if quick else 3))
            _close(llm)
    if "tts" in kinds:
        configured = cfg.models.tts if not cfg.models.tts_path else ""
        candidates = [m for m in unique([configured, "piper-joe-medium", "kokoro-82m-int8"])
                      if get(m).engine in ("piper", "kokoro_onnx")]
        for model_id in _optional(candidates, configured, notes):
            log(f"TTS: {model_id}")
            tts = factory.build_tts(cfg, model_id)
            record(model_id, "tts", bench_tts(tts, SENTENCES[: 2 if quick else len(SENTENCES)]))
            _close(tts)
    return {"benchmark": "engines", "engines": results, "notes": notes}


def format_report(result: dict) -> str:
    rows = [(model_id, metric, summary) for model_id, entry in result["engines"].items()
            for metric, summary in entry["metrics"].items()]
    lines = [machine_line(result["machine"]), "", figures_table(rows)]
    lines += [f"note: {note}" for note in result.get("notes", [])]
    return "\n".join(lines)

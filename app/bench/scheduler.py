"""`cadence bench scheduler`: the same replies (the real embedded LLM and TTS, a fixed list of prompts, in the same
order) through the interleaved, concurrent and sequential scheduler modes in one run. A consumer thread drains the
`PlaybackBuffer` at real-time pace, one 512-sample block every 32 ms as the audio device does, and measures per
reply: first audio (from `Reply.start()`, prompt not prefilled, to the first sample played), total reply time (to
the last sample played) and underruns (silence between the reply's first and last sample: count and gap ms)."""
from __future__ import annotations

import argparse
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.bench import PROMPTS, WARMUP_PROMPT, Log, figures_table, machine_line
from app.config import Config
from app.metrics.stats import summarize

MODES = ("interleaved", "concurrent", "sequential")
RATE = 16_000
BLOCK = 512  # samples per device block (32 ms)
REPLY_TOKENS = 96
REPLY_TIMEOUT_S = 300.0
GOAL_RATIO = 0.6  # the goal on a 2-core machine: interleaved first audio <= 0.6 x concurrent, 0 underruns



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompts", type=int, metavar="N",
                        help=f"how many of the {len(PROMPTS)} fixed prompts to play in each mode "
                             f"(default {len(PROMPTS)}; 2 with --quick)")


@dataclass
class ReplyTrack:
    """What the consumer saw of one reply's audio. Times are perf_counter seconds; samples at 16 kHz."""

    turn: int
    started_at: float = 0.0
    first_at: float | None = None  # the first sample played
    last_at: float | None = None  # the last sample played so far
    underruns: int = 0  # gaps: silence after the first sample that more of the reply's audio followed
    gap_samples: int = 0
    producing_done: bool = False  # set by the driver once the stream finished (all audio is in the buffer)
    done: threading.Event = field(default_factory=threading.Event)  # set once the last sample was played
    _played_s: float = 0.0
    _pending_gap: int = 0  # silent samples since the last sample of this turn


class RealtimePlayer:
    """Drains a PlaybackBuffer like the audio device: one block per block-duration of wall time, on its own thread
    (catching up block by block when it wakes late, so the average pace is real time)."""

    def __init__(self, playback) -> None:
        self.playback = playback
        self._track: ReplyTrack | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-player", daemon=True)
        self.max_lateness_s = 0.0

    def start(self) -> RealtimePlayer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def track(self, turn: int) -> ReplyTrack:
        with self._lock:
            self._track = ReplyTrack(turn)
            return self._track

    def untrack(self) -> None:
        with self._lock:
            self._track = None

    def _run(self) -> None:
        period = BLOCK / RATE
        t0, index = time.perf_counter(), 0
        while not self._stop.is_set():
            index += 1
            delay = t0 + index * period - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                self.max_lateness_s = max(self.max_lateness_s, -delay)
            now = time.perf_counter()
            _, notes = self.playback.read(BLOCK)
            with self._lock:
                if self._track is not None:
                    self._account(self._track, notes, now)

    def _account(self, track: ReplyTrack, notes, now: float) -> None:
        note = next((n for n in notes if n.turn == track.turn), None)
        if note is None:
            if track.first_at is not None:
                track._pending_gap += BLOCK
        else:
            samples = round((note.played_s - track._played_s) * RATE)
            track._played_s = note.played_s
            if track.first_at is None:
                track.first_at = now + note.offset / RATE
            elif track._pending_gap + note.offset > 0:
                track.underruns += 1
                track.gap_samples += track._pending_gap + note.offset
            end = note.offset + samples
            track._pending_gap = BLOCK - end
            track.last_at = now + end / RATE
        if track.producing_done and self.playback.queued_s(track.turn) <= 0:
            track.done.set()


def play_reply(scheduler, llm, tts, playback, player: RealtimePlayer, system: str, prompt: str,
               turn: int, reply_tokens: int = REPLY_TOKENS) -> dict:
    """One reply through the scheduler, played at real-time pace; its figures."""
    from app.conversation.reply import Reply
    from engines.protocols import Message

    generation = llm.start([Message("system", system), Message("user", prompt)], reply_tokens)
    errors: list[BaseException] = []
    reply = Reply(scheduler, turn, lambda: generation, tts, playback, on_segment=lambda *_: None,
                  on_finished=lambda _summary: None, on_error=errors.append)
    track = player.track(turn)
    track.started_at = t0 = time.perf_counter()
    reply.start()
    summary = reply.stream.wait(REPLY_TIMEOUT_S)
    if summary is None:
        reply.cancel()
        raise RuntimeError(f"the reply to {prompt!r} did not finish within {REPLY_TIMEOUT_S:.0f} s")
    if summary.status != "ok":
        raise RuntimeError(f"the reply to {prompt!r} ended with {summary.status}: {summary.error or errors}")
    track.producing_done = True
    if not track.done.wait(summary.media_s + 10.0):
        raise RuntimeError(f"the audio of the reply to {prompt!r} was not played out")
    player.untrack()
    playback.forget(turn)

    def ms(at: float | None) -> float | None:
        return None if at is None else (at - t0) * 1000

    return {"prompt": prompt, "first_audio_ms": ms(track.first_at), "total_ms": ms(track.last_at),
            "first_token_ms": ms(reply.text.first_token_at), "underruns": track.underruns,
            "gap_ms": track.gap_samples / RATE * 1000, "audio_s": round(summary.media_s, 3),
            "segments": len(summary.rendered), "prompt_tokens": generation.prompt_tokens,
            "reused_tokens": generation.reused_tokens, "text": summary.text.strip()}


def warm_up(llm, tts, system: str) -> None:
    """The same cache state before every mode: the system prompt (and a warm-up question) evaluated, TTS hot."""
    from engines.protocols import Message

    llm.start([Message("system", system), Message("user", WARMUP_PROMPT)], 1).prefill()
    list(tts.synthesize("Hello there, I can hear you."))


def run_mode(mode: str, cfg: Config, llm, tts, prompts: list[str], log: Log, reply_tokens: int = REPLY_TOKENS,
             device_barrier: Callable[[], None] | None = None) -> dict:
    """The prompts' replies in `mode`; `device_barrier`: the engines' synchronize, when they run on a GPU."""
    from app.audio.playback import PlaybackBuffer
    from app.config import runtime_settings
    from scheduler import Scheduler

    settings = runtime_settings(cfg)
    system = settings.system_prompt
    warm_up(llm, tts, system)
    scheduler = Scheduler(dataclasses.replace(settings.scheduler, mode=mode), device_barrier=device_barrier)
    playback = PlaybackBuffer(RATE)
    player = RealtimePlayer(playback).start()
    replies = []
    try:
        for turn, prompt in enumerate(prompts, 1):
            replies.append(play_reply(scheduler, llm, tts, playback, player, system, prompt, turn, reply_tokens))
            r = replies[-1]
            log(f"{mode} {turn}/{len(prompts)}: first audio {r['first_audio_ms']:.0f} ms, "
                f"underruns {r['underruns']}" if r["first_audio_ms"] is not None else f"{mode}: no audio")
        lanes = sorted({span.lane for span in scheduler.spans.snapshot()})
    finally:
        player.stop()
        scheduler.close()
    return {"first_audio_ms": summarize(r["first_audio_ms"] for r in replies),
            "total_ms": summarize(r["total_ms"] for r in replies),
            "first_token_ms": summarize(r["first_token_ms"] for r in replies),
            "underruns": sum(r["underruns"] for r in replies),
            "underrun_gap_ms": round(sum(r["gap_ms"] for r in replies), 1),
            "replies_with_underruns": sum(1 for r in replies if r["underruns"]),
            "replies_without_audio": sum(1 for r in replies if r["first_audio_ms"] is None),
            "player_max_lateness_ms": round(player.max_lateness_s * 1000, 1), "lanes": lanes,
            "replies": replies}


def run(cfg: Config, args: argparse.Namespace, log: Log) -> dict:
    from app.engine_factory import build_llm, build_tts
    from app.errors import InputError
    from engines.llm_llama import LlamaGenerator

    count = args.prompts if args.prompts is not None else (2 if args.quick else len(PROMPTS))
    if not 1 <= count <= len(PROMPTS):
        raise InputError(f"--prompts: give 1 to {len(PROMPTS)}, got {count}")
    if cfg.llm.base_url:
        raise InputError("bench scheduler times the local device's interleaving: unset llm.base_url (the remote "
                         "model is measured by bench conversation)")
    log(f"loading the language model ({cfg.models.llm_path or cfg.models.llm})")
    llm = build_llm(cfg)
    assert isinstance(llm, LlamaGenerator)
    log(f"loading the voice ({cfg.models.tts_path or cfg.models.tts})")
    tts = build_tts(cfg)
    llm.set_sampling(0.0)  # greedy: the same replies in every mode
    modes = {mode: run_mode(mode, cfg, llm, tts, PROMPTS[:count], log) for mode in MODES}
    interleaved = modes["interleaved"]["first_audio_ms"]["p50"]
    concurrent = modes["concurrent"]["first_audio_ms"]["p50"]
    ratio = interleaved / concurrent if interleaved is not None and concurrent else None
    return {"benchmark": "scheduler", "llm": cfg.models.llm_path or cfg.models.llm,
            "tts": cfg.models.tts_path or cfg.models.tts, "prompts": PROMPTS[:count], "reply_tokens": REPLY_TOKENS,
            "modes": modes, "ratio_first_audio_interleaved_vs_concurrent": ratio,
            "goal": {"ratio_max": GOAL_RATIO, "interleaved_underruns": 0,
                     "met": ratio is not None and ratio <= GOAL_RATIO and modes["interleaved"]["underruns"] == 0}}


def format_report(result: dict) -> str:
    modes = result["modes"]
    rows = [(mode, label, m[key]) for mode, m in modes.items()
            for label, key in (("first audio ms", "first_audio_ms"), ("total reply ms", "total_ms"),
                               ("first token ms", "first_token_ms"))]
    lines = [machine_line(result["machine"]),
             f"llm {result['llm']}, tts {result['tts']}, {len(result['prompts'])} prompt(s) per mode, "
             f"up to {result['reply_tokens']} tokens per reply", "", figures_table(rows, first="mode"), "",
             "underruns after first audio (audio consumed at real-time pace):"]
    for mode, m in modes.items():
        lines.append(f"  {mode:<13}{m['underruns']:>3} ({m['underrun_gap_ms']:.0f} ms of gaps, "
                     f"in {m['replies_with_underruns']} of {len(m['replies'])} replies)")
    ratio = result["ratio_first_audio_interleaved_vs_concurrent"]
    goal = result["goal"]
    lines += ["", f"first audio, interleaved / concurrent (medians): {'-' if ratio is None else f'{ratio:.2f}'}",
              f"goal (ratio <= {goal['ratio_max']}, no underruns in interleaved mode): "
              f"{'met' if goal['met'] else 'not met'}"]
    return "\n".join(lines)

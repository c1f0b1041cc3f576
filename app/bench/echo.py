"""`cadence bench echo`: the echo canceller on real speech. The agent's own voice (the configured TTS reading a
paragraph) plays through a simulated speaker-to-microphone path (level, delay, optional room reverberation) while
real recorded people talk over it (double talk), block by block exactly as the session hears it. Reports, per
path: echo return loss enhancement after convergence (far end only), the near-end level change in double talk,
the delay estimate against the true delay, and Whisper's word error rate on the people's words with and without
cancellation (and on their clean recordings, the floor)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from app.audio.duplex import Block
from app.audio.echo_cancel import BlockEchoCanceller
from app.audio.echo_path import EchoPath
from app.bench import Log, machine_line
from app.config import Config

RATE, BLOCK = 16000, 512
PATHS = (EchoPath(-20.0, 60.0), EchoPath(-20.0, 150.0, reverb=True), EchoPath(-6.0, 100.0, reverb=True))
AGENT_TEXT = ("Sure. The tallest mountain in Africa is Kilimanjaro, in Tanzania. It rises almost six thousand "
              "metres above the sea, and its summit is covered in snow and ice for much of the year. Climbers "
              "usually need five to eight days to reach the top and come back down, walking through rain forest, "
              "heath and alpine desert on the way. Many people climb it every year without ropes or special gear.")
NEAR_CLIPS = ("en_LDC93S1.wav", "en_goforward.wav", "en_LJ001-0008.wav", "en_arctic_a0024.wav")
CONVERGE_S = (2.0, 5.0)  # far end only: echo reduction measured here, after two seconds of adaptation
NEAR_START_S, NEAR_GAP_S = 5.5, 0.8


@dataclass
class Scene:
    mic: np.ndarray  # what the microphone captures: people + echo
    near: np.ndarray  # the people alone
    echo: np.ndarray  # the echo alone
    far: np.ndarray  # what the speaker played
    spans: list[tuple[int, int, str]]  # (start, end, clip name) of each person's clip


def build_scene(far: np.ndarray, clips: list[tuple[str, np.ndarray]], path: EchoPath) -> Scene:
    """People's clips laid over the agent's voice after the convergence window; the echo made block by block by
    the same simulated path `cadence headless --echo-db` uses."""
    spans, cursor = [], int(NEAR_START_S * RATE)
    for name, audio in clips:
        spans.append((cursor, cursor + len(audio), name))
        cursor += len(audio) + int(NEAR_GAP_S * RATE)
    n = (max(cursor, len(far) + RATE) // BLOCK + 1) * BLOCK
    near = np.zeros(n, np.float32)
    for (start, end, _), (_, audio) in zip(spans, clips):
        near[start:end] = audio
    far = np.pad(far, (0, n - len(far)))[:n]
    simulator, echo = path.build(RATE, BLOCK), np.zeros(n, np.float32)
    for i in range(n // BLOCK):  # speaker block i plays while microphone block i+1 is captured
        echo[i * BLOCK:(i + 1) * BLOCK] = simulator.add_to(np.zeros(BLOCK, np.float32))
        simulator.play(far[i * BLOCK:(i + 1) * BLOCK])
    return Scene(near + echo, near, echo, far, spans)


def cancel(scene: Scene, canceller) -> tuple[np.ndarray, BlockEchoCanceller]:
    """The microphone through the block canceller as a session gets it; realigned to the microphone's samples."""
    processor = BlockEchoCanceller(canceller, RATE)
    out = []
    for i in range(len(scene.mic) // BLOCK):
        sl = slice(i * BLOCK, (i + 1) * BLOCK)
        far = scene.far[sl]  # handed to the speaker in this callback; it plays during the next block
        out.append(processor.process(Block(i, scene.mic[sl], (i + 1) * BLOCK / RATE, (), 0.0, far)).mic)
    lag = int(round(processor.latency_s * RATE))
    cleaned = np.concatenate(out)[lag:]
    return np.pad(cleaned, (0, len(scene.mic) - len(cleaned))), processor


def _energy(x: np.ndarray) -> float:
    return float(np.sum(np.square(x, dtype=np.float64))) + 1e-12


def erle_db(scene: Scene, cleaned: np.ndarray) -> float:
    a, b = (int(t * RATE) for t in CONVERGE_S)
    return 10 * np.log10(_energy(scene.echo[a:b]) / _energy(cleaned[a:b]))


def near_level_change_db(scene: Scene, cleaned: np.ndarray) -> float:
    """Level of the cleaned microphone against the person's own recording, over the frames where they talk."""
    frame, kept, original = 320, 0.0, 0.0
    for start, end, _ in scene.spans:
        for k in range(start, end - frame, frame):
            seg = scene.near[k:k + frame]
            if np.sqrt(np.mean(seg.astype(np.float64) ** 2)) > 10 ** (-40 / 20):
                original += _energy(seg)
                kept += _energy(cleaned[k:k + frame])
    return 10 * np.log10(kept / original)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--noise-suppression", action="store_true", help="also turn noise suppression on")


def run(cfg: Config, args: argparse.Namespace, log: Log) -> dict:
    import csv

    from app.bench import SPEECH_DIR
    from app.commands.transcribe import transcribe
    from app.engine_factory import build_asr, build_tts
    from app.metrics.wer import corpus_wer
    from engines.aec_webrtc import WebRtcEchoCanceller
    from engines.audio_io import read_audio, resample

    log(f"the agent's voice: {cfg.models.tts}")
    tts = build_tts(cfg)
    far = np.concatenate([resample(c.samples, c.sample_rate, RATE) for c in tts.synthesize(AGENT_TEXT)])
    far *= 10 ** (-20 / 20) / max(float(np.sqrt(np.mean(far ** 2))), 1e-9)  # played at -20 dBFS RMS
    with open(SPEECH_DIR / "manifest.tsv", newline="", encoding="utf-8") as fh:
        manifest = {row["file"]: row["transcript"] for row in csv.DictReader(fh, delimiter="\t")}
    clips, references = [], {}
    for name in NEAR_CLIPS[:2] if args.quick else NEAR_CLIPS:
        clips.append((name, read_audio(SPEECH_DIR / name)))
        references[name] = manifest[name]
    asr = build_asr(cfg)
    rows = []
    for path in PATHS[:1] if args.quick else PATHS:
        log(f"echo at {path.level_db:g} dB, {path.delay_ms:g} ms{' + reverb' if path.reverb else ''}")
        scene = build_scene(far, clips, path)
        cleaned, processor = cancel(scene, WebRtcEchoCanceller(noise_suppression=args.noise_suppression))
        pairs = {"clean": [], "echo": [], "cancelled": []}
        for start, end, name in scene.spans:
            a, b = max(0, start - RATE // 4), end + RATE // 4
            for key, signal in (("clean", scene.near), ("echo", scene.mic), ("cancelled", cleaned)):
                pairs[key].append((references[name], transcribe(asr, signal[a:b])))
        stats = processor.stats(settled=True)
        rows.append({"level_db": path.level_db, "delay_ms": path.delay_ms, "reverb": path.reverb,
                     "true_delay_ms": path.delay_ms + 1000 * BLOCK / RATE,  # a block waits in the speaker
                     "delay_estimate_ms": stats.delay_ms, "erle_db": erle_db(scene, cleaned),
                     "near_level_change_db": near_level_change_db(scene, cleaned),
                     "wer": {k: corpus_wer(v) for k, v in pairs.items()},
                     "transcripts": {k: [h for _, h in v] for k, v in pairs.items()}})
    return {"rows": rows, "tts": cfg.models.tts, "asr": cfg.models.asr, "clips": list(references),
            "noise_suppression": bool(args.noise_suppression)}


def format_report(result: dict) -> str:
    lines = [f"cadence bench echo: the agent's voice ({result['tts']}) as echo, {len(result['clips'])} real "
             f"people talking over it, WER by {result['asr']}" + (", noise suppression on"
                                                                   if result["noise_suppression"] else ""),
             machine_line(result["machine"]),
             "| echo path | ERLE after 2 s | near-end level in double talk | delay estimate (true) "
             "| WER clean | WER with echo | WER cancelled |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        estimate = "-" if r["delay_estimate_ms"] is None else f"{r['delay_estimate_ms']:.0f} ms"
        wer = r["wer"]
        lines.append(f"| {r['level_db']:g} dB, {r['delay_ms']:g} ms{' + reverb' if r['reverb'] else ''} "
                     f"| {r['erle_db']:.1f} dB | {r['near_level_change_db']:+.1f} dB "
                     f"| {estimate} ({r['true_delay_ms']:.0f} ms) | {wer['clean'] * 100:.1f} % "
                     f"| {wer['echo'] * 100:.1f} % | {wer['cancelled'] * 100:.1f} % |")
    return "\n".join(lines)

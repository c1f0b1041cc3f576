"""`cadence bench turns`: the end-of-turn rule measured on a labelled set of pauses.

Every sample is one pause, labelled by what the speaker did next:
- **complete**: the end of a turn. The real recordings (tests/fixtures/speech, read speech and questions by real
  people), spoken questions (assets/answers) in several Kokoro voices, and in espeak-ng's flat robotic voice when
  it is installed (prosody that says "not done" when the words are).
- **mid-utterance**: the speaker goes on after the pause. The pauses inside the real recordings (the VAD's gaps of
  0.25 s or more, JFK's among them), questions spoken with a hesitation in the middle ("What is the tallest,
  mountain in Africa?": the synthesized comma pause stretched to 0.4-1.2 s), and requests that open with a
  complete sentence before the question ("I'm planning a trip to Japan in the spring. What should I pack?").

For each pause the real engines give what the session would see when the VAD calls the pause (200 ms of quiet):
Smart Turn's probability on the audio so far, and the LLM's text end-of-utterance score on the recognizer's
transcript. Each rule then says how long it would wait after that moment (`app/conversation/turn_rule.py`:
`eot_wait`), which gives, from the same features, the takeovers (the reply would start before the speaker went
on) and the wait added to complete turns. Features come from one run; the rules are compared on them."""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.bench import Log, machine_line, speech_clips
from app.config import Config, runtime_settings

RATE = 16000
VAD_PAUSE_S = 0.2
STRETCH_S = (0.4, 0.6, 0.8, 1.0, 1.2)  # mid-utterance pauses, cycled
VOICES = ("am_michael", "bf_emma", "af_sarah", "bm_george")
PREAMBLES = ("I'm planning a trip to Japan in the spring. What should I pack?",
             "My sister is coming to visit next week. What could we do together?",
             "I have some chicken and rice in the fridge. What can I cook tonight?",
             "I want to start running in the mornings. How far should I go at first?",
             "We are painting the living room this weekend. Which colour goes with grey?")
SKIP_REAL = ("diarization", "silero_test")  # several speakers, or no single turn


@dataclass
class Sample:
    source: str  # real / kokoro / espeak / preamble
    label: str  # complete / mid
    pause_s: float  # how long the speaker was quiet (inf for the end of a turn)
    audio: np.ndarray  # the speech up to the pause
    text: str = ""
    audio_p: float = 0.0
    text_log10: float | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--questions", type=int, default=24, help="spoken questions per voice (default 24; 6 with "
                        "--quick)")


def run(cfg: Config, args: argparse.Namespace, log: Log) -> dict:
    from app.engine_factory import build_engines

    count = 6 if args.quick and args.questions == 24 else args.questions
    engines = build_engines(cfg, log)
    samples = _real_samples(engines.vad) + _spoken_samples(cfg, count, log) + _espeak_samples(count, log)
    log(f"measuring {len(samples)} pauses")
    _measure(samples, engines, cfg)
    settings = runtime_settings(cfg).session.turn  # the settings the session would use
    rules = {name: _evaluate(samples, settings, changes) for name, changes in RULES.items()}
    return {"samples": len(samples), "espeak": any(s.source == "espeak" for s in samples), "rules": rules,
            "features": [_features(s) for s in samples]}


def _features(s: Sample) -> dict:
    """One pause as the report keeps it (the words heard are the fixtures' and the question set's, never a user's)."""
    return {"source": s.source, "label": s.label, "heard": s.text,
            "pause_s": None if s.pause_s == np.inf else round(s.pause_s, 2), "audio_p": round(s.audio_p, 3),
            "text_log10": None if s.text_log10 is None else round(s.text_log10, 3)}


# the rules compared, as changes to the turn-taking settings: the rules before (no trust in a surely complete text
# over the audio's "not yet"; then any Smart Turn "complete" with a likely text at once), the default chosen with this
# set (at once only when Smart Turn is sure, >= 0.9; a 1.2 s wait when one signal is unsure) and its neighbours
_BEFORE = {"turn_sure_threshold": 0.0, "uncertain_wait_s": 1.0}  # any Smart Turn "complete" was enough; 1.0 s
RULES: dict[str, dict[str, float]] = {
    "before (disagree waits 1.5 s)": {**_BEFORE, "text_sure_log10": 1.0},
    "text >= -0.2 trusted after 0.3 s": _BEFORE,
    "... and 'complete' text >= -0.6": {**_BEFORE, "text_complete_log10": -0.6},
    "at once only if Smart Turn >= 0.9": {"uncertain_wait_s": 1.0},
    "... and unsure waits 1.2 s": {},  # the default
    "... with Smart Turn >= 0.8": {"turn_sure_threshold": 0.8},
    "... with Smart Turn >= 0.95": {"turn_sure_threshold": 0.95},
}


def _evaluate(samples: list[Sample], settings, changes: dict[str, float]) -> dict:
    from dataclasses import replace

    from app.conversation.turn_rule import eot_wait

    settings = replace(settings, **{k: min(v, settings.disagree_wait_s) if k == "uncertain_wait_s" else v
                                    for k, v in changes.items()})  # a shorter max_wait_ms caps the waits
    out: dict[str, dict] = {}
    for source in ("real", "kokoro", "espeak", "preamble"):
        mine = [s for s in samples if s.source == source]
        mid = [s for s in mine if s.label == "mid"]
        done = [s for s in mine if s.label == "complete"]
        if not mine:
            continue
        waits = [eot_wait(settings, s.audio_p, s.text_log10) for s in done]
        taken = [s for s in mid if VAD_PAUSE_S + eot_wait(settings, s.audio_p, s.text_log10) < s.pause_s]
        out[source] = {"mid_pauses": len(mid), "takeovers": len(taken), "complete": len(done),
                       "wait_mean_s": round(float(np.mean(waits)), 3) if waits else None,
                       "wait_p90_s": round(float(np.percentile(waits, 90)), 3) if waits else None,
                       "waited_1s_or_more": sum(w >= 1.0 for w in waits)}
    return out


def format_report(result: dict) -> str:
    lines = [f"cadence bench turns: {result['samples']} labelled pauses"
             + ("" if result["espeak"] else " (espeak-ng not installed: no flat robotic voice)"),
             machine_line(result["machine"]),
             f"{'rule':<34}{'source':<10}{'takeovers':>10}{'complete':>9}{'mean wait':>11}{'P90 wait':>10}{'>=1 s':>7}"]
    for rule, by_source in result["rules"].items():
        for source, r in by_source.items():
            mean = "-" if r["wait_mean_s"] is None else f"{r['wait_mean_s']:.2f} s"
            p90 = "-" if r["wait_p90_s"] is None else f"{r['wait_p90_s']:.2f} s"
            lines.append(f"{rule:<34}{source:<10}{r['takeovers']:>5}/{r['mid_pauses']:<4}{r['complete']:>9}"
                         f"{mean:>11}{p90:>10}{r['waited_1s_or_more']:>7}")
    return "\n".join(lines)


# ---- the samples ------------------------------------------------------------------------------------------

def _gaps(vad, audio: np.ndarray, min_gap_s: float) -> list[tuple[int, int]]:
    """(start, end) samples of the quiet stretches inside `audio` (not at its ends) of at least `min_gap_s`."""
    vad.reset()
    speech = vad.probabilities(audio) > 0.5
    n, frame = len(speech), vad.frame_samples
    gaps, i = [], 0
    while i < n:
        if not speech[i]:
            j = i
            while j < n and not speech[j]:
                j += 1
            if i > 0 and j < n and (j - i) * frame >= min_gap_s * RATE:
                gaps.append((i * frame, j * frame))
            i = j
        else:
            i += 1
    return gaps


def _real_samples(vad) -> list[Sample]:
    out = []
    for name, audio in speech_clips(1.0, 15.0):
        if not name.startswith("en_") or any(skip in name for skip in SKIP_REAL):
            continue
        out.append(Sample("real", "complete", np.inf, audio))
        for start, end in _gaps(vad, audio, 0.25):
            out.append(Sample("real", "mid", (end - start) / RATE, audio[:start]))
    return out


def _hesitant(text: str) -> str:
    """The question with a comma after its middle word: the voice pauses there, mid-sentence."""
    words = text.split()
    cut = max(2, len(words) // 2)
    return " ".join(words[:cut]) + ", " + " ".join(words[cut:])


def _split_at_gap(vad, audio: np.ndarray, stretch_s: float) -> Sample | None:
    gaps = _gaps(vad, audio, 0.03)
    if not gaps:
        return None
    start, end = max(gaps, key=lambda g: g[1] - g[0])
    return Sample("", "mid", stretch_s, audio[:start])


def _spoken_samples(cfg: Config, count: int, log: Log) -> list[Sample]:
    import json

    from app.engine_factory import build_vad
    from app.headless.script import user_voice_synthesizer
    from app.paths import asset

    questions = json.loads(asset("answers/questions.json").read_text(encoding="utf-8"))[:count]
    speak, vad = user_voice_synthesizer(cfg), build_vad(cfg)
    log(f"synthesizing {len(questions)} questions in {len(VOICES)} voices, with and without a hesitation")
    out, k = [], 0
    for voice in VOICES:
        for q in questions:
            out.append(Sample("kokoro", "complete", np.inf, speak(q["text"], voice)))
            mid = _split_at_gap(vad, speak(_hesitant(q["text"]), voice), STRETCH_S[k % len(STRETCH_S)])
            k += 1
            if mid is not None:
                mid.source = "kokoro"
                out.append(mid)
    for i, text in enumerate(PREAMBLES):
        mid = _split_at_gap(vad, speak(text, VOICES[i % len(VOICES)]), 0.8)
        if mid is not None:
            mid.source = "preamble"
            out.append(mid)
    return out


def _espeak(text: str) -> np.ndarray | None:
    from engines.audio_io import read_audio

    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "q.wav"
        subprocess.run([exe, "-v", "en-us", "-w", str(path), text], check=True, capture_output=True, timeout=30)
        return read_audio(path)


def _espeak_samples(count: int, log: Log) -> list[Sample]:
    import json

    from app.paths import asset

    if shutil.which("espeak-ng") is None:
        log("espeak-ng is not installed: no flat robotic voice in the set (apt-get install espeak-ng)")
        return []
    questions = json.loads(asset("answers/questions.json").read_text(encoding="utf-8"))[:count]
    return [Sample("espeak", "complete", np.inf, audio) for q in questions
            if (audio := _espeak(q["text"])) is not None]


def _measure(samples: list[Sample], engines, cfg: Config) -> None:
    from app.config import system_prompt
    from app.conversation.history import History
    from engines.protocols import Message

    silence = np.zeros(int(VAD_PAUSE_S * RATE), np.float32)
    prompt = system_prompt(cfg)
    for s in samples:
        audio = np.concatenate([s.audio.astype(np.float32), silence])
        s.audio_p = float(engines.turn.probability_complete(audio[-8 * RATE:]))
        engines.asr.start()
        engines.asr.accept(audio)
        s.text = engines.asr.finish().strip()
        if s.text and engines.scorer is not None:
            chat = History(prompt).append("user", s.text).as_chat()
            messages = [Message(m["role"], m["content"]) for m in chat]
            score = engines.scorer.start(messages, 1).eou_score()
            s.text_log10 = None if score is None else float(score)
        s.audio = s.audio[:0]  # the features are all that is kept
    # a pause where the recognizer heard nothing is no turn: the session would not reply either
    samples[:] = [s for s in samples if s.text and re.search(r"\w", s.text)]

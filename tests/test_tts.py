"""Text to speech with the real models: Piper joe-medium and Kokoro-82M int8 ONNX speak ten varied sentences that
Whisper tiny.en must read back (WER <= 10 %), chunks are well-formed float32 mono, all 28 Kokoro voices are listed,
bad input fails clearly, and `cadence say` writes a WAV. First-audio latency and real-time factor are printed
(`pytest -s`) for docs/engines-tts.md, not asserted: they depend on the machine's load."""
from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from engines.audio_io import resample
from engines.protocols import SAMPLE_RATE, AudioChunk, Synthesizer
from engines.store import ensure
from engines.tts_kokoro_onnx import KokoroOnnxSynthesizer, UnknownVoice
from engines.tts_piper import PiperSynthesizer
from tests.conftest import run_cli
from tests.wer import corpus_wer, wer

SENTENCES = [  # short (Kokoro runs near real time on 2 cores): questions, numbers as words, names, a clause
    "What time is it in Tokyo?",
    "Please set a timer for ten minutes.",
    "My friend Alice lives in Paris.",
    "Turn off the kitchen lights.",
    "It costs twenty five dollars.",
    "If it rains tomorrow, take an umbrella.",
    "How far away is the moon?",
    "Call Doctor Smith this afternoon.",
    "I have seven apples and four oranges.",
    "Can you play some jazz music?",
]
EIGHT_WORDS = "Please remind me to call my sister tonight."
NOT_SPEECH = ["", "   ", "\n", "...", "?!"]
RATES = {"piper": 22_050, "kokoro": 24_000}


@pytest.fixture(scope="module")
def piper() -> PiperSynthesizer:
    return PiperSynthesizer.from_catalog("piper-joe-medium", threads=2)


@pytest.fixture(scope="module")
def kokoro() -> KokoroOnnxSynthesizer:
    return KokoroOnnxSynthesizer.from_catalog("kokoro-82m-int8", voice="af_heart", threads=2)


@pytest.fixture(scope="module")
def engines(piper, kokoro) -> dict[str, Synthesizer]:
    return {"piper": piper, "kokoro": kokoro}


@pytest.fixture(scope="module")
def whisper():
    from faster_whisper import WhisperModel

    return WhisperModel(str(ensure("whisper-tiny.en").directory), device="cpu", compute_type="int8", cpu_threads=2)


def speak(tts: Synthesizer, text: str) -> tuple[np.ndarray, list[AudioChunk], float, float]:
    """(all audio, chunks, seconds to the first chunk, seconds in all)."""
    start = time.perf_counter()
    first, chunks = 0.0, []
    for chunk in tts.synthesize(text):
        first = first or time.perf_counter() - start
        chunks.append(chunk)
    total = time.perf_counter() - start
    audio = np.concatenate([c.samples for c in chunks]) if chunks else np.zeros(0, np.float32)
    return audio, chunks, first, total


def transcribe(whisper, audio: np.ndarray, rate: int) -> str:
    segments, _ = whisper.transcribe(resample(audio, rate, SAMPLE_RATE), language="en", beam_size=5,
                                     condition_on_previous_text=False)
    return " ".join(s.text.strip() for s in segments)


def assert_well_formed(chunks: list[AudioChunk], rate: int) -> None:
    assert chunks, "no audio"
    for c in chunks:
        assert isinstance(c, AudioChunk) and c.sample_rate == rate
        assert c.samples.dtype == np.float32 and c.samples.ndim == 1 and c.samples.size > 0
        assert np.isfinite(c.samples).all()
        assert float(np.abs(c.samples).max()) <= 1.0
    audio = np.concatenate([c.samples for c in chunks])
    assert float(np.sqrt(np.mean(audio ** 2))) > 0.01, "silent"


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["piper", "kokoro"])
def test_round_trip_through_asr(engine, engines, whisper):
    tts = engines[engine]
    pairs, spoken_s, compute_s = [], 0.0, 0.0
    for text in SENTENCES:
        audio, chunks, _, total = speak(tts, text)
        assert_well_formed(chunks, RATES[engine])
        spoken_s += len(audio) / tts.sample_rate
        compute_s += total
        heard = transcribe(whisper, audio, tts.sample_rate)
        pairs.append((text, heard))
        if wer(text, heard):
            print(f"\n[{engine}] said {text!r}, heard {heard!r}")
    score = corpus_wer(pairs)
    print(f"\n[{engine}] round-trip WER {score:.1%} over {len(SENTENCES)} sentences; "
          f"{spoken_s:.1f} s of speech in {compute_s:.1f} s (RTF {compute_s / spoken_s:.2f})")
    assert score <= 0.10


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["piper", "kokoro"])
def test_first_audio_and_real_time_factor(engine, engines):
    tts = engines[engine]
    speak(tts, "Warm up.")
    runs = [speak(tts, EIGHT_WORDS) for _ in range(3 if engine == "piper" else 2)]
    audio, chunks, first, total = min(runs, key=lambda r: r[2])
    assert_well_formed(chunks, RATES[engine])
    seconds = len(audio) / tts.sample_rate
    assert 1.0 < seconds < 8.0  # eight words take a few seconds to say
    print(f"\n[{engine}] 8 words: first audio {first:.2f} s, {seconds:.2f} s of speech in {total:.2f} s "
          f"(RTF {total / seconds:.2f}, best of {len(runs)}, {tts.threads} threads)")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["piper", "kokoro"])
def test_engines_follow_the_protocol(engine, engines):
    tts = engines[engine]
    assert isinstance(tts, Synthesizer)
    assert tts.sample_rate == RATES[engine]
    assert tts.name in ("piper-joe-medium", "kokoro-82m-int8")
    assert tts.session.get_session_options().intra_op_num_threads == 2


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["piper", "kokoro"])
@pytest.mark.parametrize("text", NOT_SPEECH)
def test_nothing_to_say_yields_no_audio(engine, text, engines):
    assert list(engines[engine].synthesize(text)) == []


@pytest.mark.slow
def test_kokoro_lists_all_28_english_voices(kokoro):
    names = kokoro.voices()
    catalog = sorted(n.removesuffix(".bin") for n in ensure("kokoro-voices-en").paths)
    assert names == catalog and len(names) == 28
    assert {"af_heart", "am_michael", "bf_emma", "bm_george"} <= set(names)
    assert sum(n.startswith(("af_", "am_")) for n in names) == 20  # American; the other 8 are British


@pytest.mark.slow
def test_kokoro_voices_speak_differently(kokoro, whisper):
    text = "Good morning, how are you?"
    heard, audios = {}, {}
    try:
        for voice in ("am_michael", "bf_emma", "bm_george"):
            kokoro.set_voice(voice)
            audio, chunks, _, _ = speak(kokoro, text)
            assert_well_formed(chunks, 24_000)
            audios[voice], heard[voice] = audio, transcribe(whisper, audio, 24_000)
    finally:
        kokoro.set_voice("af_heart")
    print("\n" + "\n".join(f"[kokoro {v}] heard {h!r}" for v, h in heard.items()))
    assert corpus_wer((text, h) for h in heard.values()) <= 0.2
    a, b = audios["am_michael"], audios["bf_emma"]
    n = min(len(a), len(b))
    assert len(a) != len(b) or not np.allclose(a[:n], b[:n], atol=1e-3)


@pytest.mark.slow
def test_unknown_voice_fails_clearly(kokoro):
    with pytest.raises(UnknownVoice, match="af_heart.*bm_lewis"):
        kokoro.set_voice("xx_nobody")
    assert kokoro.voice == "af_heart"  # the previous voice stays selected
    with pytest.raises(ValueError, match="unknown Kokoro voice 'Heart'"):
        KokoroOnnxSynthesizer.from_catalog(voice="Heart")


@pytest.mark.slow
def test_kokoro_speed_changes_the_duration(kokoro):
    normal = speak(kokoro, "Turn off the lights.")[0]
    fast = KokoroOnnxSynthesizer(ensure("kokoro-82m-int8").file(), ensure("kokoro-voices-en").directory,
                                 speed=1.6, threads=1)
    assert fast.session.get_session_options().intra_op_num_threads == 1
    quick = speak(fast, "Turn off the lights.")[0]
    assert 0.3 * len(normal) < len(quick) < 0.85 * len(normal)
    with pytest.raises(ValueError, match="speed"):
        KokoroOnnxSynthesizer(ensure("kokoro-82m-int8").file(), ensure("kokoro-voices-en").directory, speed=3)


@pytest.mark.slow
def test_piper_loads_from_paths_and_reports_missing_files(tmp_path):
    files = ensure("piper-joe-medium")
    tts = PiperSynthesizer(files.file("en_US-joe-medium.onnx"), threads=1)  # config guessed as <model>.json
    assert tts.sample_rate == 22_050 and tts.name == "piper"
    assert_well_formed(list(tts.synthesize("Hello there. How are you?")), 22_050)
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        PiperSynthesizer(tmp_path / "nope.onnx")
    with pytest.raises(ValueError, match="threads"):
        PiperSynthesizer(files.file("en_US-joe-medium.onnx"), threads=0)


def test_kokoro_rejects_a_bad_voice_folder(tmp_path):
    model = ensure("kokoro-82m-int8").file()
    with pytest.raises(FileNotFoundError, match="no Kokoro voice files"):
        KokoroOnnxSynthesizer(model, tmp_path)
    (tmp_path / "af_heart.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(ValueError, match="not a Kokoro voice file"):
        KokoroOnnxSynthesizer(model, tmp_path)


# ---- cadence say ------------------------------------------------------------------------------------------

def assert_one_line_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cadence: error:"), proc.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.slow
def test_say_writes_a_wav(tmp_path):
    out = tmp_path / "sub" / "hello.wav"
    proc = run_cli("say", "Hello, this is Cadence speaking.", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    audio, rate = sf.read(out, dtype="float32")
    assert rate == 22_050 and audio.ndim == 1 and len(audio) > rate  # the default engine: Piper
    assert float(np.sqrt(np.mean(audio ** 2))) > 0.01


@pytest.mark.slow
def test_say_with_a_kokoro_voice(tmp_path):
    out = tmp_path / "emma.wav"
    proc = run_cli("say", "Good evening.", "--out", str(out), "--engine", "kokoro-82m-int8", "--voice", "bf_emma")
    assert proc.returncode == 0, proc.stderr
    info = sf.info(str(out))
    assert info.samplerate == 24_000 and info.channels == 1 and info.frames > 12_000


@pytest.mark.parametrize("args, needle", [
    (["Hi", "--engine", "kokoro-82m-int8", "--voice", "zz_nobody"], "af_heart"),
    (["Hi", "--voice", "af_heart"], "single voice"),
    (["Hi", "--engine", "nope"], "no model 'nope'"),
    (["Hi", "--engine", "whisper-tiny.en"], "not a voice engine"),
    (["Hi", "--engine", "kokoro-82m-pth"], "cadence models install kokoro-82m-pth"),
    (["", "--engine", "piper-joe-medium"], "nothing to say"),
    pytest.param(["...", "--engine", "piper-joe-medium"], "nothing to say", marks=pytest.mark.slow),  # loads Piper
])
def test_say_errors_are_one_clear_line(tmp_path, args, needle):
    out = tmp_path / "x.wav"
    assert_one_line_error(run_cli("say", *args, "--out", str(out)), needle)
    assert not out.exists()


def test_say_refuses_an_unwritable_path(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    assert_one_line_error(run_cli("say", "Hi", "--out", str(blocker / "x.wav")), "cannot write")
    assert_one_line_error(run_cli("say", "Hi", "--out", str(tmp_path / "x.mp3")), ".wav")


def test_say_checks_a_user_kokoro_file(tmp_path):
    missing = tmp_path / "weights.pth"
    proc = run_cli("--set", f"models.tts_path={missing}", "say", "Hi", "--out", str(tmp_path / "x.wav"))
    assert_one_line_error(proc, "models.tts_path")


@pytest.mark.slow
def test_a_long_sentence_does_not_leave_the_voice_larger(piper):
    """onnxruntime keeps its arena sized for the largest call unless told to release it: without the release a
    ~20 s sentence left Piper ~150 MB larger for good (measured); with it, memory comes back after each call."""
    from app.bench.soak import rss_mb

    sentence = ("The sky looks blue because the air scatters the short blue waves of sunlight more than the red "
                "ones, so blue light reaches your eyes from every part of the sky at once. ") * 2
    sum(len(c.samples) for c in piper.synthesize("Hello there."))
    before = rss_mb()
    for _ in range(2):
        assert sum(len(c.samples) for c in piper.synthesize(sentence)) > 15 * piper.sample_rate
        sum(len(c.samples) for c in piper.synthesize("Sure."))
    assert rss_mb() - before < 60.0, rss_mb() - before

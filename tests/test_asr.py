"""Whisper tiny.en on real speech, fed the way a live session feeds it (32 ms chunks, a decode step every ~1 s
of new audio): WER over the authoritative English clips, the quiet digits clip, finish() latency (printed, not
asserted), no hallucinated text in silence, bounded steps; and `cadence transcribe` end to end."""
from __future__ import annotations

import time

import numpy as np
import pytest

from engines.asr_whisper import WhisperRecognizer, normalise_level, repetitive
from engines.audio_io import read_audio
from engines.protocols import Recognizer
from tests.conftest import SPEECH, run_cli, speech_manifest
from tests.wer import clip_limit, corpus_wer, normalise, wer

pytestmark = pytest.mark.slow

CHUNK = 512  # 32 ms at 16 kHz
DIGITS = "en_digits_10001-90210-01803.wav"
MAX_WER = 0.15


def authoritative_clips() -> list[tuple[str, str]]:
    return [(r["file"], r["transcript"]) for r in speech_manifest()
            if r["lang"] == "en" and r["authoritative"].startswith("yes")]


@pytest.fixture(scope="module")
def asr() -> WhisperRecognizer:
    return WhisperRecognizer.from_catalog(threads=1)


def stream(asr: WhisperRecognizer, audio: np.ndarray) -> tuple[str, float, str]:
    """(final text, finish() seconds, partial text halfway) for the clip fed in 32 ms chunks."""
    asr.start()
    halfway = ""
    for i in range(0, len(audio), CHUNK):
        asr.accept(audio[i:i + CHUNK])
        if asr.wants_step():
            asr.step()
        if not halfway and i >= len(audio) // 2:
            halfway = asr.partial()
    started = time.perf_counter()
    text = asr.finish()
    return text, time.perf_counter() - started, halfway


@pytest.fixture(scope="module")
def streamed(asr) -> dict[str, tuple[str, str, float, str]]:
    """file -> (reference, hypothesis, finish seconds, halfway partial), for every authoritative clip."""
    return {f: (ref, *stream(asr, read_audio(SPEECH / f))) for f, ref in authoritative_clips()}


def test_implements_the_protocol(asr):
    assert isinstance(asr, Recognizer) and asr.name == "whisper-tiny.en"


def test_streaming_wer_on_real_speech(streamed, capsys):
    assert len(streamed) >= 20
    total = corpus_wer((ref, hyp) for ref, hyp, _, _ in streamed.values())
    latencies = np.array([lat for _, _, lat, _ in streamed.values()]) * 1000
    with capsys.disabled():
        print(f"\n[asr] streaming WER {total:.1%} over {len(streamed)} clips; finish() after the last chunk: "
              f"median {np.median(latencies):.0f} ms, p90 {np.percentile(latencies, 90):.0f} ms, "
              f"max {latencies.max():.0f} ms (1 thread)")
        for f, (ref, hyp, _, _) in streamed.items():
            if wer(ref, hyp) > 0:
                print(f"[asr]   {f}: {wer(ref, hyp):.0%} {hyp!r}")
    assert total <= MAX_WER


def test_partials_arrive_while_the_user_talks(streamed):
    """Halfway through the longer clips most of what was said so far is already text."""
    for f in ("en_jfk.wav", "en_diarization_3spk.wav", "en_librivox_0870.wav"):
        ref, hyp, _, halfway = streamed[f]
        early, final = normalise(halfway).split(), set(normalise(hyp).split())
        assert len(early) >= 3, (f, halfway)
        assert sum(w in final for w in early) >= 0.7 * len(early), (halfway, hyp)


def test_quiet_digits_are_not_dropped(streamed, asr):
    """The clip peaks at 0.11 (-40 dB RMS): streamed and offline, it is heard as digits, not dropped as silence.
    Each path may lose one of the three digit groups and a digit more (AMD EPYC's offline pass drops "nine oh two
    one oh", the group Vosk fails on too; Intel Xeon's hears all three), and the two paths together lose at most
    one group's worth: bounds on what the test is about, which one CPU's rounding does not decide."""
    ref, streamed_hyp, _, _ = streamed[DIGITS]
    offline = asr.transcribe(read_audio(SPEECH / DIGITS))
    digits = set(normalise("0 1 2 3 4 5 6 7 8 9").split())
    for hyp in (streamed_hyp, offline):
        assert normalise(hyp), "the quiet digits clip came back empty"
        assert set(normalise(hyp).split()) <= digits, hyp  # digits, not words made up from the noise
        assert wer(ref, hyp) <= 0.4, hyp  # 6 of 15 words
    assert corpus_wer([(ref, streamed_hyp), (ref, offline)]) <= 0.2, (streamed_hyp, offline)  # 6 of 30 words


def test_offline_and_streaming_agree_in_quality(streamed, asr):
    """finish() after streaming is as good as decoding each clip in one go (committed segments lose little)."""
    clips = authoritative_clips()
    offline = corpus_wer((ref, asr.transcribe(read_audio(SPEECH / f))) for f, ref in clips)
    online = corpus_wer((ref, hyp) for ref, hyp, _, _ in streamed.values())
    assert offline <= MAX_WER
    assert online <= offline + 0.03, (online, offline)


def test_finish_after_a_step_at_the_pause_costs_no_decode(asr):
    """The scheduler steps when the VAD reports a pause; finish() then has nothing left to decode."""
    audio = read_audio(SPEECH / "en_forever.wav")
    asr.start()
    for i in range(0, len(audio), CHUNK):
        asr.accept(audio[i:i + CHUNK])
    assert asr.step()
    decodes = asr.decodes
    text = asr.finish()
    assert asr.decodes == decodes
    reference = "feels like these days go on forever"
    assert wer(reference, text) <= clip_limit(reference, 0.15), text


def test_a_step_over_quiet_audio_keeps_the_hypothesis_without_a_decode(asr):
    """At the onset of a pause, a decode already run after the last word is the text: only quiet came since."""
    audio = read_audio(SPEECH / "en_forever.wav")
    asr.start()
    asr.accept(audio)
    assert asr.step()
    text, decodes = asr.partial(), asr.decodes
    asr.accept(np.zeros(8000, np.float32))  # half a second of pause
    assert not asr.step() and asr.decodes == decodes and asr.partial() == text
    assert asr.finish() == text and asr.decodes == decodes
    asr.accept(audio[:16000])  # speech again: decoded
    assert asr.step() and asr.decodes == decodes + 1


@pytest.mark.parametrize("level_dbfs", [None, -60.0])
def test_silence_gives_no_text_and_no_decode(asr, level_dbfs):
    rng = np.random.default_rng(5)
    audio = np.zeros(3 * 16000, np.float32) if level_dbfs is None else \
        (rng.standard_normal(3 * 16000) * 10 ** (level_dbfs / 20)).astype(np.float32)
    asr.start()
    for i in range(0, len(audio), CHUNK):
        asr.accept(audio[i:i + CHUNK])
        if asr.wants_step():
            asr.step()
    assert asr.finish() == ""
    assert asr.decodes == 0
    asr.start()
    assert asr.finish() == "" and asr.partial() == ""


def test_steps_are_bounded_and_start_forgets(asr):
    audio = read_audio(SPEECH / "en_diarization_3spk.wav")  # 19.8 s, three speakers
    saved = asr.max_segment_s
    asr.max_segment_s = 8.0
    try:
        asr.start()
        asr.accept(audio)
        assert asr.step()
        assert 0 < asr.committed_s <= 8.0  # one step decoded at most 8 s
        text = asr.finish()
    finally:
        asr.max_segment_s = saved
    ref = dict(authoritative_clips())["en_diarization_3spk.wav"]
    assert wer(ref, text) <= MAX_WER
    asr.start()
    asr.accept(read_audio(SPEECH / "en_cards_001.wav"))
    assert "crocodile" not in asr.finish().lower()


def test_level_normalisation():
    quiet = (0.05 * np.sin(np.arange(16000) / 5.0)).astype(np.float32)
    assert np.abs(normalise_level(quiet)).max() == pytest.approx(0.5, rel=0.02)
    hiss = np.full(16000, 1e-6, np.float32)
    assert np.abs(normalise_level(hiss)).max() <= 1e-6 * 31.7  # gain capped at +30 dB
    assert normalise_level(np.zeros(0, np.float32)).size == 0


def test_repetition_detector():
    assert repetitive("1, 2, 1, 2, 1, 2, 1, 2, 1")
    assert repetitive("Three. Three. Three. Three. Three. Three. Three. Three.")
    assert not repetitive("one zero zero zero one nine oh two one oh")
    assert not repetitive("ask not what your country can do for you, ask what you can do for your country")


# ---- cadence transcribe ------------------------------------------------------------------------------------

def test_cli_transcribes_a_file():
    out = run_cli("--set", "scheduler.device_threads=1", "transcribe", str(SPEECH / "en_goforward.wav"))
    assert out.returncode == 0, out.stderr
    assert wer("go forward ten meters", out.stdout) <= clip_limit("go forward ten meters", 0.25), out.stdout


@pytest.mark.parametrize("content,phrase", [(b"", "not a readable audio file"),
                                            (b"plain text, not audio\n" * 10, "not a readable audio file")])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, content, phrase):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    out = run_cli("transcribe", str(bad))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and phrase in lines[0] and "Traceback" not in out.stderr


def test_cli_missing_file_and_wrong_engine(tmp_path):
    missing = run_cli("transcribe", str(tmp_path / "nope.wav"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    wrong = run_cli("transcribe", str(SPEECH / "en_goforward.wav"), "--engine", "piper-joe-medium")
    assert wrong.returncode == 2 and "not a speech recognizer" in wrong.stderr
    unknown = run_cli("transcribe", str(SPEECH / "en_goforward.wav"), "--engine", "no-such-model")
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1


def test_cli_missing_model_names_the_fix(empty_model_cache):
    out = run_cli("transcribe", str(SPEECH / "en_goforward.wav"), "--engine", "nemotron-speech-streaming-0.6b",
                  env={"XDG_CACHE_HOME": str(empty_model_cache)})
    assert out.returncode == 2
    assert "cadence models install nemotron-speech-streaming-0.6b" in out.stderr


# ---- optional: Moonshine base-en -----------------------------------------------------------------------------

def test_moonshine_when_installed():
    """Runs only where `cadence models install moonshine-base-en` was done (not a default model)."""
    from engines import store
    from engines.catalog import get

    if store.status(get("moonshine-base-en")) == store.Status.MISSING:
        pytest.skip("moonshine-base-en is not installed (optional model)")
    from engines.asr_moonshine import MoonshineRecognizer

    asr = MoonshineRecognizer.from_catalog(threads=1)
    assert isinstance(asr, Recognizer)
    refs = dict(authoritative_clips())
    pairs = [(refs[f], asr.transcribe(read_audio(SPEECH / f))) for f in ("en_jfk.wav", "en_mr_quilter.wav")]
    assert corpus_wer(pairs) <= 0.15, pairs

"""The far-end reference on the sound card (app/audio/far_reference.py): bursty output reads come out sample for
sample in step with the microphone after a cushion, an underrun is silence, clock drift is bounded and counted;
and the real WebRTC canceller, fed this way, removes the echo."""
from __future__ import annotations

import numpy as np
import pytest

from app.audio.duplex import Block
from app.audio.echo_cancel import BlockEchoCanceller
from app.audio.far_reference import FarReference
from engines.audio_io import read_audio
from tests.conftest import SPEECH

RATE, BLOCK = 16000, 512


def bursts(signal: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """The output side's reads: 1-4 blocks at a time."""
    pos, reads = 0, []
    while pos < len(signal):
        n = BLOCK * int(rng.integers(1, 5))
        reads.append(signal[pos:pos + n])
        pos += n
    return reads


def test_bursty_reads_come_out_continuous_after_the_cushion():
    rng = np.random.default_rng(1)
    played = rng.standard_normal(RATE * 3).astype(np.float32)
    far, reads, read, out = FarReference(RATE, cushion_s=0.04), bursts(played, rng), 0, []
    for i in range(len(played) // BLOCK - 8):
        while reads and read < (i + 3) * BLOCK:  # the output side stays 2-5 blocks ahead, in bursts
            read += len(reads[0])
            far.add(reads.pop(0))
        out.append(far.take(BLOCK))
    reference = np.concatenate(out)
    waited = int(np.argmax(reference != 0))  # silence until the cushion was collected
    assert waited % BLOCK == 0 and waited <= 4 * BLOCK
    assert np.array_equal(reference[waited:], played[:len(reference) - waited])  # then every sample, in order
    assert far.starved == 0 and far.dropped == 0


def test_a_short_fifo_collects_a_fresh_cushion_once_and_then_stays_continuous():
    played = np.arange(1, 40 * BLOCK + 1, dtype=np.float32)
    block = lambda j: played[j * BLOCK:(j + 1) * BLOCK]  # noqa: E731
    far, out, read = FarReference(RATE, cushion_s=2 * BLOCK / RATE), [], 0
    for _ in range(3):
        far.add(block(read))
        read += 1
    for i in range(30):
        if not 5 <= i <= 8:  # the output side skips four reads (its buffer ran low), then reads one block a take
            far.add(block(read))
            read += 1
        out.append(far.take(BLOCK))
    assert far.starved == 1
    reference = np.concatenate(out)
    tail = reference[np.nonzero(reference == 0)[0][-1] + 1:]  # after the re-anchoring silence
    assert len(tail) >= 15 * BLOCK
    assert np.array_equal(tail, played[int(tail[0]) - 1:int(tail[0]) - 1 + len(tail)])  # continuous again


def test_an_underrun_is_silence_in_the_reference():
    far = FarReference(RATE, cushion_s=0.0)
    far.add(np.ones(BLOCK, np.float32))
    far.gap(0.01)  # the speaker ran dry for 10 ms
    far.add(np.full(BLOCK, 2.0, np.float32))
    out = np.concatenate([far.take(BLOCK) for _ in range(3)])
    hole = int(0.01 * RATE)
    assert (out[:BLOCK] == 1.0).all() and not out[BLOCK:BLOCK + hole].any()
    assert (out[BLOCK + hole:2 * BLOCK + hole] == 2.0).all()


def test_drifting_clocks_cost_a_counted_correction_and_bounded_memory():
    far = FarReference(RATE, cushion_s=0.04, max_s=0.2)
    for _ in range(200):  # the speaker's clock runs 10 % faster than the microphone's
        far.add(np.ones(BLOCK + BLOCK // 10, np.float32))
        far.take(BLOCK)
    assert far.dropped > 0 and far._count <= 0.2 * RATE + BLOCK
    starving = FarReference(RATE, cushion_s=0.0)
    for _ in range(20):  # ... or slower: now and then silence while a fresh cushion is collected, nothing piles up
        starving.add(np.ones(BLOCK - BLOCK // 8, np.float32))
        starving.take(BLOCK)
    assert starving.starved >= 2 and starving._count < 2 * BLOCK


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    audio = np.concatenate([read_audio(SPEECH / name) for name in ("en_LJ001-0004.wav", "en_LJ001-0006.wav")])
    return (0.5 * audio / np.max(np.abs(audio))).astype(np.float32)


def test_the_real_canceller_fed_this_way_removes_the_echo(speech):
    """The speaker plays `speech` (read in bursts of 1-4 blocks, up to 5 blocks ahead); its echo comes back 60 ms
    after it plays at -20 dB; after 3 s the canceller leaves the echo at least 30 dB down."""
    from engines.aec_webrtc import WebRtcEchoCanceller

    rng = np.random.default_rng(7)
    echo = np.concatenate([np.zeros(int(0.06 * RATE), np.float32), 0.1 * speech])[:len(speech)]
    processor, far, reads, read, cleaned = (BlockEchoCanceller(WebRtcEchoCanceller(), RATE), FarReference(RATE),
                                            bursts(speech, rng), 0, [])
    for i in range(len(speech) // BLOCK):
        while reads and read < (i + 5) * BLOCK:
            read += len(reads[0])
            far.add(reads.pop(0))
        mic = echo[i * BLOCK:(i + 1) * BLOCK]
        cleaned.append(processor.process(Block(i, mic, (i + 1) * BLOCK / RATE, (), i * BLOCK / RATE,
                                               far.take(BLOCK))).mic)
    out = np.concatenate(cleaned)[3 * RATE:]
    residual = np.mean(np.square(out)) / np.mean(np.square(echo[3 * RATE:3 * RATE + len(out)]))
    assert 10 * np.log10(residual) < -30.0

"""The far-end reference on the DAC's clock (app/audio/far_timeline.py): bursty, jittery output reads come out
sample for sample in step with the microphone, gaps become silence, clock jumps resynchronise, memory stays
bounded; and the real WebRTC canceller, fed this way, removes the echo.""" 
from __future__ import annotations

import numpy as np
import pytest

from app.audio.duplex import Block
from app.audio.echo_cancel import BlockEchoCanceller
from app.audio.far_timeline import FarTimeline
from engines.audio_io import read_audio
from tests.conftest import SPEECH

RATE, BLOCK = 16000, 512


def bursty_reads(signal: np.ndarray, rng: np.random.Generator, t0: float = 100.0):
    """The output side's reads: 1-4 blocks at a time, each stamped with its DAC time plus up to 1 ms of jitter."""
    pos, reads = 0, []
    while pos < len(signal):
        n = BLOCK * int(rng.integers(1, 5))
        reads.append((t0 + pos / RATE + rng.uniform(-0.001, 0.001), signal[pos:pos + n]))
        pos += n
    return reads


def test_bursty_jittery_reads_come_out_in_step_with_the_microphone():
    rng = np.random.default_rng(1)
    played = rng.standard_normal(RATE * 3).astype(np.float32)
    timeline = FarTimeline(RATE, lead_s=0.01)
    reads, out = bursty_reads(played, rng), []
    for i in range(len(played) // BLOCK - 2):
        t_block = 100.0 + i * BLOCK / RATE + rng.uniform(-0.001, 0.001)  # the microphone block's start, jittery
        while reads and reads[0][0] < t_block + 0.05:  # the output side reads ~50 ms ahead
            timeline.add(*reads.pop(0))
        out.append(timeline.take(t_block, BLOCK))
    far = np.concatenate(out)
    lead, jitter = int(0.01 * RATE), int(0.002 * RATE)
    offsets = [k for k in range(lead - jitter, lead + jitter + 1) if np.array_equal(far, played[k:k + len(far)])]
    assert len(offsets) == 1, offsets  # one continuous stretch, the lead ahead give or take the clocks' jitter
    assert timeline.resyncs == 0


def test_an_underrun_is_silence_in_the_reference_and_the_rest_stays_aligned():
    timeline = FarTimeline(RATE, lead_s=0.0)
    a, b = np.ones(BLOCK, np.float32), np.full(BLOCK, 2.0, np.float32)
    timeline.add(10.0, a)
    timeline.add(10.0 + 2 * BLOCK / RATE, b)  # one block of nothing played between them (an underrun)
    blocks = [timeline.take(10.0 + i * BLOCK / RATE, BLOCK) for i in range(3)]
    assert np.array_equal(blocks[0], a) and not blocks[1].any() and np.array_equal(blocks[2], b)


def test_a_clock_jump_resynchronises_and_nothing_is_kept_for_ever():
    timeline = FarTimeline(RATE, lead_s=0.0, horizon_s=1.0)
    for i in range(200):  # 6.4 s played, never taken
        timeline.add(i * BLOCK / RATE, np.ones(BLOCK, np.float32))
    assert len(timeline._chunks) * BLOCK <= 1.1 * RATE
    timeline.take(5.0, BLOCK)
    timeline.take(5.0 + BLOCK / RATE, BLOCK)
    assert timeline.resyncs == 0
    assert timeline.take(6.0, BLOCK).all() and timeline.resyncs == 1  # the microphone's clock jumped ahead


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    audio = np.concatenate([read_audio(SPEECH / name) for name in ("en_LJ001-0004.wav", "en_LJ001-0006.wav")])
    return (0.5 * audio / np.max(np.abs(audio))).astype(np.float32)


def residual_db(speech: np.ndarray) -> float:
    """The echo left in the microphone after cancellation (dB relative to the echo), the speaker playing `speech`
    and its echo arriving 60 ms later at -20 dB; the output side reads in bursts of 1-4 blocks."""
    from engines.aec_webrtc import WebRtcEchoCanceller

    rng = np.random.default_rng(7)
    delay = int(0.06 * RATE)
    echo = np.concatenate([np.zeros(delay, np.float32), 0.1 * speech])[:len(speech)]
    processor = BlockEchoCanceller(WebRtcEchoCanceller(), RATE)
    timeline, reads, cleaned = FarTimeline(RATE), bursty_reads(speech, rng), []
    for i in range(len(speech) // BLOCK):
        t_block = 100.0 + i * BLOCK / RATE
        while reads and reads[0][0] < t_block + 0.08:  # the sound server pulls up to 80 ms ahead, in bursts
            timeline.add(*reads.pop(0))
        far = timeline.take(t_block, BLOCK)
        mic = echo[i * BLOCK:(i + 1) * BLOCK]
        cleaned.append(processor.process(Block(i, mic, t_block + BLOCK / RATE, (), t_block, far)).mic)
    out = np.concatenate(cleaned)[3 * RATE:]  # after the canceller has converged
    ref = echo[3 * RATE:len(out) + 3 * RATE]
    return 10 * np.log10(np.mean(np.square(out)) / np.mean(np.square(ref)))


def test_a_paced_reference_lets_the_real_canceller_remove_the_echo(speech):
    assert residual_db(speech) < -30.0


def test_after_an_underrun_the_next_chunk_starts_where_its_timestamp_says():
    timeline = FarTimeline(RATE, lead_s=0.0)
    timeline.add(10.0, np.ones(BLOCK, np.float32))
    timeline.gap()  # the output callback saw an underflow: the 10 ms hole below is real, not jitter
    timeline.add(10.0 + BLOCK / RATE + 0.01, np.full(BLOCK, 2.0, np.float32))
    second = timeline.take(10.0 + BLOCK / RATE, BLOCK)
    hole = int(0.01 * RATE)
    assert not second[:hole].any() and (second[hole:] == 2.0).all()

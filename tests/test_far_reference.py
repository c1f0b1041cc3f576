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


def test_a_late_output_side_leaves_the_pairing_where_it_was():
    """The output side misses four reads (its thread did not get the CPU) and then catches up without an underrun:
    the four takes it missed are silence, and every other take holds the block it held before (no shift)."""
    played = np.arange(1, 60 * BLOCK + 1, dtype=np.float32)
    block = lambda j: played[j * BLOCK:(j + 1) * BLOCK]  # noqa: E731
    far, out, read = FarReference(RATE, cushion_s=2 * BLOCK / RATE), [], 0
    for _ in range(3):
        far.add(block(read))
        read += 1
    for i in range(40):
        reads = 0 if 10 <= i <= 13 else 5 if i == 14 else 1  # late for four takes, then it catches up at once
        for _ in range(reads):
            far.add(block(read))
            read += 1
        out.append(far.take(BLOCK))
    first = next(i for i, o in enumerate(out) if o.any())
    offset = int(out[first][0]) - 1 - first * BLOCK  # where in `played` the reference starts
    for i, o in enumerate(out[first:], first):
        expected = played[i * BLOCK + offset:(i + 1) * BLOCK + offset]
        assert np.array_equal(o, expected) or (not o.any() and 10 <= i <= 14), i
    assert sum(not o.any() for o in out[first:]) <= 4 and far.starved >= 1 and far._owed == 0


def test_the_silence_of_an_underrun_pays_what_a_late_output_side_owed():
    """Late by two takes, then the speaker reports it ran dry for three blocks: the reference holds three blocks
    of silence in all (the two already given out and one more), then the next samples, in their place."""
    far = FarReference(RATE, cushion_s=0.0)
    far.add(np.ones(BLOCK, np.float32))
    out = [far.take(BLOCK), far.take(BLOCK), far.take(BLOCK)]  # the second and third find nothing
    far.gap(3 * BLOCK / RATE)
    far.add(np.full(2 * BLOCK, 2.0, np.float32))
    out += [far.take(BLOCK), far.take(BLOCK), far.take(BLOCK)]
    assert (out[0] == 1.0).all() and not any(o.any() for o in out[1:4])
    assert (out[4] == 2.0).all() and (out[5] == 2.0).all() and far.starved == 2


def test_a_debt_never_paid_is_forgiven_and_the_reference_is_whole_again():
    """The speaker went silent for 100 samples without an underrun being reported: from then on every take finds
    100 samples too few. The debt is forgiven once (that silence was played) and the takes are whole again."""
    far = FarReference(RATE, cushion_s=0.0, forgive_s=2 * BLOCK / RATE)
    far.add(np.ones(BLOCK, np.float32))
    out = [far.take(BLOCK)]
    far.add(np.ones(BLOCK - 100, np.float32))
    for _ in range(12):
        out.append(far.take(BLOCK))
        far.add(np.ones(BLOCK, np.float32))
    assert far.forgiven == 1 and far._owed == 0
    assert all(o.all() for o in out[-8:])  # no silence left in the reference: it holds what the speaker played


def test_a_reported_underrun_counts_only_the_silence_not_given_out_yet():
    """The output side stops for five takes; the first three (past the forgiving time) are forgiven as silence;
    then the underrun is reported, all five takes long: the next samples come at once, in their place."""
    far = FarReference(RATE, cushion_s=0.0, forgive_s=2 * BLOCK / RATE)
    far.add(np.ones(BLOCK, np.float32))
    out = [far.take(BLOCK) for _ in range(6)]
    far.gap(5 * BLOCK / RATE)
    far.add(np.full(BLOCK, 2.0, np.float32))
    out.append(far.take(BLOCK))
    assert far.forgiven == 1 and (out[0] == 1.0).all() and not any(o.any() for o in out[1:6])
    assert (out[6] == 2.0).all() and far._count == 0


def test_an_underrun_is_silence_in_the_reference():
    far = FarReference(RATE, cushion_s=0.0)
    far.add(np.ones(BLOCK, np.float32))
    far.gap(0.01)  # the speaker ran dry for 10 ms
    far.add(np.full(BLOCK, 2.0, np.float32))
    out = np.concatenate([far.take(BLOCK) for _ in range(3)])
    hole = int(0.01 * RATE)
    assert (out[:BLOCK] == 1.0).all() and not out[BLOCK:BLOCK + hole].any()
    assert (out[BLOCK + hole:2 * BLOCK + hole] == 2.0).all()


def test_a_microphone_side_catching_up_after_a_stall_gets_every_sample():
    """The input thread stalls for 0.8 s while the output side keeps reading; then the buffered microphone blocks
    come all at once: each takes its own samples, nothing is dropped."""
    played = np.arange(1, 80 * BLOCK + 1, dtype=np.float32)
    far, out = FarReference(RATE, cushion_s=BLOCK / RATE), []
    far.add(played[:2 * BLOCK])
    out.append(far.take(BLOCK))
    far.add(played[2 * BLOCK:27 * BLOCK])  # 25 blocks (0.8 s) read while nothing was taken
    out += [far.take(BLOCK) for _ in range(25)]
    assert far.dropped == 0 and np.array_equal(np.concatenate(out), played[:26 * BLOCK])


def test_drifting_clocks_cost_a_counted_correction_and_bounded_memory():
    far = FarReference(RATE, cushion_s=0.04, max_s=0.2)
    for _ in range(200):  # the speaker's clock runs 10 % faster than the microphone's
        far.add(np.ones(BLOCK + BLOCK // 10, np.float32))
        far.take(BLOCK)
    assert far.dropped > 0 and far._count <= 0.2 * RATE + BLOCK
    starving = FarReference(RATE, cushion_s=0.0)
    for _ in range(20):  # ... or slower: a little silence at each take, nothing piles up
        starving.add(np.ones(BLOCK - BLOCK // 8, np.float32))
        starving.take(BLOCK)
    assert starving.starved >= 2 and starving._count < 2 * BLOCK and starving._owed < 2 * BLOCK


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

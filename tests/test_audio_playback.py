"""The playback buffer knows what was played, per turn; the headless device keeps input and output on one clock."""
from __future__ import annotations

import time

import numpy as np

from app.audio.headless import HeadlessDuplex, array_source
from app.audio.playback import PlaybackBuffer


def test_reads_report_first_audio_offset_and_progress():
    buf = PlaybackBuffer(16000)
    silence, notes = buf.read(512)
    assert not silence.any() and notes == []
    assert buf.push(3, np.ones(800, np.float32), 16000) == 0.05
    assert buf.lead_s() == 0.05
    out, notes = buf.read(512)
    assert out.all() and len(notes) == 1
    assert notes[0].turn == 3 and notes[0].first and notes[0].offset == 0 and not notes[0].drained
    out, notes = buf.read(512)
    assert out[:288].all() and not out[288:].any()
    assert not notes[0].first and notes[0].drained and notes[0].played_s == 0.05
    assert buf.lead_s() == 0


def test_resamples_to_the_device_rate():
    buf = PlaybackBuffer(16000)
    assert abs(buf.push(1, np.zeros(22050, np.float32), 22050) - 1.0) < 1e-3


def test_flush_drops_only_the_unplayed_audio_of_that_turn():
    buf = PlaybackBuffer(16000)
    buf.push(1, np.ones(1000, np.float32), 16000)
    buf.push(2, np.ones(1000, np.float32), 16000)
    buf.read(400)
    assert buf.flush(1) == 600 / 16000
    assert buf.played_s(1) == 400 / 16000
    out, notes = buf.read(400)
    assert [n.turn for n in notes] == [2] and notes[0].first and out.all()
    assert buf.flush() == 600 / 16000 and buf.lead_s() == 0


def test_headless_device_runs_at_real_time_and_records_one_clock():
    rate, block = 16000, 512
    buf = PlaybackBuffer(rate)
    signal = np.zeros(rate // 2, np.float32)
    blocks = []

    def on_block(b):
        blocks.append(b)
        if b.index == 3:
            buf.push(0, np.full(block, 0.5, np.float32), rate)  # read by the next callback

    dev = HeadlessDuplex(array_source(signal), buf, rate, block)
    start = time.perf_counter()
    dev.start(on_block)
    assert dev.input_over.wait(5)
    dev.stop()
    elapsed = time.perf_counter() - start
    assert elapsed >= 0.45  # half a second of input took about half a second
    first = next(b for b in blocks if b.notes)
    assert first.index == 4 and first.notes[0].first
    rec = dev.recording()
    onset = int(np.argmax(rec[:, 1] > 0))
    # the waveform onset and the reported playback time are the same instant on the block clock
    assert abs(dev.clock.sample_time(onset) - first.t_out) < 1e-9


def test_pause_holds_audio_and_resume_goes_on_where_it_stopped():
    buf = PlaybackBuffer(16000)
    buf.push(1, np.arange(1, 1001, dtype=np.float32) / 1000, 16000)
    buf.read(100)
    buf.pause()
    out, notes = buf.read(100)
    assert not out.any() and notes == [] and buf.lead_s() == 900 / 16000
    buf.resume()
    out, _ = buf.read(1)
    assert out[0] == np.float32(101 / 1000)

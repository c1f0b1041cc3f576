"""Whisper (tiny.en, CTranslate2 int8 through faster-whisper) as a quasi-streaming recognizer.

Whisper is not streaming, so the work is spread over the utterance: `accept()` only buffers audio and tracks
frame energy; `step()` (run by the caller at VAD pauses or every ~1 s of new audio) decodes once: either the
audio up to the last pause, which becomes committed text that is never decoded again, or the whole undecoded
tail, whose hypothesis is the partial. `finish()` then decodes only what no step has covered yet (nothing at
all when the last step ran after the user went quiet). That machinery lives in `SegmentedRecognizer`, which
other window-decoding models (Moonshine) share.

Two measures keep each decode cheap and robust:
- the encoder runs on the decoded window only (plus 0.3 s), not on Whisper's fixed 30 s; the encoder output
  is spliced onto a cached encoding of 30 s of silence, so the decoder sees what it was trained on (feeding
  the short encoding alone makes tiny.en loop; the splice keeps the 30 s window's WER at a fraction of the cost);
- each window is level-normalised (robust peak to -6 dBFS, at most +30 dB) so quiet speakers are not dropped;
  a DC offset (cheap microphones) is ignored: frame energies are variances, and a window's mean above -60 dBFS
  is removed.

Offline (`transcribe()`, `cadence transcribe`) a recording of any length is cut at pauses into windows of at most
`OFFLINE_SEGMENT_S`: a quiet sentence next to loud ones in one long window is easily dropped, and shorter windows
decode no slower in total (10 minutes of speech: about 85 decodes, 17-20 s on 2 cores, WER 5 % vs 13 % with
15 s windows).
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Self

import numpy as np

from engines.protocols import SAMPLE_RATE

FRAME = 320  # 20 ms energy frames
TAIL_BELOW_SPEECH_DB = 40.0  # quieter than this under the speech level, audio after a decode is no new speech
_PAD_S = 0.3  # silence after a window before encoding
_MIN_ENCODE_S = 8.0  # shorter windows are padded with silence to this length before encoding
_MAX_WINDOW_S = 29.0  # Whisper's window is 30 s
OFFLINE_SEGMENT_S = 10.0  # the longest window `transcribe()` decodes at once


class SegmentedRecognizer:
    """Recognizer protocol for models that decode whole windows: buffering, pause finding, committed text and
    the tail hypothesis. Subclasses implement `_recognise(window)`; `step()`, `wants_step()`, `transcribe()`."""

    name: str = "segmented"

    def __init__(self, *, step_s: float = 1.0, min_pause_s: float = 0.3, max_segment_s: float = 20.0) -> None:
        self.step_s, self.min_pause_s = step_s, min_pause_s
        self.max_segment_s = min(max_segment_s, _MAX_WINDOW_S)
        self.start()

    def _recognise(self, window: np.ndarray) -> str:
        """Text of one level-normalised window (at most `max_segment_s`); may use `self._committed`."""
        raise NotImplementedError

    def fork(self) -> Self:
        """A twin for another conversation: the same model, its own utterance."""
        twin = copy.copy(self)
        twin.start()
        return twin

    # ---- Recognizer protocol ---------------------------------------------------------------------------

    def start(self) -> None:
        """Forget the previous utterance."""
        self._buffer = np.zeros(30 * SAMPLE_RATE, np.float32)  # grows by doubling; audio is _buffer[:_n]
        self._n = 0
        self._frame_db: list[float] = []
        self._committed: list[str] = []
        self._commit_at = 0  # audio before this sample is committed text
        self._tail_text, self._tail_end = "", None  # hypothesis for audio[_commit_at:_tail_end]
        self._decoded_to = 0  # end of the last decode (commit or tail)
        self.decodes = 0  # decodes run in this utterance (for tests and metrics)

    def accept(self, chunk: np.ndarray) -> None:
        """Buffer 16 kHz float32 audio (any chunk size); no decoding."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if self._n + chunk.size > len(self._buffer):
            grown = np.zeros(max(2 * len(self._buffer), self._n + chunk.size), np.float32)
            grown[: self._n] = self._buffer[: self._n]
            self._buffer = grown
        self._buffer[self._n:self._n + chunk.size] = chunk
        self._n += chunk.size

    def partial(self) -> str:
        """Committed text plus the latest hypothesis for the rest (no decoding)."""
        return " ".join(self._committed + ([self._tail_text] if self._tail_text else []))

    def finish(self) -> str:
        """Final text of the utterance: decodes only when speech arrived that no step has covered."""
        self._gather()
        covered = self._tail_end if self._tail_end is not None else self._commit_at
        if self._has_speech(covered, len(self._audio)):
            self._decode_tail()
        return self.partial()

    # ---- stepping ------------------------------------------------------------------------------------------

    @property
    def buffered_s(self) -> float:
        """Seconds of audio accepted in this utterance."""
        return self._n / SAMPLE_RATE

    @property
    def committed_s(self) -> float:
        """Seconds of audio whose text is committed (never decoded again)."""
        return self._commit_at / SAMPLE_RATE

    def wants_step(self) -> bool:
        """Whether a step is due: at least `step_s` of audio arrived since the last decode."""
        self._gather()
        return len(self._audio) - self._decoded_to >= self.step_s * SAMPLE_RATE

    def step(self) -> bool:
        """One bounded decode (at most `max_segment_s` of audio): commit the text up to the last pause, or
        else refresh the partial hypothesis. Returns False when no new audio needed decoding (none, or only quiet
        audio after the last decode: at the onset of a pause the text is then ready at once)."""
        self._gather()
        if len(self._audio) <= self._decoded_to:
            return False
        covered = self._tail_end if self._tail_end is not None else self._commit_at
        if not self._any_speech(covered, len(self._audio)):
            self._decoded_to = len(self._audio)  # only quiet since the last decode (a pause): the hypothesis stands
            return False  # (a commit can wait for the next speech)
        cut = self._commit_point()
        if cut is not None:
            self._commit(cut)
        else:
            self._decode_tail()
        return True

    def transcribe(self, audio: np.ndarray) -> str:
        """Offline: a whole 16 kHz recording of any length, committed window by window (at most
        `OFFLINE_SEGMENT_S` each, cut at pauses), without copying it."""
        self.start()
        self._buffer = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)  # accept() would copy it
        self._n = len(self._buffer)
        self._gather()
        saved, self.max_segment_s = self.max_segment_s, min(self.max_segment_s, OFFLINE_SEGMENT_S)
        try:
            while (cut := self._commit_point()) is not None:
                self._commit(cut)
            return self.finish()
        finally:
            self.max_segment_s = saved

    # ---- internals ---------------------------------------------------------------------------------------

    @property
    def _audio(self) -> np.ndarray:
        return self._buffer[: self._n]

    def _gather(self) -> None:
        """Frame energies for the audio accepted since the last call."""
        done = len(self._frame_db) * FRAME
        count = (len(self._audio) - done) // FRAME
        if count > 0:
            frames = self._audio[done:done + count * FRAME].reshape(count, FRAME)
            self._frame_db.extend((10.0 * np.log10(np.var(frames, axis=1) + 1e-12)).tolist())  # no DC

    def _levels(self) -> tuple[float, float]:
        """(noise floor, speech level) of the utterance so far, in dB."""
        floor, speech = np.percentile(np.asarray(self._frame_db), [10, 95])
        return max(float(floor), -80.0), float(speech)

    def _threshold(self) -> float:
        """Energy threshold (dB) between the utterance's noise floor and its speech level."""
        floor, speech = self._levels()
        return max(floor + 0.3 * (speech - floor), floor + 6.0, -60.0)  # steady noise is not speech

    def _has_speech(self, start: int, end: int) -> bool:
        """At least 0.1 s of frames above the threshold in audio[start:end]."""
        db = np.asarray(self._frame_db[start // FRAME:end // FRAME])
        return db.size > 0 and int((db > self._threshold()).sum()) * FRAME >= 0.1 * SAMPLE_RATE

    def _any_speech(self, start: int, end: int) -> bool:
        """Any frame in audio[start:end] above the threshold and within `TAIL_BELOW_SPEECH_DB` of the utterance's
        speech level (stricter than `_has_speech`: a word's last syllable after a decode is speech; the faint
        decay after the last word, which the threshold over a digitally silent floor would count, is not)."""
        db = np.asarray(self._frame_db[-(-start // FRAME):end // FRAME])  # frames wholly after `start`
        if db.size == 0:
            return False
        speech = self._levels()[1]
        return bool((db > max(self._threshold(), speech - TAIL_BELOW_SPEECH_DB)).any())

    def _commit_point(self) -> int | None:
        """Where committed text can end: the middle of the last pause (>= min_pause_s, after speech) within
        `max_segment_s` of the commit point; or, after `max_segment_s` without a pause, the quietest frame of
        the window's second half. None when neither exists yet."""
        first = self._commit_at // FRAME
        last = min(len(self._frame_db), first + int(self.max_segment_s * SAMPLE_RATE) // FRAME)
        need = max(1, int(self.min_pause_s * SAMPLE_RATE) // FRAME)
        if last - first <= need:
            return None
        db = np.asarray(self._frame_db[first:last])
        quiet = (db <= self._threshold()).astype(np.int8)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet, [0]])))
        for s, e in reversed(list(zip(edges[::2], edges[1::2]))):
            if e - s >= need and (1 - quiet[:s]).sum() * FRAME >= 0.1 * SAMPLE_RATE:
                return int(first + (s + e) // 2) * FRAME
        if len(self._audio) - self._commit_at > self.max_segment_s * SAMPLE_RATE:
            half = len(db) // 2
            return int(first + half + int(np.argmin(db[half:]))) * FRAME
        return None

    def _commit(self, cut: int) -> None:
        text = self._decode(self._commit_at, cut) if self._has_speech(self._commit_at, cut) else ""
        if text:
            self._committed.append(text)
        self._commit_at = cut
        self._decoded_to = max(self._decoded_to, cut)
        self._tail_text, self._tail_end = "", None

    def _decode_tail(self) -> None:
        n = len(self._audio)
        while n - self._commit_at > self.max_segment_s * SAMPLE_RATE:  # steps were starved: bound the window
            cut = self._commit_point()
            assert cut is not None, "past max_segment_s the window's quietest frame is a commit point"
            self._commit(cut)
        text = self._decode(self._commit_at, n) if self._has_speech(self._commit_at, n) else ""
        self._tail_text, self._tail_end = text, n
        self._decoded_to = n

    def _decode(self, start: int, end: int) -> str:
        self.decodes += 1
        window = self._audio[start:end]
        offset = float(window.mean(dtype=np.float64)) if window.size else 0.0
        if abs(offset) > 1e-3:  # a DC offset would eat the level normalisation's headroom
            window = window - np.float32(offset)
        return self._recognise(normalise_level(window))


class WhisperRecognizer(SegmentedRecognizer):
    """Whisper through faster-whisper's CTranslate2 model, with the encoder run on the window only."""

    def __init__(self, model_dir: str | Path, threads: int = 2, *, name: str = "whisper-tiny.en",
                 beam_size: int = 1, condition: bool = True, **kw) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.name = name
        self.beam_size, self.condition = beam_size, condition
        self._model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads,
                                   num_workers=1, local_files_only=True)
        self._ct2 = self._model.model
        self._features = self._model.feature_extractor
        multilingual = bool(getattr(self._model.model, "is_multilingual", False))
        self._tok = Tokenizer(self._model.hf_tokenizer, multilingual, task="transcribe",
                              language="en" if multilingual else None)
        self._silence = self._encode(np.zeros(30 * SAMPLE_RATE, np.float32))  # [1, 1500, d]
        super().__init__(**kw)

    @classmethod
    def from_catalog(cls, model_id: str = "whisper-tiny.en", **kw) -> WhisperRecognizer:
        from engines import store

        return cls(store.ensure(model_id).directory, name=model_id, **kw)

    def _encode(self, audio: np.ndarray) -> np.ndarray:
        """Encoder output [1, frames / 2, d] for 16 kHz audio of any length up to 30 s."""
        import ctranslate2

        feats = self._features(audio, padding=0)[:, : len(audio) // 160]
        feats = np.ascontiguousarray(feats[None, :, : feats.shape[1] - feats.shape[1] % 2])
        return np.array(self._ct2.encode(ctranslate2.StorageView.from_array(feats), to_cpu=True))

    def _recognise(self, audio: np.ndarray) -> str:
        """Text of one window (at most 30 s), with the committed text as context."""
        pad = max(int(_PAD_S * SAMPLE_RATE), int(_MIN_ENCODE_S * SAMPLE_RATE) - len(audio))
        enc = self._encode(np.concatenate([audio, np.zeros(pad, np.float32)]))
        spliced = self._silence.copy()
        spliced[:, : enc.shape[1]] = enc[:, : spliced.shape[1]]
        text, looped = self._generate(spliced, len(audio) / SAMPLE_RATE)
        if looped:  # rare: fall back to Whisper's own 30 s window
            full = np.zeros(30 * SAMPLE_RATE, np.float32)
            full[: len(audio)] = audio[: len(full)]
            text, _ = self._generate(self._encode(full), len(audio) / SAMPLE_RATE)
        return text

    def _generate(self, encoded: np.ndarray, seconds: float) -> tuple[str, bool]:
        """Greedy (or small-beam) decoding; returns (text, whether it ran away into repetition)."""
        import ctranslate2

        prompt: list[int] = []
        if self.condition and self._committed:
            prompt = [self._tok.sot_prev] + self._tok.encode(" " + " ".join(self._committed))[-100:]
        prompt += list(self._tok.sot_sequence) + [self._tok.no_timestamps]
        plausible = int(12 + 6 * seconds)  # speech runs at about 3 tokens/s; far more is a loop
        max_length = min(448, len(prompt) + 2 * plausible + 4)  # (CTranslate2 counts the prompt in it)
        result = self._ct2.generate(ctranslate2.StorageView.from_array(encoded), [prompt],
                                    beam_size=self.beam_size, max_length=max_length, suppress_blank=True,
                                    suppress_tokens=[-1], return_no_speech_prob=True, return_scores=True)[0]
        tokens = [t for t in result.sequences_ids[0] if t < self._tok.eot]
        if result.no_speech_prob > 0.6 and result.scores[0] < -1.0:  # scores: mean log-prob per token
            return "", False
        text = self._tok.decode(tokens).strip()
        return text, len(tokens) > plausible or repetitive(text)


def repetitive(text: str) -> bool:
    """A decoding loop: some run of 1-6 words repeated 3+ times in a row, covering 8+ words."""
    words = re.sub(r"[^\w\s]", " ", text.lower()).split()
    for n in range(1, 7):
        for i in range(len(words) - 3 * n + 1):
            k = 1
            while words[i + k * n:i + (k + 1) * n] == words[i:i + n]:
                k += 1
            if k >= 3 and k * n >= 8:
                return True
    return False


def normalise_level(audio: np.ndarray, target: float = 0.5, max_gain: float = 31.6) -> np.ndarray:
    """Scale so the robust peak (99.9th percentile of |x|) is `target`; never more than `max_gain` (+30 dB)."""
    if audio.size == 0:
        return audio.astype(np.float32)
    peak = float(np.percentile(np.abs(audio), 99.9))
    gain = min(target / max(peak, 1e-9), max_gain)
    return np.clip(audio * gain, -1.0, 1.0).astype(np.float32)

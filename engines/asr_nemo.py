"""NeMo cache-aware streaming ASR (Nemotron Speech Streaming, Parakeet streaming: FastConformer RNNT or hybrid
RNNT/CTC) as a true streaming recognizer.

`accept()` turns audio into log-mel frames incrementally with the model's own preprocessor, run on short
overlapping segments so each frame equals the frame of the whole utterance (same STFT window, pre-emphasis and
padding), then cuts the frames into encoder chunks exactly as NeMo's `CacheAwareStreamingAudioBuffer` does
(first chunk 1 + 8*lookahead frames, then 8*(lookahead+1) frames with 8+1 frames of pre-encode cache, for 8x
subsampling) and runs `conformer_stream_step` once per chunk, carrying the encoder caches and the decoder
hypothesis. `finish()` appends synthetic silence (default: two chunks, 320 ms at 160 ms chunks) so the last
words come out, flushes the remaining frames and returns the final text.

Compute: with `inline=True` (default) `accept()` runs every ready chunk itself (one bounded step per 160 ms of
audio); with `inline=False` it only buffers and makes frames (< 1 ms), and the caller runs `step()` (one chunk)
while `wants_step()` is true. NeMo is imported only when a recognizer is built (6-24 s)."""
from __future__ import annotations

import copy
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from engines.protocols import SAMPLE_RATE
from engines.store import ModelError

CATALOG_ID = "nemotron-speech-streaming-0.6b"
_NO_NORMALIZE = (None, False, "NA", "na", "None", "none", "")


def _pick(value: Any, first: bool) -> int:
    """NeMo's streaming settings are either an int or [first step, later steps]."""
    return int(value[0] if first else value[1]) if isinstance(value, (list, tuple)) else int(value)


class NemoStreamingRecognizer:
    """Recognizer protocol over a cache-aware streaming `.nemo`; also `step()`, `wants_step()`, `steps`."""

    def __init__(self, nemo_path: str | Path, chunk_ms: int = 160, device: str | None = None, *,
                 name: str = "nemo-streaming", pad_ms: int | None = None, decoder: str = "rnnt",
                 inline: bool = True, threads: int | None = 1, quiet: bool = True) -> None:
        """chunk_ms: one of the model's lookaheads ((right context + 1) x 80 ms; Nemotron: 80/160/560/1120);
        device: "cuda" when available, else "cpu"; pad_ms: silence added by finish() (default two chunks);
        decoder: "rnnt", or "ctc" for hybrid models; inline: accept() runs ready chunks itself (else call
        step()); threads: torch CPU threads (process-wide; None leaves torch's setting); quiet: NeMo logs
        errors only."""
        path = Path(nemo_path).expanduser()
        label = f"NeMo model {str(path)!r}"
        if not path.is_file() or not tarfile.is_tarfile(path):
            raise ModelError(label, "is not a NeMo .nemo archive" if path.is_file() else "does not exist",
                             "point models.asr_path at a cache-aware streaming .nemo file")
        import torch
        from nemo.collections.asr.models import ASRModel
        from nemo.collections.asr.parts.mixins.streaming import StreamingEncoder

        if quiet:
            from nemo.utils import logging as nemo_logging

            nemo_logging.setLevel(nemo_logging.ERROR)
        self.name, self.inline = name, inline
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.asynchronous = self.device.type == "cuda"  # see DeviceSynchronized
        if threads and self.device.type == "cpu":  # process-wide; 2 threads on 2 busy cores ran ~10x slower
            torch.set_num_threads(threads)
        try:  # Any: NeMo's models are torch Modules whose attributes (encoder, cfg, ...) are dynamic
            model: Any = ASRModel.restore_from(str(path), map_location=self.device)
        except Exception as exc:  # NeMo raises many types for a bad archive; all mean "unusable file"
            raise ModelError(label, f"cannot be loaded by NeMo ({type(exc).__name__}: {exc})",
                             "use a .nemo exported by NeMo (e.g. nvidia/nemotron-speech-streaming-en-0.6b)"
                             ) from None
        enc = getattr(model, "encoder", None)
        if not isinstance(enc, StreamingEncoder) or getattr(enc, "att_context_style", "") != "chunked_limited":
            raise ModelError(label, "is not a cache-aware streaming model (no chunked-limited streaming encoder)",
                             "use a cache-aware streaming FastConformer (Nemotron Speech / Parakeet streaming)")
        model.eval()
        self.model: Any = model
        self._set_chunk(chunk_ms, label)
        self._set_decoder(decoder)
        self._setup_features(label)
        # (right_context + 1) x 2 x subsampling x 10 ms = two chunks: the reference's 320 ms at 160 ms chunks
        self.pad_ms = 2 * self.chunk_ms if pad_ms is None else int(pad_ms)
        self.start()

    @classmethod
    def from_catalog(cls, model_id: str = CATALOG_ID, **kw: Any) -> NemoStreamingRecognizer:
        """Load a catalog model through the store (verified file; ModelError when missing or corrupt)."""
        from engines.store import ensure

        files = ensure(model_id)
        if files.entry.kind != "asr" or files.entry.engine != "nemo":
            raise ValueError(f"{model_id!r} is a {files.entry.kind}/{files.entry.engine} model, not a NeMo ASR model")
        kw.setdefault("name", model_id)
        return cls(files.file(), **kw)

    @classmethod
    def from_user_file(cls, path: str | Path, **kw: Any) -> NemoStreamingRecognizer:
        """Load the user's `.nemo` (config key models.asr_path) after `check_user_file` accepted it."""
        from engines.user_files import check_user_file

        p = check_user_file("asr", path)
        kw.setdefault("name", p.stem)
        return cls(p, **kw)

    # ---- setup -----------------------------------------------------------------------------------------------

    def _set_chunk(self, chunk_ms: int, label: str) -> None:
        enc = self.model.encoder
        self.subsampling = int(enc.subsampling_factor)
        stride_ms = round(float(self.model.cfg.preprocessor.get("window_stride", 0.01)) * 1000)
        frame_ms = self.subsampling * stride_ms  # one encoder frame: 80 ms for 8x subsampling of 10 ms frames
        options = [list(a) for a in getattr(enc, "att_context_size_all", None) or [enc.att_context_size]]
        supported = sorted({(a[1] + 1) * frame_ms for a in options})
        match = [a for a in options if (a[1] + 1) * frame_ms == chunk_ms]
        if not match:
            raise ValueError(f"{label} streams in chunks of {supported} ms, not {chunk_ms} ms")
        enc.set_default_att_context_size(match[0])
        self.chunk_ms, self.att_context_size = int(chunk_ms), match[0]
        self.right_context = int(match[0][1])
        self.cfg = enc.streaming_cfg
        frames = enc.pre_encode.get_sampling_frames() if hasattr(enc.pre_encode, "get_sampling_frames") else 1
        self._min_frames = (_pick(frames, True), _pick(frames, False))

    def _set_decoder(self, decoder: str) -> None:
        from omegaconf import open_dict

        m = self.model
        hybrid = hasattr(m, "cur_decoder")
        if decoder not in ("rnnt", "ctc") or (decoder == "ctc" and not hybrid and hasattr(m, "joint")):
            raise ValueError(f"decoder must be 'rnnt' or (for hybrid models) 'ctc', not {decoder!r}")
        if decoder == "ctc" and hybrid:
            cfg = copy.deepcopy(m.cfg.aux_ctc.decoding)
        elif hasattr(m, "joint"):
            cfg = copy.deepcopy(m.cfg.decoding)
            with open_dict(cfg):
                if not str(cfg.get("strategy", "greedy_batch")).startswith("greedy"):
                    cfg.strategy = "greedy_batch"  # streaming carries one partial hypothesis: greedy only
                cfg.fused_batch_size = -1
        else:
            cfg = copy.deepcopy(m.cfg.decoding)
        if hybrid:
            m.change_decoding_strategy(cfg, decoder_type=decoder)
        else:
            m.change_decoding_strategy(cfg)
        self.decoder = decoder if hybrid else ("rnnt" if hasattr(m, "joint") else "ctc")

    def _setup_features(self, label: str) -> None:
        from omegaconf import open_dict

        cfg = copy.deepcopy(self.model.cfg.preprocessor)
        if cfg.get("normalize", "NA") not in _NO_NORMALIZE:
            raise ModelError(label, f"normalises features over the whole utterance ({cfg.normalize}), so it "
                             "cannot stream", "use a cache-aware streaming model (trained with normalize: NA)")
        with open_dict(cfg):
            cfg.dither, cfg.pad_to = 0.0, 0
        self._pre = self.model.from_config_dict(cfg).to(self.device).eval()
        fz = self._pre.featurizer
        self.hop = int(fz.hop_length)
        n_fft = int(fz.n_fft)
        left = int(fz.stft_pad_amount) if fz.stft_pad_amount is not None else n_fft // 2  # zeros before sample 0
        self._reach = n_fft - left  # frame t uses samples [t*hop - left, t*hop + reach)
        self._lead = -(-(left + 1) // self.hop)  # frames of a segment that touch its edge (padding, pre-emphasis)

    def synchronize(self) -> None:
        """Wait for this recognizer's GPU work (a no-op on the CPU)."""
        if self.asynchronous:
            import torch

            torch.cuda.synchronize(self.device)

    # ---- Recognizer protocol ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Forget the previous utterance: fresh caches, no hypothesis."""
        import torch

        enc = self.model.encoder
        self._cache = list(enc.get_initial_cache_state(batch_size=1, dtype=torch.float32, device=self.device))
        self._hyps: Any = None
        self._pred_out: Any = None
        self._text = ""
        self._audio = np.zeros(0, np.float32)  # samples from _audio_at on (older ones are no longer needed)
        self._audio_at = 0
        self._samples = 0  # samples accepted (plus padding once finishing)
        self._frames = None  # feature frames from _frames_at on, torch [feat, T]
        self._frames_at = 0
        self._frames_done = 0  # frames computed so far
        self._next = 0  # first frame of the next encoder chunk
        self._final = False
        self.steps = 0  # encoder steps in this utterance
        self.step_seconds: list[float] = []

    def accept(self, chunk: np.ndarray) -> None:
        """Buffer audio (16 kHz mono float32), compute its frames and, when `inline`, run the ready chunks."""
        if self._final:
            raise RuntimeError("finish() was called: call start() before the next utterance")
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if chunk.size:
            self._append(chunk)
            self._extract(final=False)
        while self.inline and self.step():
            pass

    def partial(self) -> str:
        """The hypothesis so far (no compute)."""
        return self._text

    def finish(self) -> str:
        """Pad `pad_ms` of silence, run every remaining chunk (the last one may be short) and return the text."""
        if not self._final:
            if self._samples:
                self._append(np.zeros(self.pad_ms * SAMPLE_RATE // 1000, np.float32))
            self._extract(final=True)
            self._final = True
        while self.step():
            pass
        return self._text

    # ---- stepping --------------------------------------------------------------------------------------------

    def wants_step(self) -> bool:
        """Whether a chunk of frames is ready for `step()`."""
        return self._chunk_bounds() is not None

    def step(self) -> bool:
        """Run one encoder chunk through `conformer_stream_step`; False when no chunk is ready."""
        bounds = self._chunk_bounds()
        if bounds is None:
            return False
        import torch

        first = self.steps == 0
        size, shift = bounds
        pre = _pick(self.cfg.pre_encode_cache_size, first)
        lo, hi = self._next - pre, self._next + size
        assert self._frames is not None, "a ready chunk means frames were extracted"
        feats = self._frames[:, max(lo, 0) - self._frames_at: hi - self._frames_at]
        if lo < 0:  # not enough history for the pre-encode cache: zeros, as NeMo's buffer does
            feats = torch.cat([feats.new_zeros(feats.shape[0], -lo), feats], dim=1)
        keep_all = self._final and self._next + shift >= self._frames_done
        t0 = time.perf_counter()
        with torch.inference_mode():
            length = torch.tensor([feats.shape[1]], device=self.device)
            out = self.model.conformer_stream_step(
                processed_signal=feats[None], processed_signal_length=length, cache_last_channel=self._cache[0],
                cache_last_time=self._cache[1], cache_last_channel_len=self._cache[2],
                keep_all_outputs=keep_all, previous_hypotheses=self._hyps, previous_pred_out=self._pred_out,
                drop_extra_pre_encoded=0 if first else self.cfg.drop_extra_pre_encoded, return_transcription=True)
        self._pred_out, texts, c_ch, c_t, c_len, self._hyps = out[:6]
        self._cache = [c_ch, c_t, c_len]
        self.step_seconds.append(time.perf_counter() - t0)
        text = texts[0] if texts else ""
        self._text = str(getattr(text, "text", text) or "").strip()
        self._next += shift
        self.steps += 1
        self._trim_frames()
        return True

    @property
    def cache(self) -> tuple:
        """The encoder's streaming state (cache_last_channel, cache_last_time, cache_last_channel_len)."""
        return tuple(self._cache)

    # ---- internals -------------------------------------------------------------------------------------------

    def _chunk_bounds(self) -> tuple[int, int] | None:
        """(size, shift) of the next chunk when its frames are ready; at the end a short chunk is allowed."""
        first = self.steps == 0
        size, shift = _pick(self.cfg.chunk_size, first), _pick(self.cfg.shift_size, first)
        have = self._frames_done - self._next
        if have >= size:
            return size, shift
        if self._final and have >= max(1, self._min_frames[0 if first else 1]):
            return have, shift
        return None

    def _append(self, samples: np.ndarray) -> None:
        self._audio = np.concatenate([self._audio, samples])
        self._samples += samples.size

    def _extract(self, final: bool) -> None:
        """Compute every frame whose samples are all here (at the end: all frames, with NeMo's end padding)."""
        import torch

        n, hop = self._samples, self.hop
        if final:
            t1 = int(self._pre.featurizer.get_seq_len(torch.tensor([n]))[0]) if n else 0
        else:
            t1 = (n - self._reach) // hop + 1 if n >= self._reach else 0
        t0 = self._frames_done
        if t1 <= t0:
            return
        skip = t0 if t0 < self._lead else self._lead  # frames before the wanted ones in the segment
        start = (t0 - skip) * hop
        end = n if final else (t1 - 1) * hop + self._reach
        seg = self._audio[start - self._audio_at: end - self._audio_at]
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(seg)).to(self.device)[None]
            feats, lengths = self._pre(input_signal=x, length=torch.tensor([seg.size], device=self.device))
        new = feats[0, :, skip: skip + (t1 - t0)]
        if new.shape[1] != t1 - t0 or int(lengths[0]) < skip + (t1 - t0):
            raise RuntimeError(f"feature framing mismatch: wanted {t1 - t0} frames, got {new.shape[1]}")
        self._frames = new if self._frames is None else torch.cat([self._frames, new], dim=1)
        self._frames_done = t1
        keep_from = max(0, (t1 - self._lead) * hop)  # the next segment starts here
        if keep_from > self._audio_at:
            self._audio = self._audio[keep_from - self._audio_at:]
            self._audio_at = keep_from

    def _trim_frames(self) -> None:
        keep_from = max(0, self._next - _pick(self.cfg.pre_encode_cache_size, False))
        if self._frames is not None and keep_from > self._frames_at:
            self._frames = self._frames[:, keep_from - self._frames_at:]
            self._frames_at = keep_from

"""Moonshine base-en (ONNX Runtime `.ort` weights from the `moonshine-cpp` package) as an optional recognizer,
run by `useful-moonshine-onnx`'s greedy decoder with Cadence's own CPU sessions (bounded threads).

Moonshine decodes whole windows like Whisper, so it shares Whisper's segmenting recognizer: steps commit the
text up to each pause, `finish()` decodes only the tail. Windows are kept short (10 s) because the model drops
long inputs. Catalog id `moonshine-base-en` (not a default: Whisper tiny.en is more accurate here)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.asr_whisper import SegmentedRecognizer
from engines.onnx_cpu import cpu_session
from engines.protocols import SAMPLE_RATE

CATALOG_ID = "moonshine-base-en"
TOKENS_PER_SECOND = 6.5  # the decoder's length budget, as Moonshine's authors suggest


class MoonshineRecognizer(SegmentedRecognizer):
    """Recognizer protocol over Moonshine; also `step()`, `wants_step()` and `transcribe()`."""

    def __init__(self, encoder: str | Path, decoder: str | Path, tokenizer: str | Path, threads: int = 2, *,
                 name: str = CATALOG_ID, max_segment_s: float = 10.0, **kw) -> None:
        try:
            import tokenizers
            from moonshine_onnx.model import MoonshineOnnxModel
        except ImportError as exc:
            raise ImportError(f"Moonshine needs useful-moonshine-onnx ({exc}): cadence models install "
                              f"{CATALOG_ID}") from None
        self.name = name
        model = object.__new__(MoonshineOnnxModel)  # its __init__ would open sessions with every core
        model.encoder, model.decoder = cpu_session(encoder, threads, True), cpu_session(decoder, threads, True)
        model.encoder_input_names = [x.name for x in model.encoder.get_inputs()]
        model.decoder_input_names = [x.name for x in model.decoder.get_inputs()]
        model.num_layers, model.num_key_value_heads, model.head_dim = 8, 8, 52  # base (tiny: 6, 8, 36)
        model.decoder_start_token_id, model.eos_token_id = 1, 2
        self._model = model
        self._tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer))
        super().__init__(max_segment_s=max_segment_s, **kw)

    @classmethod
    def from_catalog(cls, model_id: str = CATALOG_ID, **kw) -> MoonshineRecognizer:
        from engines import store

        files = store.ensure(model_id)
        return cls(files.file("encoder_model.ort"), files.file("decoder_model_merged.ort"),
                   files.file("tokenizer.json"), name=model_id, **kw)

    def _recognise(self, window: np.ndarray) -> str:
        seconds = len(window) / SAMPLE_RATE
        if seconds < 0.1:
            return ""
        tokens = self._model.generate(window[None, :].astype(np.float32),
                                      max_len=int(8 + TOKENS_PER_SECOND * seconds))[0]
        return self._tokenizer.decode(tokens, skip_special_tokens=True).strip()

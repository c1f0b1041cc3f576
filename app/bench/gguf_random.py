"""GGUF files of a real model's exact shape with random weights, for measuring speed where the real weights cannot
travel (a GPU machine reached through a 64 MiB carry): `cut_header` keeps a real file's header (metadata, tokenizer,
tensor list: a few MiB, gzipped), `rebuild` writes a file of the same size, types and layout from it, with random
quantized blocks whose scales are small and finite, so every matmul does real work on finite values. The weights'
values move llama.cpp's speed a little (measured on the CPU for Qwen 0.5B: 24.4 ms/token rebuilt, 29.7 real): say
so next to any figure. Needs the `gguf` package (PyPI, or llama.cpp's own `gguf-py`)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

# block bytes and the fp16 scale fields (byte offset in the block, value) of each quantized type llama.cpp uses
BLOCKS: dict[str, tuple[int, tuple[tuple[int, float], ...]]] = {
    "Q4_0": (18, ((0, 2e-3),)), "Q4_1": (20, ((0, 2e-3), (2, -1e-2))), "Q5_0": (22, ((0, 2e-3),)),
    "Q5_1": (24, ((0, 2e-3), (2, -1e-2))), "Q8_0": (34, ((0, 2e-4),)), "Q2_K": (84, ((80, 2e-3), (82, 1e-3))),
    "Q3_K": (110, ((108, 2e-3),)), "Q4_K": (144, ((0, 2e-3), (2, 1e-3))), "Q5_K": (176, ((0, 2e-3), (2, 1e-3))),
    "Q6_K": (210, ((208, 2e-4),)),
}
SPARSE_SIZE = 1 << 36  # the header alone, padded sparsely so the reader can map the (still empty) tensor data


def _reader(path: Path):
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ImportError("rebuilding a GGUF needs the gguf package: pip install gguf (or put llama.cpp's gguf-py "
                          "on PYTHONPATH)") from None
    return GGUFReader(path)


def cut_header(gguf_path: str | Path, out: str | Path) -> Path:
    """Write the gzipped header of `gguf_path` (everything before the tensor data) to `out`."""
    reader = _reader(Path(gguf_path))
    with open(gguf_path, "rb") as fh:
        head = fh.read(int(reader.data_offset))
    with gzip.open(out, "wb", compresslevel=9) as fh:
        fh.write(head)
    return Path(out)


def rebuild(header: str | Path, out: str | Path, seed: int = 0) -> Path:
    """A GGUF at `out` with the header's metadata and tensor layout and random tensor data."""
    out = Path(out)
    with gzip.open(header, "rb") as fh:
        head = fh.read()
    with open(out, "wb") as fh:
        fh.write(head)
        fh.truncate(SPARSE_SIZE)
    try:
        tensors = sorted(_reader(out).tensors, key=lambda t: int(t.data_offset))
        rng = np.random.default_rng(seed)
        with open(out, "r+b") as fh:
            for tensor in tensors:
                fh.seek(int(tensor.data_offset))
                fh.write(_random_data(tensor.tensor_type.name, int(tensor.n_bytes), "norm" in tensor.name, rng))
            fh.truncate()
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out


def _random_data(kind: str, n_bytes: int, is_norm: bool, rng: np.random.Generator) -> bytes:
    if kind == "F32":
        values = rng.standard_normal(n_bytes // 4, dtype=np.float32) * 0.02 + (1.0 if is_norm else 0.0)
        return values.astype(np.float32).tobytes()
    if kind in ("F16", "BF16"):
        return (rng.standard_normal(n_bytes // 2, dtype=np.float32) * 0.02).astype(np.float16).tobytes()
    if kind not in BLOCKS:
        raise ValueError(f"no random layout for tensor type {kind}")
    size, scales = BLOCKS[kind]
    blocks = rng.integers(0, 256, size=n_bytes, dtype=np.uint8).reshape(-1, size)
    for offset, value in scales:
        blocks[:, offset:offset + 2] = np.frombuffer(np.float16(value).tobytes(), np.uint8)
    return blocks.tobytes()

"""Builds a cache-aware streaming FastConformer transducer (RNNT, or hybrid RNNT+CTC) with random weights and saves
it as a `.nemo`, entirely offline: the SentencePiece tokenizer is trained on a few sentences at build time. The
architecture mirrors NeMo's cache-aware streaming configs (8x causal depthwise-striding subsampling, chunked-limited
attention with several lookaheads, causal convolutions, no feature normalisation). Two shapes: `tiny` (the tests'
plumbing model) and `nemotron-0.6b` (Nemotron Speech Streaming 0.6B's: 24 layers, d_model 1024, 8 heads, 128 mels,
a 2x640 LSTM prediction network; only the vocabulary is smaller, 48 pieces instead of 1024, ~0.6 M of ~600 M
parameters), for measuring step latency and memory (`cadence bench gpu`). The weights are random, so the text it
produces is meaningless."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {"d_model": 64, "n_layers": 2, "n_heads": 4, "features": 80, "sub_channels": 32, "ff": 2, "pred": 64,
             "pred_layers": 1, "joint": 64},
    "nemotron-0.6b": {"d_model": 1024, "n_layers": 24, "n_heads": 8, "features": 128, "sub_channels": 256, "ff": 4,
                      "pred": 640, "pred_layers": 2, "joint": 640},
}

CORPUS = [  # anything: the tokenizer of a random-weight model (kept apart from the speech fixtures' transcripts,
    # whose words the privacy tests look for in the logs)
    "the quick brown fox jumps over the lazy dog",
    "one two three four five six seven eight nine ten zero",
    "a small model with random weights measures speed and memory only",
    "streaming chunks arrive every eighty milliseconds from the encoder",
    "zebra quartz vixen jolly gnome wakes up before breakfast",
    "please keep every layer busy while the decoder waits for tokens",
]
LOOKAHEADS = [[70, 13], [70, 6], [70, 1], [70, 0]]  # like Nemotron Speech: 1120 / 560 / 160 / 80 ms chunks


def train_tokenizer(out_dir: Path, vocab_size: int = 48) -> Path:
    """A SentencePiece BPE model (`tokenizer.model`) trained on CORPUS in `out_dir`."""
    import sentencepiece as spm

    out_dir.mkdir(parents=True, exist_ok=True)
    text = out_dir / "corpus.txt"
    text.write_text("\n".join(CORPUS * 4) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(out_dir / "tokenizer"), vocab_size=vocab_size,
                                   model_type="bpe", character_coverage=1.0, bos_id=-1, eos_id=-1,
                                   minloglevel=2)
    pieces = [line.split("\t")[0] for line in (out_dir / "tokenizer.vocab").read_text(encoding="utf-8").splitlines()]
    (out_dir / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")  # NeMo registers it too
    return out_dir


def model_config(tokenizer_dir: Path, *, hybrid: bool = False, shape: str = "tiny"):
    from omegaconf import OmegaConf

    s = SHAPES[shape]
    d_model = s["d_model"]
    enc = {
        "_target_": "nemo.collections.asr.modules.ConformerEncoder",
        "feat_in": s["features"], "feat_out": -1, "n_layers": s["n_layers"], "d_model": d_model,
        "subsampling": "dw_striding", "subsampling_factor": 8, "subsampling_conv_channels": s["sub_channels"],
        "causal_downsampling": True, "ff_expansion_factor": s["ff"],
        "self_attention_model": "rel_pos", "n_heads": s["n_heads"], "att_context_size": LOOKAHEADS,
        "att_context_style": "chunked_limited", "xscaling": True, "untie_biases": True, "pos_emb_max_len": 5000,
        "conv_kernel_size": 9, "conv_norm_type": "layer_norm", "conv_context_size": "causal",
        "dropout": 0.0, "dropout_pre_encoder": 0.0, "dropout_emb": 0.0, "dropout_att": 0.0,
    }
    cfg = {
        "sample_rate": 16000,
        "tokenizer": {"dir": str(tokenizer_dir), "type": "bpe"},
        "model_defaults": {"enc_hidden": d_model, "pred_hidden": s["pred"]},
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "sample_rate": 16000, "normalize": "NA", "window_size": 0.025, "window_stride": 0.01,
            "window": "hann", "features": s["features"], "n_fft": 512, "log": True, "frame_splicing": 1,
            "dither": 1e-5, "pad_to": 0, "pad_value": 0.0,
        },
        "encoder": enc,
        "decoder": {
            "_target_": "nemo.collections.asr.modules.RNNTDecoder", "normalization_mode": None,
            "random_state_sampling": False, "blank_as_pad": True,
            "prednet": {"pred_hidden": s["pred"], "pred_rnn_layers": s["pred_layers"], "t_max": None, "dropout": 0.0},
        },
        "joint": {
            "_target_": "nemo.collections.asr.modules.RNNTJoint", "log_softmax": None, "preserve_memory": False,
            "fuse_loss_wer": False, "fused_batch_size": -1,
            "jointnet": {"joint_hidden": s["joint"], "activation": "relu", "dropout": 0.0},
        },
        "decoding": {"strategy": "greedy_batch", "greedy": {"max_symbols": 5}},
        "loss": {"loss_name": "default"},
        "optim": None,
    }
    if hybrid:
        cfg["aux_ctc"] = {
            "ctc_loss_weight": 0.3,
            "decoder": {"_target_": "nemo.collections.asr.modules.ConvASRDecoder", "feat_in": None,
                        "num_classes": -1, "vocabulary": []},
            "decoding": {"strategy": "greedy"},
        }
    return OmegaConf.create(cfg)


def build_random_nemo(out_dir: str | Path, *, hybrid: bool = False, seed: int = 0, shape: str = "tiny") -> Path:
    """Build, randomly initialise and save a model of `shape`; returns the `.nemo` path."""
    import torch
    from nemo.collections.asr.models import EncDecHybridRNNTCTCBPEModel, EncDecRNNTBPEModel
    from nemo.utils import logging as nemo_logging

    nemo_logging.setLevel(nemo_logging.ERROR)
    logging.getLogger("nv_one_logger").setLevel(logging.ERROR)  # telemetry notices on every model built
    out = Path(out_dir)
    torch.manual_seed(seed)
    cfg = model_config(train_tokenizer(out / "tokenizer"), hybrid=hybrid, shape=shape)
    cls = EncDecHybridRNNTCTCBPEModel if hybrid else EncDecRNNTBPEModel
    model: Any = cls(cfg=cfg)  # NeMo's modules are built from the config: their attributes are dynamic
    with torch.no_grad():  # random weights emit a token on almost every frame: spread the joint's logits and
        last = model.joint.joint_net[-1]  # favour blank (the last class) so a few tokens per second come out
        last.weight.mul_(4.0)
        last.bias[-1] = 2.5
    path = out / f"{shape}_{'hybrid' if hybrid else 'rnnt'}.nemo"
    model.save_to(str(path))
    return path


if __name__ == "__main__":
    import sys
    import tempfile

    print(build_random_nemo(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(), hybrid="--hybrid" in sys.argv,
                            shape="nemotron-0.6b" if "--nemotron" in sys.argv else "tiny"))

"""A Kokoro-82M `.pth` with random weights of the real shape (the hub's format: one state dict per submodule), for
timing the torch voice where the real weights are not available. Random weights predict random durations, so the
duration head is forced to `frames_per_token` frames per phoneme (the real model gives 2.0-2.3): its weight is
zeroed and its bias set so that its 50 sigmoid outputs add up to that many frames."""
from __future__ import annotations

import math
from pathlib import Path

SUBMODULES = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")


def random_kokoro_pth(folder: str | Path, frames_per_token: float = 2.1, seed: int = 0) -> Path:
    import torch
    from kokoro import KModel

    from engines.tts_kokoro_torch import REPO_ID, model_config

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.pth"
    torch.save({}, empty)
    torch.manual_seed(seed)
    model = KModel(repo_id=REPO_ID, config=model_config(folder / "x.pth"), model=str(empty))
    head = model.predictor.duration_proj.linear_layer
    share = frames_per_token / head.out_features
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(math.log(share / (1 - share)))
    path = folder / "kokoro-random.pth"
    torch.save({name: getattr(model, name).state_dict() for name in SUBMODULES}, path)
    return path

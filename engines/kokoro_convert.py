"""Kokoro-82M's float weights for the torch `kokoro` package (`KModel`), rebuilt offline from the int8 ONNX model
(kokoro-v1.0.int8.onnx), so the torch engine speaks without the hub's `.pth`.

546 of KModel's 688 state-dict entries come from the ONNX graph, found by name or by the node that reads them:

- 310 keep their torch names (biases, norms, Snake alphas, embeddings, the AdaIN `fc` weights), the exporter's
  wrappers aside: `encoder.bert.*` is `bert.*`, `decoder.decoder.*` is `decoder.*`;
- the 89 weight-normed convolutions were folded by the exporter into one tensor named after the `Mul` that made
  it ("/decoder/decoder/decode.0/Mul_output_0"); the `Conv`/`ConvInteger`/`ConvTranspose` node that reads it is
  scoped like the torch module ("/decoder/decoder/decode.0/conv1/Conv_quant" is `decoder.decode.0.conv1`);
- 10 anonymous `MatMul` weights ("onnx::MatMul_6547") and the 6 LSTMs' W, R and B are named by their reader too.

Int8 weights are dequantized as (q - zero_point) * scale: per output channel for `MatMulInteger`, per tensor for
`ConvInteger` and the embedding tables, per direction for `DynamicQuantizeLSTM`. `MatMul` weights [in, out] are
transposed to `nn.Linear`'s [out, in]. LSTM W [dir, in, 4h] and R [dir, h, 4h] become weight_ih / weight_hh
(`_reverse` for direction 1) [4h, in], B [dir, 8h] splits into bias_ih then bias_hh, and the gate blocks go from
ONNX's order (i, o, f, c) to torch's (i, f, g, o). A folded weight W becomes weight_v = W and weight_g = |W| over
all dims but the first, torch's `weight_norm(dim=0)` for Conv1d and ConvTranspose1d alike, so g * v / |v| = W
(94 output channels that int8 rounded to all zeros get a unit direction with length 0, not 0 / 0).

The other 142 are not in the graph because they cannot change the output: the affine weight and bias of AdaIN's 70
InstanceNorm1d (the graph normalises without them: 1 and 0) and ALBERT's pooler, whose output KModel never reads
(0). The graph's iSTFT basis belongs to the exporter's own STFT module and has no KModel twin.

The result is KModel's `.pth` format, {submodule: state_dict}, which loads with strict key matching. Needs torch,
kokoro and onnx."""
from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from google.protobuf.message import DecodeError
from onnx import NodeProto, numpy_helper

SUBMODULES = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
REPO_ID = "hexgrad/Kokoro-82M"
LINEAR_OPS = {"MatMulInteger", "MatMul"}  # weight [in, out]: transposed for nn.Linear
WEIGHT_OPS = LINEAR_OPS | {"ConvInteger", "Conv", "ConvTranspose", "DynamicQuantizeLSTM"}
TORCH_GATES = (0, 2, 3, 1)  # ONNX's gate blocks (i, o, f, c) in torch's order (i, f, g = c, o)


def convert(onnx_path: str | Path, config: dict[str, Any] | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """KModel's state dicts, {submodule: state_dict}, from the int8 ONNX model. `config` is the model's config.json
    (default: the one `engines.tts_kokoro_torch.model_config` finds). ValueError names what does not match if the
    graph is not Kokoro-82M's."""
    onnx_path = Path(onnx_path)
    graph = _Graph(onnx_path)
    skeleton = _skeleton(config if config is not None else _default_config(onnx_path))
    found = _from_graph(graph, {name for name, _ in skeleton.named_modules()})
    found.update({k: v for k, v in _implied(skeleton).items() if k not in found})
    state: dict[str, dict[str, torch.Tensor]] = {name: {} for name in SUBMODULES}
    missing, wrong = [], []
    for key, like in skeleton.state_dict().items():
        value = _value(key, found)
        if value is None:
            missing.append(key)
        elif value.shape != tuple(like.shape):
            wrong.append(f"{key} {value.shape} (KModel: {tuple(like.shape)})")
        else:
            submodule, _, rest = key.partition(".")
            array = np.ascontiguousarray(value, dtype=np.float32)
            state[submodule][rest] = torch.from_numpy(array if array.flags.writeable else array.copy())
    if missing or wrong:
        unused = sorted(graph.weights - graph.placed)
        problems = [_listing("KModel weights not found", missing), _listing("with the wrong shape", wrong),
                    _listing("ONNX weights matching no KModel module", unused)]
        raise ValueError(f"{onnx_path.name} is not Kokoro-82M's graph: " + "; ".join(filter(None, problems)))
    return state


def write_pth(onnx_path: str | Path, out_path: str | Path, config: dict[str, Any] | None = None) -> Path:
    """Convert and save as KModel's `.pth`, atomically (a temporary file beside `out_path`, then a rename)."""
    state = convert(onnx_path, config)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_path


class _Graph:
    """The ONNX model's nodes, its initializers as arrays, and the node that computes each tensor."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise FileNotFoundError(f"Kokoro ONNX model not found: {path}")
        try:
            model = onnx.load(str(path))
        except DecodeError as exc:
            raise ValueError(f"{path.name} is not an ONNX model ({exc})") from None
        self.nodes = list(model.graph.node)
        self.arrays: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.producer = {name: node for node in self.nodes for name in node.output}
        self.weights: set[str] = set()  # initializers read as weights
        self.placed: set[str] = set()  # those given to a KModel module

    def array(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            raise ValueError(f"the ONNX graph has no initializer {name!r}")
        return self.arrays[name]

    def dequantized(self, name: str, zero_point: str, scale: str = "") -> np.ndarray:
        """(q - zero_point) * scale; the scale defaults to `<weight>_scale` (onnxruntime's quantizer's naming)."""
        q = self.array(name).astype(np.float32)
        zero = self.array(zero_point).astype(np.float32)
        return (q - zero) * self.array(scale or f"{name.removesuffix('_quantized')}_scale")


def _from_graph(graph: _Graph, modules: set[str]) -> dict[str, np.ndarray]:
    """KModel key -> float array for everything the graph holds: named initializers, then weights by reader."""
    found: dict[str, np.ndarray] = {}

    def put(key: str, value: np.ndarray, source: str) -> None:
        if key in found and not np.array_equal(found[key], value):
            raise ValueError(f"two ONNX tensors map to the KModel weight {key} (one is {source})")
        found[key] = value

    for name, array in graph.arrays.items():
        if _onnx_named(name) and array.dtype == np.float32 and not name.endswith(("_scale", "_zero_point")):
            put(_kmodel_name(name), array, name)
    for node in graph.nodes:
        reader, weight = _weight_read_by(graph, node)
        if not weight:
            continue
        graph.weights.add(weight)
        module = _module(weight, reader, modules)
        if not module:
            continue
        graph.placed.add(weight)
        if node.op_type == "DynamicQuantizeLSTM":
            for key, value in _lstm(graph, node).items():
                put(f"{module}.{key}", value, weight)
        elif node.op_type == "DequantizeLinear":
            put(f"{module}.weight", graph.dequantized(weight, node.input[2], node.input[1]), weight)
        else:  # MatMulInteger, ConvInteger (B's zero point is input 3), float MatMul, Conv, ConvTranspose
            quantized = node.op_type.endswith("Integer")
            value = graph.dequantized(weight, node.input[3]) if quantized else graph.array(weight)
            put(f"{module}.weight", value.T if node.op_type in LINEAR_OPS else value, weight)
    return found


def _weight_read_by(graph: _Graph, node: NodeProto) -> tuple[NodeProto, str]:
    """(the node scoped like the weight's module, the weight's initializer) for a node that reads a weight."""
    if node.op_type == "DequantizeLinear":  # an int8 embedding: DequantizeLinear(Gather(table, ids), scale, zero)
        gather = graph.producer.get(node.input[0])
        if gather is not None and gather.op_type == "Gather" and gather.input[0] in graph.arrays:
            return gather, gather.input[0]
    elif node.op_type in WEIGHT_OPS and len(node.input) > 1 and node.input[1] in graph.arrays:
        return node, node.input[1]
    return node, ""


def _lstm(graph: _Graph, node: NodeProto) -> dict[str, np.ndarray]:
    """A DynamicQuantizeLSTM's weights as nn.LSTM's. Its inputs: X, W [dir, in, 4h], R [dir, h, 4h], B [dir, 8h]
    (W's biases, then R's), sequence_lens, initial_h, initial_c, P, then W's scale and zero point, R's."""
    directions = len(graph.array(node.input[1]))

    def dequantized(index: int, scale: int) -> np.ndarray:  # scale and zero point per direction (or channel)
        q = graph.array(node.input[index]).astype(np.float32)
        zero = graph.array(node.input[scale + 1]).astype(np.float32).reshape(directions, 1, -1)
        return (q - zero) * graph.array(node.input[scale]).reshape(directions, 1, -1)

    w, r, b = dequantized(1, 8), dequantized(2, 10), graph.array(node.input[3])
    out: dict[str, np.ndarray] = {}
    for d in range(directions):
        suffix = "_l0_reverse" if d else "_l0"
        bias_ih, bias_hh = np.split(b[d], 2)
        out |= {f"weight_ih{suffix}": _gates(w[d].T), f"weight_hh{suffix}": _gates(r[d].T),
                f"bias_ih{suffix}": _gates(bias_ih), f"bias_hh{suffix}": _gates(bias_hh)}
    return out


def _gates(x: np.ndarray) -> np.ndarray:
    blocks = np.split(x, 4)
    return np.concatenate([blocks[i] for i in TORCH_GATES])


def _onnx_named(name: str) -> bool:
    return name.startswith(("encoder.", "decoder."))


def _kmodel_name(name: str) -> str:
    """The exporter's names to KModel's: encoder.bert.* -> bert.*, decoder.decoder.* -> decoder.*; the predictor's
    F0 and N branches and its shared LSTM were called from the wrapper (encoder.F0.0) and live in `predictor`."""
    name = re.sub(r"^decoder\.decoder\.", "decoder.", name).removeprefix("encoder.")
    return name if name.split(".")[0] in SUBMODULES else f"predictor.{name}"


def _module(weight: str, node: NodeProto, modules: set[str]) -> str:
    """The KModel module a weight belongs to, by the weight's own name or by the scope of the node reading it
    ("/encoder/text_encoder/cnn.0/cnn.0.0/Conv_quant" -> text_encoder.cnn.0.0); "" for a tensor of no KModel
    module, and for the readers of a module called again ("attention/query_3" reads `query`'s weight)."""
    if _onnx_named(weight):
        module = _kmodel_name(weight.removesuffix("_quantized")).rsplit(".", 1)[0]
    else:
        parts: list[str] = []
        for part in node.name.strip("/").split("/")[:-1]:  # the last part names the op
            if parts and part.startswith(f"{parts[-1]}."):
                parts[-1] = part  # a container's child is scoped by its full name: asr_res/asr_res.0
            else:
                parts.append(part)
        scope = ".".join(parts)
        module = _kmodel_name(scope) if _onnx_named(scope) else ""
    return module if module in modules else ""


def _value(key: str, found: dict[str, np.ndarray]) -> np.ndarray | None:
    """The array for a KModel key; a weight-normed module's weight_v and weight_g come from its folded weight."""
    if key in found:
        return found[key]
    base, _, part = key.rpartition(".weight_")
    if part not in ("v", "g") or f"{base}.weight" not in found:
        return None
    w = found[f"{base}.weight"]
    norm = np.sqrt(np.square(w.astype(np.float64)).reshape(len(w), -1).sum(axis=1))
    norm = norm.astype(np.float32).reshape(-1, *[1] * (w.ndim - 1))
    # an output channel quantized to all zeros gets any direction with length 0 (v = 0 would make 0/0 = NaN)
    return np.where(norm > 0, w, np.float32(1)) if part == "v" else norm


def _implied(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """Parameters the graph implies without holding them: InstanceNorm1d's affine (the graph normalises with
    weight 1, bias 0) and ALBERT's pooler (its output unused by KModel, pruned by the exporter: zero)."""
    out: dict[str, np.ndarray] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.InstanceNorm1d) and module.affine:
            out[f"{name}.weight"] = np.ones(module.num_features, np.float32)
            out[f"{name}.bias"] = np.zeros(module.num_features, np.float32)
        elif name == "bert.pooler" and isinstance(module, torch.nn.Linear):
            out[f"{name}.weight"] = np.zeros((module.out_features, module.in_features), np.float32)
            out[f"{name}.bias"] = np.zeros(module.out_features, np.float32)
    return out


def _skeleton(config: dict[str, Any]) -> torch.nn.Module:
    """KModel built on the meta device: its modules and shapes, no memory, nothing downloaded."""
    from kokoro import KModel

    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # KModel's own: weight_norm's deprecation, dropout on a 1-layer LSTM
        empty = Path(folder) / "empty.pth"
        torch.save({}, empty)
        with torch.device("meta"):
            return KModel(repo_id=REPO_ID, config=config, model=str(empty))


def _default_config(onnx_path: Path) -> dict[str, Any]:
    from engines.tts_kokoro_torch import model_config

    return model_config(onnx_path)


def _listing(what: str, names: list[str], shown: int = 6) -> str:
    if not names:
        return ""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} {what}: {', '.join(names[:shown])}{more}"

"""How much arithmetic a model does: floating-point operations of ONNX graphs,
counted from ONNX Runtime's own profile of one run (so the shapes are the
runtime's, not guessed).  Used by ``streamcolor bench`` and the benchmarks to
set achieved GFLOP/s against a machine's peak.  Here, in ``engines``, because
it runs ONNX Runtime, which only ``engines`` imports.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

if TYPE_CHECKING:
    from streamcolor.engines.base import Engine

log = logging.getLogger(__name__)

#: Operators whose arithmetic is counted by :func:`graph_flops`.
COUNTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "FusedMatMul")


def graph_flops(path: str | Path, feeds: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Floating-point operations of one run of an ONNX graph on ``feeds``.

    Counts 2 x multiply-adds of every convolution (``2 * k_h * k_w * c_in/group
    * c_out * H_out * W_out`` per image, transposed convolutions likewise per
    input position) and matrix product, with the shapes ONNX Runtime reports
    in its profile of one run (basic graph optimizations only, so no operator
    is fused away).  Returns ``{op type: flops, ..., "total": flops}``.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.enable_profiling = True
    opts.intra_op_num_threads = 1
    with tempfile.TemporaryDirectory(prefix="streamcolor-flops-") as tmp:
        opts.profile_file_prefix = os.path.join(tmp, "profile")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        sess.run(None, dict(feeds))
        events = json.loads(Path(sess.end_profiling()).read_text())
    counts: dict[str, float] = {}
    weights: dict[str, list[int]] | None = None
    for ev in events:
        args = ev.get("args") or {}
        op = args.get("op_name")
        if ev.get("cat") != "Node" or op not in COUNTED_OPS or not ev.get("name", "").endswith("_kernel_time"):
            continue
        ins = [next(iter(s.values())) for s in args.get("input_type_shape", [])]
        outs = [next(iter(s.values())) for s in args.get("output_type_shape", [])]
        if op.startswith("Conv") and len(ins) == 1:  # a pre-packed weight is left out of the profile
            if weights is None:
                weights = _weight_shapes(path)
            ins.append(weights.get(ev["name"].removesuffix("_kernel_time"), []))
        flops = _op_flops(op, ins, outs)
        counts[op] = counts.get(op, 0.0) + flops
    counts["total"] = float(sum(counts.values()))
    return counts


def _weight_shapes(path: str | Path) -> dict[str, list[int]]:
    """Node name -> shape of its second input when that is an initializer (needs ``onnx``; {} without)."""
    try:
        import onnx
    except ImportError:
        log.warning("flop count of %s is partial: a weight shape needs the onnx package", path)
        return {}
    g = onnx.load(str(path), load_external_data=False).graph
    shapes = {i.name: list(i.dims) for i in g.initializer}
    return {n.name: shapes[n.input[1]] for n in g.node if len(n.input) > 1 and n.input[1] in shapes}


def _op_flops(op: str, ins: list[list[int]], outs: list[list[int]]) -> float:
    if not ins or not outs:
        return 0.0
    out = float(np.prod(outs[0]))
    if op == "Conv":  # weight (c_out, c_in/group, k_h, k_w): each output = c_in/group * k_h * k_w MACs
        return 2.0 * out * float(np.prod(ins[1][1:])) if len(ins) > 1 and ins[1] else 0.0
    if op == "ConvTranspose":  # weight (c_in, c_out/group, k_h, k_w): each input scatters c_out/g * k_h * k_w
        return 2.0 * float(np.prod(ins[0])) * float(np.prod(ins[1][1:])) if len(ins) > 1 and ins[1] else 0.0
    # MatMul / Gemm / FusedMatMul: output (..., M, N), K = the first input's last dimension
    return 2.0 * out * float(ins[0][-1])


@functools.lru_cache(maxsize=32)
def _network_flops(colorizer: str, extractor: str, size: int, embed_dim: int, height: int, width: int
                   ) -> tuple[float, float]:
    ext = graph_flops(extractor, {_first_input(extractor): np.zeros((1, size, size, 1), np.float32)})["total"]
    names = _inputs_by_rank(colorizer)
    col = graph_flops(colorizer, {names[-1]: np.zeros((1, height, width, 1), np.float32),
                                  names[0]: np.zeros((1, embed_dim), np.float32)})["total"]
    return ext, col


def network_flops(model: "str | Path | Engine", height: int, width: int) -> dict[str, float]:
    """Flops per image of a bundle's float32 graphs at a render shape: ``extractor``
    (at its own square size), ``colorizer`` and ``total``.  ``model``: a shipped
    model name, a bundle folder or a loaded engine (its bundle is read).  A
    one-graph model (the U-Net) counts everything as ``colorizer`` (its encoder
    is the classifier) at the shape padded to its size multiple, as the engine runs it."""
    from streamcolor.engines import resolve_model

    info = model.info if hasattr(model, "info") else resolve_model(model)
    if not info.two_stage:
        m = info.size_multiple
        h, w = -(-int(height) // m) * m, -(-int(width) // m) * m
        path = str(info.file("colorizer.onnx"))
        col = graph_flops(path, {_first_input(path): np.zeros((1, h, w, 1), np.float32)})["total"]
        return {"extractor": 0.0, "colorizer": col, "total": col}
    ext, col = _network_flops(str(info.file("colorizer.onnx")), str(info.file("extractor.onnx")),
                              info.extractor_size, info.embed_dim, int(height), int(width))
    return {"extractor": ext, "colorizer": col, "total": ext + col}


def _first_input(path: str) -> str:
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_inputs()[0].name


def _inputs_by_rank(path: str) -> list[str]:
    import onnxruntime as ort

    ins = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).get_inputs()
    return [i.name for i in sorted(ins, key=lambda i: len(i.shape))]


__all__ = ["COUNTED_OPS", "graph_flops", "network_flops"]

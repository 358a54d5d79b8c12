"""The kernel classes a device model rates separately, and what a conv's speed depends
on beyond its FLOPs (its geometry and how its channels fit the SIMD vectors)."""

from __future__ import annotations

import math

from deploylens.cost.records import LayerCost
from deploylens.kernels.runtimes import RUNTIME_COPIES

CLASSES = ("conv_dense", "conv_pointwise", "conv_depthwise", "conv_grouped", "matmul", "elementwise", "pool", "copy",
           "reorder", "slice", "transcendental")
# classes whose rate is FLOP/s; the others are memory-bound and their rate is bytes/s
COMPUTE_CLASSES = frozenset({"conv_dense", "conv_pointwise", "conv_depthwise", "conv_grouped", "matmul"})
# element-wise ops that compute an exponential or a tanh per element: slower than a copy
TRANSCENDENTAL = frozenset({"sigmoid", "silu", "gelu", "tanh", "elu", "softplus", "mish"})
# the class a kernel takes where its own is not calibrated (on the other backend only)
CLASS_FALLBACK = {"reorder": "copy", "slice": "copy", "transcendental": "elementwise"}
# tensor cores take channel counts in multiples of 8 (NVIDIA's deep learning performance guide)
GPU_CHANNEL_MULTIPLE = 8


def conv_geometry(c_in: int, c_out: int, groups: int, kernel: int, stride: int, pixels: int) -> dict:
    """What a conv's speed depends on beyond its FLOPs: channels, groups, kernel size,
    stride and output pixels (batch x height x width: the GEMM's M dimension)."""
    return {"c_in": c_in, "c_out": c_out, "groups": groups, "kernel": kernel, "stride": stride, "pixels": pixels}


def channel_alignment(c_in: int, c_out: int, groups: int, lanes: int) -> int:
    """How well a conv's channels fit the SIMD vectors (``lanes`` fp32 each), counting the
    depthwise channel count or both per-group counts of any other conv: 2 when they fill
    whole vectors; 1 when they are multiples of 4, which a channel-blocked runtime pads to
    whole vectors; 0 otherwise (docs/device-models.md gives the measured cost of each)."""
    counts = (c_in,) if groups > 1 and groups == c_in else (c_in // groups, c_out // groups)
    if all(c % lanes == 0 for c in counts):
        return 2
    return 1 if all(c % 4 == 0 for c in counts) else 0


def conv_geometry_of(anchor: LayerCost) -> dict | None:
    """The conv geometry of a conv layer (from its input, weight and output shapes); None
    for other ops."""
    if anchor.kind not in ("conv", "conv_transpose") or len(anchor.inputs) < 2 or not anchor.outputs:
        return None
    x, w, y = anchor.inputs[0], anchor.inputs[1], anchor.outputs[0]
    if len(x) < 3 or len(w) < 3 or len(y) < 3:
        return None
    c_in = x[1]
    groups = c_in // w[1] if anchor.kind == "conv" and w[1] else 1
    stride = max(1, round(x[2] / y[2])) if anchor.kind == "conv" and y[2] else 1
    return conv_geometry(c_in, y[1], groups, max(w[2:]), stride, math.prod(y) // y[1])


def kernel_class(anchor: LayerCost) -> str:
    """The class of a kernel, from the op that anchors it."""
    geometry = conv_geometry_of(anchor)
    if geometry:
        if geometry["groups"] > 1 and geometry["groups"] == geometry["c_in"]:
            return "conv_depthwise"
        if geometry["groups"] > 1:
            return "conv_grouped"
        return "conv_pointwise" if geometry["kernel"] == 1 else "conv_dense"
    if anchor.kind in ("linear", "matmul", "attention"):
        return "matmul"
    if anchor.kind in ("pool", "reduce"):  # a global average pool is a mean
        return "pool"
    if anchor.native in RUNTIME_COPIES:  # a kernel only where slicing copies (see kernels.runtimes)
        return "slice"
    if anchor.kind == "data_movement":
        return "copy"
    return "transcendental" if anchor.op in TRANSCENDENTAL else "elementwise"

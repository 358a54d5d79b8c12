"""What each runtime really runs, as data: the analyzer's fused view groups a conv with
everything that could follow it into one kernel; a runtime fuses less.

A :class:`RuntimePolicy` names the ops a runtime folds into a conv / linear / matmul
(its epilogue) and the slicing ops it runs as copies; :func:`runtime_kernels` turns a
profile's fused kernels into the kernels the runtime runs. tests/test_kernels.py checks
the ONNX Runtime policy against the graphs ONNX Runtime's own optimizer produces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from deploylens.cost.records import KernelCost, LayerCost
from deploylens.dtypes import DTYPE_BYTES

# the kinds of op whose kernel an epilogue joins (a conv, a linear layer, a matmul)
HEADS = frozenset({"conv", "conv_transpose", "linear", "matmul"})
# the kind of the kernels a runtime runs on tensor shapes (kernels.onnxruntime_graph)
SHAPE_KIND = "shape_arithmetic"
# slicing PyTorch runs as a view and ONNX Runtime as a copy (Split, Slice, Gather nodes);
# a slice over a whole dimension dispatches as aten.alias in PyTorch and still exports as Slice
RUNTIME_COPIES = frozenset({"aten.split", "aten.split_with_sizes", "aten.slice", "aten.select", "aten.narrow",
                            "aten.unbind", "aten.chunk", "aten.alias"})


@dataclass(frozen=True)
class RuntimePolicy:
    """``epilogue_ops`` / ``epilogue_kinds``: the ops (by neutral name or kind) that join
    the conv or linear before them in one kernel; ``slicing_copies``: native slicing ops
    the runtime runs as copy kernels; ``decomposed``: ops the runtime runs as several
    element-wise kernels, each given as (its op, how many tensors of the output's size it
    reads), each writing one; ``dispatches_views``: each view op is a call of its own (an
    eager framework), costing the calibrated view overhead."""
    name: str
    epilogue_ops: frozenset[str] = frozenset()
    epilogue_kinds: frozenset[str] = frozenset()
    slicing_copies: frozenset[str] = frozenset()
    decomposed: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    dispatches_views: bool = False

    def joins(self, layer: LayerCost) -> bool:
        return layer.op in self.epilogue_ops or layer.kind in self.epilogue_kinds


# the fused view (kernels.fusion): what a deploy toolchain (TensorRT, OpenVINO, ONNX
# Runtime's graph optimizer, NPU compilers) runs as one kernel: a conv / linear with its
# BatchNorm, bias, activations and residual add; a chain of element-wise ops
FUSED = RuntimePolicy("fused", frozenset({"batch_norm"}), frozenset({"elementwise", "activation"}))

# an eager framework on a GPU: every op a kernel of its own (what the fitted device models
# of PyTorch eager rate; deploylens.hardware.device_model)
EAGER = RuntimePolicy("eager", dispatches_views=True)

POLICIES = {
    # PyTorch eager: a conv's BatchNorm and activation, the calibrated conv-BN-act unit
    # (every other op, a residual add included, is a kernel of its own)
    "torch": RuntimePolicy("torch", frozenset({"batch_norm"}), frozenset({"activation"}), dispatches_views=True),
    # ONNX Runtime: BatchNorm folded, the activations it fuses into a conv (FusedConv or
    # the blocked conv's own activation) and a residual add (the blocked conv's sum
    # input); SiLU, GELU and Mish stay nodes of their own (SiLU as QuickGelu), and
    # HardSwish becomes a HardSigmoid and a Mul after the conv
    "onnxruntime": RuntimePolicy(
        "onnxruntime",
        frozenset({"batch_norm", "add", "relu", "clamp", "hardtanh", "leaky_relu", "sigmoid", "tanh", "hardsigmoid"}),
        slicing_copies=RUNTIME_COPIES, decomposed={"hardswish": (("hardsigmoid", 1), ("mul", 2))}),
}


def runtime_kernels(layers: list[LayerCost], kernels: list[KernelCost], policy: RuntimePolicy | None,
                    dtype: str = "float32") -> list[KernelCost]:
    """The kernels ``policy``'s runtime runs for a profile's ``layers`` and fused
    ``kernels`` (None: the fused view's own kernels, as a deploy toolchain runs them):
    a conv / linear with the ops right after it that the policy's epilogue takes is one
    kernel; every other op of a fused kernel is a kernel of its own; each slicing op the
    runtime copies is a copy kernel reading and writing its outputs."""
    if policy is None:
        return list(kernels)
    by_name = {layer.name: layer for layer in layers}
    units: list[KernelCost] = []
    for kernel in kernels:
        members = [by_name[name] for name in kernel.layers]
        head = 1
        if members[0].kind in HEADS:
            while head < len(members) and policy.joins(members[head]):
                head += 1
        for group in [members[:head]] + [[m] for m in members[head:]]:
            if len(group) == 1 and group[0].op in policy.decomposed:
                units += _decomposed(group[0], policy.decomposed[group[0].op])
                continue
            written = group[-1].bytes_written
            units.append(KernelCost(group[0].name, group[0].kind, [m.name for m in group],
                                    sum(m.flops or 0 for m in group), sum(m.macs or 0 for m in group),
                                    group[0].bytes_read, written, None, all(m.flops is not None for m in group)))
    return units + slicing_copies(layers, policy, dtype)


def _decomposed(layer: LayerCost, parts: tuple[tuple[str, int], ...]) -> list[KernelCost]:
    """The element-wise kernels a runtime runs for one op, each reading ``reads`` tensors
    of the op's output size and writing one (the op's FLOPs on the first)."""
    size = layer.bytes_written
    return [KernelCost(f"{layer.name}:{op}", layer.kind, [layer.name], layer.flops or 0 if index == 0 else 0, 0,
                       reads * size, size, None, layer.flops is not None)
            for index, (op, reads) in enumerate(parts)]


def slicing_copies(layers: list[LayerCost], policy: RuntimePolicy, dtype: str = "float32") -> list[KernelCost]:
    """The copy kernels a runtime runs for slicing that costs nothing in PyTorch (``dtype``
    elements): one per output of a slicing op (the exporter writes a Slice per part), each
    reading and writing that part."""
    elem = DTYPE_BYTES.get(dtype, 4)
    copies = []
    for layer in layers:
        if layer.native in policy.slicing_copies:
            for index, shape in enumerate(layer.outputs):
                nbytes = math.prod(shape) * elem
                name = layer.name if len(layer.outputs) == 1 else f"{layer.name}:{index}"
                copies.append(KernelCost(name, "data_movement", [layer.name], 0, 0, nbytes, nbytes, 0.0, True))
    return copies

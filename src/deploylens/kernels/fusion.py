"""The fused view: which ops a deployment toolchain runs as one kernel, and its bytes.

Rules (the ones TensorRT, ONNX Runtime, OpenVINO and vendor NPU compilers all apply):

* a conv / linear / matmul kernel absorbs the element-wise chain that follows it:
  inference BatchNorm (folded into its weights when it directly follows), bias,
  activations and a residual add;
* a chain of element-wise ops is one kernel;
* views (reshape, slice, split, squeeze, ...) are free and belong to no kernel.

An op joins the kernel that produced one of its inputs when that input has no other
consumer, is the kernel's latest result, and has the op's output size (so a broadcast
multiply that expands a small tensor starts its own kernel). A fused kernel reads the
tensors it does not produce itself (weights with BN folded in) and writes only the
results that something outside it consumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deploylens.capture.ir import FREE_OPS, Graph, Op, Tensor
from deploylens.cost.formulas import has_formula, traffic
from deploylens.dtypes import DTYPE_BYTES
from deploylens.kernels.runtimes import FUSED, HEADS

# kernels that can take an element-wise epilogue: the heads, and an element-wise chain's ops
_HOST_KINDS = HEADS | {"elementwise", "activation", "norm"}
# a BatchNorm right after one of these is folded into its weights
_FOLDS_BN = frozenset({"conv", "conv_transpose", "linear"})


@dataclass
class Kernel:
    ops: list[int] = field(default_factory=list)  # indices into graph.ops
    tail: int = -1  # root id of the latest result


@dataclass(frozen=True)
class KernelBytes:
    read: int
    written: int


def alias_roots(graph: Graph) -> dict[int, int]:
    """Map each tensor id to the id of the tensor whose memory it views."""
    root: dict[int, int] = {}
    for op in graph.ops:
        if op.op in FREE_OPS and op.inputs:
            base = root.get(op.inputs[0].id, op.inputs[0].id)
            for out in op.outputs:
                root[out.id] = base
    return root


def _is_epilogue(op: Op) -> bool:
    return FUSED.joins(op) and has_formula(op.op)


def group_kernels(graph: Graph, root: dict[int, int]) -> list[Kernel]:
    """Partition the non-free ops of ``graph`` into fused kernels, in execution order."""
    consumers: dict[int, int] = {}
    for op in graph.ops:
        if op.op in FREE_OPS:
            continue
        for tensor_root in {root.get(t.id, t.id) for t in op.inputs}:
            consumers[tensor_root] = consumers.get(tensor_root, 0) + 1
    for out in graph.outputs:
        r = root.get(out.id, out.id)
        consumers[r] = consumers.get(r, 0) + 1

    kernels: list[Kernel] = []
    produced_by: dict[int, int] = {}  # root id -> kernel index
    for index, op in enumerate(graph.ops):
        if op.op in FREE_OPS:
            continue
        target = None
        if _is_epilogue(op) and op.outputs:
            for t in op.inputs:
                r = root.get(t.id, t.id)
                k = produced_by.get(r)
                if (k is not None and kernels[k].tail == r and consumers.get(r) == 1
                        and graph.ops[kernels[k].ops[0]].kind in _HOST_KINDS
                        and op.outputs[0].numel == t.numel and (target is None or k > target)):
                    target = k
        if target is None:
            kernels.append(Kernel())
            target = len(kernels) - 1
        kernel = kernels[target]
        kernel.ops.append(index)
        if op.outputs:
            kernel.tail = root.get(op.outputs[0].id, op.outputs[0].id)
        for out in op.outputs:
            produced_by[root.get(out.id, out.id)] = target
    return kernels


def _state_reads(op: Op, kernel_ops: list[Op], position: int) -> int:
    """Bytes of weights/statistics ``op`` reads once the toolchain folded what it can."""
    state = [t for t in op.inputs if t.is_state]
    if op.op != "batch_norm":
        return sum({t.id: t.nbytes for t in state}.values())
    channels = op.inputs[0].shape[1] if len(op.inputs[0].shape) > 1 else op.inputs[0].numel
    elem = DTYPE_BYTES.get(op.inputs[0].dtype, 4)
    anchor = kernel_ops[0]
    if position == 1 and anchor.kind in _FOLDS_BN:
        # folded into the conv/linear weights; it adds a bias when the anchor had none
        has_bias = len(anchor.inputs) > 2
        return 0 if has_bias else channels * elem
    return 2 * channels * elem  # a standalone scale and shift


def kernel_bytes(graph: Graph, kernel: Kernel, root: dict[int, int], consumer_kernels: dict[int, set]) -> KernelBytes:
    ops = [graph.ops[i] for i in kernel.ops]
    inside = {root.get(t.id, t.id) for op in ops for t in op.outputs}
    output_roots = {root.get(t.id, t.id) for t in graph.outputs}
    me = kernel.ops[0]
    read_tensors: dict[int, Tensor] = {}
    state_bytes = 0
    for position, op in enumerate(ops):
        if op.op in ("embedding", "gather"):  # lookups read only the rows they select
            state_bytes += traffic(op)[0]
            continue
        state_bytes += _state_reads(op, ops, position)
        for t in op.inputs:
            if not t.is_state and root.get(t.id, t.id) not in inside:
                read_tensors[t.id] = t
    written = 0
    for op in ops:
        for out in op.outputs:
            r = root.get(out.id, out.id)
            outside = consumer_kernels.get(r, set()) - {me}
            if outside or r in output_roots or r not in consumer_kernels:
                written += out.nbytes
    return KernelBytes(sum(t.nbytes for t in read_tensors.values()) + state_bytes, written)


def consumers_by_kernel(graph: Graph, kernels: list[Kernel], root: dict[int, int]) -> dict[int, set]:
    """Root tensor id -> the kernels (named by their first op index) that read it."""
    consumer_kernels: dict[int, set] = {}
    for kernel in kernels:
        for i in kernel.ops:
            for t in graph.ops[i].inputs:
                consumer_kernels.setdefault(root.get(t.id, t.id), set()).add(kernel.ops[0])
    return consumer_kernels

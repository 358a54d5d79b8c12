"""The framework-neutral intermediate representation every front end produces.

A :class:`Graph` is the ordered list of :class:`Op` a model executes. Each op names
its framework-neutral operator (``op``), its kind, the module path (or ONNX node) it
came from, and the tensors it reads and writes. Tensors are SSA values: an in-place
op produces a new :class:`Tensor` even when the framework reuses the storage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from deploylens.dtypes import DTYPE_BYTES

KINDS = (
    "conv",
    "conv_transpose",
    "linear",
    "matmul",
    "pool",
    "norm",
    "elementwise",
    "activation",
    "reduce",
    "softmax",
    "resize",
    "data_movement",
    "attention",
    "embedding",
    "other",
)

# Tensor roles. Parameters and buffers are the model's state; constants are values
# fixed at export or derived from state only; activations flow from the inputs.
ACTIVATION, INPUT, PARAM, BUFFER, CONSTANT = "activation", "input", "param", "buffer", "constant"
STATE_ROLES = frozenset({PARAM, BUFFER, CONSTANT})

# Neutral ops that only re-describe existing memory (reshape, slice, split, squeeze,
# a torch transpose, an allocation without a write): they move no bytes.
FREE_OPS = frozenset({"view", "alloc", "shape"})


@dataclass(frozen=True)
class Tensor:
    """One SSA value: its shape, element type and role.

    ``stored``: the elements it occupies in memory when fewer than its shape holds (a
    broadcast view such as PyTorch's ``expand`` repeats one element along a stride-0
    dim); None for a dense tensor. Bytes count what is stored: a kernel reading a weight
    expanded to a batch of 128 reads the weight, not 128 copies of it.
    """

    id: int
    shape: tuple[int, ...]
    dtype: str
    role: str = ACTIVATION
    name: str | None = None
    stored: int | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def stored_numel(self) -> int:
        return self.numel if self.stored is None else self.stored

    @property
    def nbytes(self) -> int:
        return self.stored_numel * DTYPE_BYTES.get(self.dtype, 4)

    @property
    def is_state(self) -> bool:
        return self.role in STATE_ROLES


@dataclass
class Op:
    """One executed operator, in framework-neutral terms.

    ``op`` is the neutral operator name the cost formulas are keyed on (``conv``,
    ``matmul``, ``relu``, ``view``, ...: the table of :mod:`deploylens.capture.ops`,
    which also gives ``kind``), or ``aten.<name>`` / ``onnx.<OpType>`` for an op outside
    it; ``native`` is the front end's own name (``aten.convolution``, ``Conv``) so users
    can find it in their framework.
    """

    name: str
    module: str
    kind: str
    op: str
    native: str
    inputs: list[Tensor]
    outputs: list[Tensor]
    attrs: dict = field(default_factory=dict)


@dataclass
class Graph:
    """A captured model: ops in execution order plus its state tensors."""

    model: str
    source: str  # "torch" or "onnx"
    dtype: str
    inputs: list[Tensor]
    outputs: list[Tensor]
    ops: list[Op]
    params: list[Tensor]  # unique parameter tensors (shared weights once)
    buffers: list[Tensor]  # non-trainable state, e.g. BatchNorm running statistics
    notes: list[str] = field(default_factory=list)


def unique_layer_names(ops: list[Op], leaf_modules: set[str]) -> None:
    """Give every op a stable, unique layer name derived from its module path.

    A leaf module that runs one op is named by its path (``layer1.0.conv1``); other ops
    are named ``path/op``, repeats numbered (``layer1.0/add#2``).
    """
    per_module: dict[str, int] = {}
    for op in ops:
        if op.op not in FREE_OPS:
            per_module[op.module] = per_module.get(op.module, 0) + 1
    seen: dict[str, int] = {}
    for op in ops:
        if op.module in leaf_modules and op.op not in FREE_OPS and per_module[op.module] == 1:
            base = op.module
        else:
            base = f"{op.module}/{op.op}" if op.module else op.op
        seen[base] = seen.get(base, 0) + 1
        op.name = base if seen[base] == 1 else f"{base}#{seen[base]}"

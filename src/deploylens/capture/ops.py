"""The IR's operator table: every framework-neutral op a front end emits, and its kind.

The front ends map native ops (``aten.convolution``, ONNX ``Conv``) onto these names
and take each op's kind from here; the cost formulas (``cost/formulas.py``) are keyed
on the same names and may only be registered for an op of this table. A native op
that maps onto none of them keeps its native name (``aten.cumsum``, ``onnx.Hardmax``) and
is of kind ``other``.
"""

from __future__ import annotations

_BY_KIND: dict[str, tuple[str, ...]] = {
    "conv": ("conv",),
    "conv_transpose": ("conv_transpose",),
    # a matmul with a parameter operand is reported as ``linear`` (see :func:`kind_of`)
    "matmul": ("matmul", "einsum"),
    "attention": ("attention",),
    "activation": ("relu", "clamp", "leaky_relu", "prelu", "hardswish", "hardsigmoid", "sigmoid", "silu", "gelu",
                   "tanh", "elu", "softplus", "mish"),
    "elementwise": ("add", "sub", "mul", "div", "pow", "sqrt", "rsqrt", "reciprocal", "exp", "log", "neg", "abs",
                    "erf", "maximum", "minimum", "where", "compare", "logical", "cast", "fill"),
    "norm": ("batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm", "lrn"),
    "softmax": ("softmax", "log_softmax"),
    "pool": ("max_pool", "avg_pool", "lp_pool", "adaptive_avg_pool", "adaptive_max_pool"),
    "reduce": ("reduce",),
    "resize": ("resize",),
    "data_movement": ("cat", "copy", "pad", "transpose", "expand", "gather", "view", "alloc", "shape"),
    "embedding": ("embedding",),
}

OP_KINDS: dict[str, str] = {op: kind for kind, ops in _BY_KIND.items() for op in ops}


def is_neutral(op_name: str) -> bool:
    """Whether ``op_name`` is an op of the IR table (not a front end's native name)."""
    return op_name in OP_KINDS


def kind_of(op_name: str, operands_are_state: bool = False) -> str:
    """The kind of the neutral op ``op_name``; ``other`` for a name outside the table.

    A matmul one of whose two operands is a parameter (or derived from parameters
    only) is a ``linear`` layer.
    """
    if op_name == "matmul" and operands_are_state:
        return "linear"
    return OP_KINDS.get(op_name, "other")

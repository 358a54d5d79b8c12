"""Cost formulas: one small pure function per neutral operator.

Each formula takes an :class:`~deploylens.capture.ir.Op` and returns its :class:`Work`
(FLOPs and MACs). Memory traffic is derived separately by :func:`traffic` because it
follows one rule for almost every op (read each distinct input once, write each
output once) with a few documented exceptions.

Conventions (also in ``deploylens analyze --help``). docs/conventions.md tabulates every
formula by the first line of its docstring (tools/generate_docs.py), so each formula's
docstring opens with what it counts. In short:

* MACs count multiply-accumulates of conv / linear / matmul / attention;
  FLOPs = 2 x MACs for them (bias adds are not counted, as in the papers).
* Element-wise, activation, normalisation and softmax ops count a fixed number of
  FLOPs per output element (:data:`PER_ELEMENT_FLOPS`) and 0 MACs.
* Reductions and pooling count one FLOP per input element they visit.
* Views (reshape, slice, split, squeeze, torch transposes, ...) cost nothing; a real
  copy (``contiguous``, ONNX ``Transpose``) reads and writes its tensor once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

from deploylens.capture.ir import FREE_OPS, Op
from deploylens.capture.ops import is_neutral
from deploylens.dtypes import DTYPE_BYTES


@dataclass(frozen=True)
class Work:
    flops: int
    macs: int = 0


Formula = Callable[[Op], Work]

_FORMULAS: dict[str, Formula] = {}


def formula(*names: str) -> Callable[[Formula], Formula]:
    """Register ``fn`` as the cost formula of the neutral ops ``names``.

    Each name must be an op of the IR table (:data:`deploylens.capture.ops.OP_KINDS`)
    that has no formula yet: a misspelt name or a second formula for one op is a
    ``ValueError`` when the module registering it is imported.
    """
    _check_new(names)

    def register(fn: Formula) -> Formula:
        _check_new(names)
        for name in names:
            _FORMULAS[name] = fn
        return fn

    return register


def _check_new(names: tuple[str, ...]) -> None:
    for index, name in enumerate(names):
        if not is_neutral(name):
            raise ValueError(f"no formula for {name!r}: it is not an op of the IR table (capture/ops.py)")
        if name in _FORMULAS or name in names[:index]:
            raise ValueError(f"op {name!r} would have two formulas")


def has_formula(op_name: str) -> bool:
    """Whether the registry has a formula for ``op_name`` (custom formulas aside)."""
    return op_name in _FORMULAS


def formulas(custom: Mapping[str, Formula] | None = None) -> Mapping[str, Formula]:
    """The formula table of one analysis: the registered formulas, overridden or
    extended by ``custom`` (op name as in ``layers[].op`` -> formula). Nothing global
    changes: the registry is the same after the call."""
    if not custom:
        return _FORMULAS
    for name, fn in custom.items():
        if not isinstance(name, str) or not callable(fn):
            raise TypeError(f"custom formulas map an op name to a function Op -> Work; got {name!r}: {fn!r}")
    return {**_FORMULAS, **custom}


def conventions(table: Mapping[str, Formula] | None = None) -> dict[str, str | None]:
    """What each formula of ``table`` (default: the registered formulas) counts: op name ->
    the first line of its formula's docstring, None when the formula has none. This is the
    table ``tools/generate_docs.py`` writes into docs/conventions.md."""
    table = _FORMULAS if table is None else table
    return {name: _first_line(fn) for name, fn in table.items()}


def _first_line(fn: Formula) -> str | None:
    lines = (getattr(fn, "__doc__", None) or "").strip().splitlines()
    return lines[0].strip() if lines else None


def work(op: Op, table: Mapping[str, Formula] | None = None) -> Work | None:
    """FLOPs and MACs of ``op`` from ``table`` (default: the registered formulas), or
    None when no formula exists (never a silent zero)."""
    fn = (_FORMULAS if table is None else table).get(op.op)
    if fn is None:
        return None
    result = fn(op)
    if not isinstance(result, Work):
        raise TypeError(f"the formula of {op.op!r} returned {result!r}, not a Work")
    return result


# --- compute-bound operators -------------------------------------------------------


def _mac_work(macs: int) -> Work:
    return Work(flops=2 * macs, macs=macs)


@formula("conv")
def conv(op: Op) -> Work:
    """output elements x (C_in / groups) x kernel volume MACs; FLOPs = 2 x MACs."""
    # weight is [C_out, C_in/groups, *kernel]: each output element costs one MAC per
    # weight element of its group.
    weight = op.inputs[1]
    return _mac_work(op.outputs[0].numel * math.prod(weight.shape[1:]))


@formula("conv_transpose")
def conv_transpose(op: Op) -> Work:
    """input elements x (C_out / groups) x kernel volume MACs; FLOPs = 2 x MACs."""
    # weight is [C_in, C_out/groups, *kernel]: each input element is scattered to
    # C_out/groups * prod(kernel) outputs.
    weight = op.inputs[1]
    return _mac_work(op.inputs[0].numel * math.prod(weight.shape[1:]))


@formula("matmul")
def matmul(op: Op) -> Work:
    """output elements x contracted length MACs; FLOPs = 2 x MACs (linear layers too)."""
    # every output element is a dot product of length k (the contracted dimension).
    return _mac_work(op.outputs[0].numel * op.attrs["k"])


@formula("einsum")
def einsum(op: Op) -> Work:
    """(operands - 1) x size of the full index space MACs (naive evaluation); FLOPs = 2 x MACs."""
    # naive evaluation: one multiply per operand beyond the first for every point of
    # the full index space.
    inputs_spec = op.attrs["equation"].replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for spec, tensor in zip(inputs_spec, op.inputs):
        letters = [c for c in spec if c.isalpha()]
        # an ellipsis covers the leading dims not named by letters
        ellipsis_dims = tensor.shape[: len(tensor.shape) - len(letters)] if "..." in spec else ()
        for i, size in enumerate(ellipsis_dims):
            sizes[f"...{i}"] = size
        for letter, size in zip(letters, tensor.shape[len(ellipsis_dims):]):
            sizes[letter] = size
    return _mac_work((len(inputs_spec) - 1) * math.prod(sizes.values()))


@formula("attention")
def attention(op: Op) -> Work:
    """batch x L x S x (E_q + E_v) MACs, heads summed; FLOPs = 2 x MACs + softmax on batch x heads x L x S.

    E_q and E_v are the query and value widths over all heads; the softmax counts its
    per-element FLOPs (the per-element table) for each of the batch x heads x L x S scores.
    """
    # softmax(q k^T) v: L*S*E MACs for the scores and L*S*Ev for the weighted sum,
    # summed over batch and heads, plus the softmax over the L*S scores per head.
    q, k, v = op.inputs[:3]
    batch, length, source = q.shape[0], q.shape[-2], k.shape[-2]
    heads = q.shape[1] if len(q.shape) == 4 else op.attrs.get("heads", 1)
    q_width = q.shape[-1] * (heads if len(q.shape) == 4 else 1)
    v_width = v.shape[-1] * (v.shape[1] if len(v.shape) == 4 else 1)
    macs = batch * length * source * (q_width + v_width)
    scores = batch * heads * length * source
    return Work(flops=2 * macs + PER_ELEMENT_FLOPS["softmax"] * scores, macs=macs)


# --- per-element operators ---------------------------------------------------------

# FLOPs per output element. Counts follow the arithmetic of a straightforward
# implementation (e.g. hardswish = x * min(max(x + 3, 0), 6) / 6 -> 4; sigmoid =
# 1 / (1 + exp(-x)) -> 4; inference BatchNorm folds to a multiply-add -> 2;
# layer/group/instance norm: mean 1, variance 2, normalise 1, affine 1 -> 5;
# softmax: max, subtract, exp, sum, divide -> 5).
PER_ELEMENT_FLOPS: dict[str, int] = {
    # activations
    "relu": 1,
    "clamp": 2,
    "leaky_relu": 2,
    "prelu": 2,
    "hardswish": 4,
    "hardsigmoid": 3,
    "sigmoid": 4,
    "silu": 5,
    "gelu": 8,
    "tanh": 4,
    "elu": 3,
    "softplus": 3,
    "mish": 9,
    # element-wise arithmetic
    "add": 1,
    "sub": 1,
    "mul": 1,
    "div": 1,
    "pow": 1,
    "sqrt": 1,
    "rsqrt": 1,
    "reciprocal": 1,
    "exp": 1,
    "log": 1,
    "neg": 1,
    "abs": 1,
    "erf": 1,
    "maximum": 1,
    "minimum": 1,
    "where": 1,
    "compare": 1,
    "logical": 1,
    "cast": 0,
    "fill": 0,
    # normalisation (inference)
    "batch_norm": 2,
    "layer_norm": 5,
    "group_norm": 5,
    "instance_norm": 5,
    "rms_norm": 4,
    # softmax
    "softmax": 5,
    "log_softmax": 5,
}


def _per_element(flops_per_element: int) -> Formula:
    def per_output_element(op: Op) -> Work:
        """the op's FLOPs per element (the per-element table) x output elements; 0 MACs."""
        return Work(flops=flops_per_element * sum(t.numel for t in op.outputs))

    return per_output_element


for _name, _flops in PER_ELEMENT_FLOPS.items():
    formula(_name)(_per_element(_flops))


# Local response normalisation (AlexNet, GoogLeNet; ONNX LRN, nn.LocalResponseNorm):
# y = x / (bias + alpha / size * sum of x^2 over `size` neighbouring channels)^beta.
# Per output element: size squares and size - 1 adds for the window sum, then the scale,
# the bias add, the power and the divide (4); every window counted at its nominal size,
# the ones the channel edges clip too, as the pooling formulas count padded windows.
@formula("lrn")
def lrn(op: Op) -> Work:
    """output elements x (2 x size + 3) FLOPs: size squares, size - 1 adds, scale, bias add, power, divide; 0 MACs."""
    return Work(flops=op.outputs[0].numel * (2 * op.attrs["size"] + 3))


# --- pooling, reductions, resizing -------------------------------------------------


@formula("max_pool", "avg_pool", "lp_pool")
def window_pool(op: Op) -> Work:
    """output elements x kernel window size FLOPs (one per window element); 0 MACs."""
    return Work(flops=op.outputs[0].numel * math.prod(op.attrs["kernel"]))


def _adaptive_window_sum(in_size: int, out_size: int) -> int:
    # PyTorch's adaptive windows: [floor(i*In/Out), ceil((i+1)*In/Out)) per output i.
    return sum(-(-(i + 1) * in_size // out_size) - (i * in_size // out_size) for i in range(out_size))


@formula("adaptive_avg_pool", "adaptive_max_pool")
def adaptive_pool(op: Op) -> Work:
    """one FLOP per element of each output's window (PyTorch's adaptive windows); 0 MACs."""
    x, y = op.inputs[0], op.outputs[0]
    spatial = len(op.attrs["output_size"])
    leading = math.prod(x.shape[: len(x.shape) - spatial])
    visits = math.prod(
        _adaptive_window_sum(i, o) for i, o in zip(x.shape[-spatial:], y.shape[-spatial:])
    )
    return Work(flops=leading * visits)


@formula("reduce")
def reduce(op: Op) -> Work:
    """input elements FLOPs (one per element reduced); 0 MACs."""
    return Work(flops=op.inputs[0].numel)


# FLOPs per output element of an interpolation over d spatial dims:
# nearest copies (0); linear blends 2^d neighbours (2^d multiplies, 2^d - 1 adds);
# cubic blends 4^d neighbours.
def _resize_flops_per_element(mode: str, spatial_dims: int) -> int:
    neighbours = {"nearest": 0, "linear": 2, "cubic": 4}[mode] ** spatial_dims
    return max(2 * neighbours - 1, 0)


@formula("resize")
def resize(op: Op) -> Work:
    """output elements x (0 nearest, 2^(d+1) - 1 linear, 2 x 4^d - 1 cubic) FLOPs in d dims; 0 MACs.

    An interpolation blends 2^d (linear) or 4^d (cubic) neighbours per output element:
    one multiply each and one add fewer; nearest copies.
    """
    y = op.outputs[0]
    per_element = _resize_flops_per_element(op.attrs["mode"], len(y.shape) - 2)
    return Work(flops=per_element * y.numel)


# --- data movement (no arithmetic) -------------------------------------------------


@formula("cat", "copy", "pad", "transpose", "expand", "gather", "view", "alloc", "shape")
def data_movement(op: Op) -> Work:
    """0 FLOPs, 0 MACs: data movement, counted in bytes only (`view`, `alloc`, `shape`: none)."""
    return Work(flops=0)


@formula("embedding")
def embedding(op: Op) -> Work:
    """0 FLOPs, 0 MACs: a lookup, counted in bytes (its indices and the rows it selects)."""
    return Work(flops=0)


# --- memory traffic ---------------------------------------------------------------


def _lookup_traffic(op: Op) -> tuple[int, int]:
    # A lookup (embedding, gather) reads its indices and only the rows it selects.
    table, indices, out = op.inputs[0], op.inputs[1], op.outputs[0]
    rows_read = out.numel * DTYPE_BYTES.get(table.dtype, 4)
    return indices.nbytes + rows_read, out.nbytes


def traffic(op: Op) -> tuple[int, int]:
    """Bytes read and bytes written by ``op`` executed on its own (the eager view)."""
    if op.op in FREE_OPS:
        return 0, 0
    if op.op in ("embedding", "gather"):
        return _lookup_traffic(op)
    written = sum(t.nbytes for t in op.outputs)
    if op.op == "fill":
        return 0, written
    distinct = {t.id: t for t in op.inputs}
    return sum(t.nbytes for t in distinct.values()), written

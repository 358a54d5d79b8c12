"""PyTorch front end: record every aten op a forward pass dispatches, on meta tensors.

A ``TorchDispatchMode`` sees each aten op after Python-level dispatch, so functional
calls (``F.conv2d``, ``torch.matmul``) and module calls produce the same record.
Global module hooks keep a stack of module paths so every op is attributed to the
module that ran it. Parameters are replaced by meta tensors through
``torch.func.functional_call``: the user's model is never modified and no real
arithmetic runs. Only when an op cannot run on meta (data-dependent shapes, a custom
op without a meta kernel) is the pass repeated on real tensors, and the graph says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from deploylens.capture.ir import ACTIVATION, BUFFER, CONSTANT, INPUT, PARAM, Graph, Op, Tensor, unique_layer_names
from deploylens.capture.ops import is_neutral, kind_of
from deploylens.dtypes import lookup, torch_dtype
from deploylens.errors import UserError, first_line

# --- aten -> neutral op table ------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """How one aten op maps onto a neutral op.

    ``inputs`` picks and orders the tensor arguments the formula expects (default: all
    tensor leaves in argument order); ``attrs`` extracts attributes; only the first
    output is kept when ``first_output_only`` (e.g. max-pool indices, saved BN stats
    that inference never reads).
    """

    op: str | Callable[[Sequence[Any]], str]
    inputs: Callable[[Sequence[Any]], list] | None = None
    attrs: Callable[[Sequence[Any]], dict] | None = None
    first_output_only: bool = False


def _spatial(values: Sequence[int] | int, dims: int) -> tuple[int, ...]:
    values = [values] if isinstance(values, int) else list(values)
    return tuple(values * dims if len(values) == 1 else values)


def _pool_attrs(args: Sequence[Any]) -> dict:
    dims = args[0].dim() - 2
    return {"kernel": _spatial(args[1], dims)}


def _adaptive_attrs(args: Sequence[Any]) -> dict:
    return {"output_size": tuple(args[1]) if not isinstance(args[1], int) else (args[1],)}


def _mm_attrs(args: Sequence[Any]) -> dict:
    return {"k": args[0].shape[-1]}


def _resize(mode: str) -> _Spec:
    return _Spec("resize", inputs=lambda a: [a[0]], attrs=lambda a: {"mode": mode})


def _same(op: str, first_output_only: bool = False) -> _Spec:
    return _Spec(op, first_output_only=first_output_only)


_VIEWS = ["view", "_unsafe_view", "reshape", "_reshape_alias", "t", "transpose", "permute", "expand",
          "squeeze", "unsqueeze", "select", "slice", "split", "split_with_sizes", "unbind", "narrow",
          "alias", "detach", "as_strided", "unflatten", "view_as_real", "view_as_complex", "lift_fresh",
          "diagonal", "unfold", "chunk", "flatten", "movedim", "_neg_view", "_conj", "expand_as"]
_ALLOCS = ["empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "scalar_tensor"]
_FILLS = ["fill", "zero", "zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "arange",
          "new_zeros", "new_ones", "new_full", "linspace"]

TORCH_OPS: dict[str, _Spec] = {
    **{name: _Spec("view") for name in _VIEWS},
    **{name: _Spec("alloc") for name in _ALLOCS},
    **{name: _Spec("fill") for name in _FILLS},
    "convolution": _Spec(
        lambda a: "conv_transpose" if a[6] else "conv",
        inputs=lambda a: [t for t in a[:3] if t is not None],
        attrs=lambda a: {"stride": tuple(a[3]), "padding": tuple(a[4]), "dilation": tuple(a[5]), "groups": a[8]},
    ),
    "mm": _Spec("matmul", attrs=_mm_attrs),
    "bmm": _Spec("matmul", attrs=_mm_attrs),
    "mv": _Spec("matmul", attrs=_mm_attrs),
    "dot": _Spec("matmul", attrs=_mm_attrs),
    "addmm": _Spec("matmul", inputs=lambda a: [a[1], a[2], a[0]], attrs=lambda a: _mm_attrs(a[1:])),
    "baddbmm": _Spec("matmul", inputs=lambda a: [a[1], a[2], a[0]], attrs=lambda a: _mm_attrs(a[1:])),
    "addmv": _Spec("matmul", inputs=lambda a: [a[1], a[2], a[0]], attrs=lambda a: _mm_attrs(a[1:])),
    **{name: _Spec("attention", inputs=lambda a: list(a[:3]), first_output_only=True)
       for name in ["_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_efficient_attention",
                    "_scaled_dot_product_flash_attention", "_scaled_dot_product_cudnn_attention",
                    "_scaled_dot_product_fused_attention_overrideable"]},
    "native_batch_norm": _Spec(
        lambda a: "instance_norm" if a[5] else "batch_norm",
        inputs=lambda a: [t for t in a[:5] if t is not None], first_output_only=True),
    "_native_batch_norm_legit_no_training": _Spec(
        "batch_norm", inputs=lambda a: [t for t in a[:5] if t is not None], first_output_only=True),
    "_native_batch_norm_legit": _Spec(
        lambda a: "instance_norm" if a[5] else "batch_norm",
        inputs=lambda a: [t for t in a[:5] if t is not None], first_output_only=True),
    "native_layer_norm": _Spec("layer_norm", first_output_only=True),
    "native_group_norm": _Spec("group_norm", first_output_only=True),
    "_fused_rms_norm": _Spec("rms_norm", first_output_only=True),
    **{name: _Spec("max_pool", inputs=lambda a: [a[0]], attrs=_pool_attrs, first_output_only=True)
       for name in ["max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices",
                    "max_pool3d_with_indices", "mkldnn_max_pool2d"]},
    **{name: _Spec("avg_pool", inputs=lambda a: [a[0]], attrs=_pool_attrs)
       for name in ["avg_pool1d", "avg_pool2d", "avg_pool3d"]},
    **{name: _Spec("adaptive_avg_pool", inputs=lambda a: [a[0]], attrs=_adaptive_attrs)
       for name in ["_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_avg_pool1d"]},
    **{name: _Spec("adaptive_max_pool", inputs=lambda a: [a[0]], attrs=_adaptive_attrs, first_output_only=True)
       for name in ["adaptive_max_pool2d", "adaptive_max_pool3d", "adaptive_max_pool1d"]},
    "relu": _same("relu"),
    "hardtanh": _Spec("clamp", inputs=lambda a: [a[0]]),
    "relu6": _Spec("clamp", inputs=lambda a: [a[0]]),
    "clamp": _Spec("clamp"),
    "clamp_min": _Spec("clamp"),
    "clamp_max": _Spec("clamp"),
    "threshold": _Spec("clamp", inputs=lambda a: [a[0]]),
    "leaky_relu": _same("leaky_relu"),
    "_prelu_kernel": _same("prelu"),
    "prelu": _same("prelu"),
    "hardswish": _same("hardswish"),
    "hardsigmoid": _same("hardsigmoid"),
    "sigmoid": _same("sigmoid"),
    "silu": _same("silu"),
    "gelu": _same("gelu"),
    "tanh": _same("tanh"),
    "elu": _same("elu"),
    "celu": _same("elu"),
    "selu": _same("elu"),
    "softplus": _same("softplus"),
    "mish": _same("mish"),
    **{name: _same(name) for name in ["add", "sub", "mul", "div", "pow", "sqrt", "rsqrt", "reciprocal", "exp",
                                       "log", "neg", "abs", "erf", "maximum", "minimum", "where"]},
    "rsub": _same("sub"),
    "masked_fill": _same("where"),
    **{name: _same("compare") for name in ["eq", "ne", "lt", "le", "gt", "ge"]},
    **{name: _same("logical") for name in ["logical_and", "logical_or", "logical_not", "bitwise_and",
                                            "bitwise_or", "bitwise_not"]},
    "_softmax": _same("softmax"),
    "_safe_softmax": _same("softmax"),
    "_log_softmax": _same("log_softmax"),
    **{name: _same("reduce", first_output_only=True)
       for name in ["mean", "sum", "amax", "amin", "max", "min", "var", "std", "var_mean", "std_mean", "argmax",
                    "argmin", "prod", "linalg_vector_norm", "norm", "logsumexp", "any", "all"]},
    **{name: _resize("nearest") for name in ["upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d",
                                             "_upsample_nearest_exact1d", "_upsample_nearest_exact2d",
                                             "_upsample_nearest_exact3d"]},
    **{name: _resize("linear") for name in ["upsample_linear1d", "upsample_bilinear2d", "upsample_trilinear3d",
                                            "_upsample_bilinear2d_aa"]},
    **{name: _resize("cubic") for name in ["upsample_bicubic2d", "_upsample_bicubic2d_aa"]},
    "cat": _same("cat"),
    "stack": _same("cat"),
    "clone": _same("copy"),
    "copy": _Spec("copy", inputs=lambda a: [a[1]]),
    "_to_copy": _same("cast"),
    **{name: _Spec("pad", inputs=lambda a: [a[0]])
       for name in ["constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d",
                    "replication_pad1d", "replication_pad2d", "replication_pad3d"]},
    "embedding": _Spec("embedding", inputs=lambda a: [a[0], a[1]]),
    "index_select": _Spec("gather", inputs=lambda a: [a[0], a[2]]),
    "gather": _Spec("gather", inputs=lambda a: [a[0], a[2]]),
    "index": _Spec("gather", inputs=lambda a: [a[0], *[t for t in a[1] if t is not None]]),
}


def _is_zero_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0


def _native_name(func) -> str:
    packet = func.overloadpacket.__name__
    # in-place variants (relu_, add_) cost what their out-of-place forms cost
    return packet[:-1] if packet.endswith("_") and not packet.endswith("__") else packet


def _bn_eval_on_meta(x, *rest):
    # inference BN's meta kernel is a slow Python decomposition; its result is just
    # an input-shaped tensor plus two empty saved statistics
    empty = x.new_empty((0,))
    return torch.empty_like(x), empty, empty


_META_SHORTCUTS = {
    torch.ops.aten._native_batch_norm_legit_no_training.default: _bn_eval_on_meta,
    torch.ops.aten.native_batch_norm.default: lambda x, *rest: (
        _bn_eval_on_meta(x) if not rest[4] else torch.ops.aten.native_batch_norm.default(x, *rest)),
}

# --- recording ---------------------------------------------------------------------


def _stored_elements(obj: torch.Tensor, shape: tuple[int, ...]) -> int | None:
    """Elements a broadcast view (a stride-0 dim, as ``expand`` makes) occupies in
    memory; None for any other tensor."""
    try:
        strides = obj.stride()
    except (RuntimeError, NotImplementedError):  # a layout without strides (sparse, nested)
        return None
    if not any(stride == 0 and size > 1 for size, stride in zip(shape, strides)):
        return None
    return math.prod(size for size, stride in zip(shape, strides) if stride != 0)


@dataclass
class _Recording:
    ops: list[Op] = field(default_factory=list)
    tensors: dict[int, Tensor] = field(default_factory=dict)  # id(torch tensor) -> latest SSA value
    keep_alive: list = field(default_factory=list)  # ids must not be reused while recording
    state: dict[str, Tensor] = field(default_factory=dict)  # parameter/buffer name -> its value
    inputs: list[Tensor] = field(default_factory=list)
    cost_dtype: str | None = None  # cost float tensors as this type (int8: shapes run in float32)
    next_id: int = 0

    def new_tensor(self, obj: torch.Tensor, role: str, name: str | None = None) -> Tensor:
        dtype = str(obj.dtype).removeprefix("torch.")
        if self.cost_dtype and obj.is_floating_point():
            dtype = self.cost_dtype
        shape = tuple(int(d) for d in obj.shape)
        record = Tensor(self.next_id, shape, dtype, role, name, _stored_elements(obj, shape))
        self.next_id += 1
        self.tensors[id(obj)] = record
        self.keep_alive.append(obj)
        return record

    def lookup(self, obj: torch.Tensor) -> Tensor:
        known = self.tensors.get(id(obj))
        # a tensor created outside the dispatch (e.g. a captured Python constant)
        return known if known is not None else self.new_tensor(obj, CONSTANT)


# Modules costed as one op of the IR table, not as the aten ops their Python forward
# decomposes into: F.local_response_norm runs nine element-wise, pad and pooling ops in
# eager PyTorch, where ONNX's LRN node and the runtimes' LRN kernels are one op.
MODULE_OPS: dict[type, tuple[str, Callable[[torch.nn.Module], dict]]] = {
    torch.nn.LocalResponseNorm: ("lrn", lambda m: {"size": m.size, "alpha": m.alpha, "beta": m.beta, "bias": m.k}),
}


class _ModuleStack:
    """Module paths of the forward calls in progress, innermost last; a module of
    :data:`MODULE_OPS` has the ops it ran replaced by its one op."""

    def __init__(self, model: torch.nn.Module, recording: "_Recording"):
        self.names = {id(m): name for name, m in model.named_modules()}
        self.recording = recording
        self.stack: list[str] = []
        self.handles: list = []
        self.whole: tuple | None = None  # (module, index of its first op, its input) while one runs

    def __enter__(self) -> "_ModuleStack":
        def push(module, args):
            self.stack.append(self.names.get(id(module), self.stack[-1] if self.stack else ""))
            if self.whole is None and type(module) in MODULE_OPS and args and isinstance(args[0], torch.Tensor):
                self.whole = (module, len(self.recording.ops), self.recording.lookup(args[0]))

        def pop(module, args, output):
            if self.whole is not None and self.whole[0] is module:
                self._replace_by_one_op(output)
            if self.stack:
                self.stack.pop()

        self.handles = [
            torch.nn.modules.module.register_module_forward_pre_hook(push),
            torch.nn.modules.module.register_module_forward_hook(pop, always_call=True),
        ]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()

    @property
    def current(self) -> str:
        return self.stack[-1] if self.stack else ""

    def _replace_by_one_op(self, output: Any) -> None:
        module, first, source = self.whole
        self.whole = None
        if not isinstance(output, torch.Tensor):  # its forward raised: nothing to replace
            return
        rec = self.recording
        del rec.ops[first:]
        op_name, attrs = MODULE_OPS[type(module)]
        result = rec.tensors.get(id(output)) or rec.new_tensor(output, ACTIVATION)
        rec.ops.append(Op("", self.current, kind_of(op_name), op_name, f"nn.{type(module).__name__}",
                          [source], [result], attrs(module)))


class _Recorder(TorchDispatchMode):
    def __init__(self, recording: _Recording, modules: _ModuleStack):
        super().__init__()
        self.recording = recording
        self.modules = modules

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        shortcut = _META_SHORTCUTS.get(func) if args and getattr(args[0], "is_meta", False) else None
        out = shortcut(*args) if shortcut else func(*args, **kwargs)
        self._record(func, args, kwargs, out)
        return out

    def _record(self, func, args, kwargs, out) -> None:
        native = _native_name(func)
        spec = TORCH_OPS.get(native)
        leaves = [x for x in tree_flatten((args, kwargs))[0] if isinstance(x, torch.Tensor)]
        in_objs = spec.inputs(args) if spec and spec.inputs else leaves
        rec = self.recording
        inputs = [rec.lookup(t) for t in in_objs]
        op_name = (spec.op(args) if callable(spec.op) else spec.op) if spec else native
        out_objs = [x for x in tree_flatten(out)[0] if isinstance(x, torch.Tensor)]
        if spec and spec.first_output_only:
            out_objs = out_objs[:1]
        if op_name == "view" and inputs:
            # a view of a parameter is still that parameter (e.g. weight.t() in linear)
            role, name = inputs[0].role, inputs[0].name
        elif inputs and all(t.is_state for t in inputs):
            role, name = CONSTANT, None
        else:
            role, name = ACTIVATION, None
        outputs = [rec.new_tensor(t, role, name) for t in out_objs]
        kind = kind_of(op_name, operands_are_state=any(t.is_state for t in inputs[:2]))
        attrs = spec.attrs(args) if spec and spec.attrs else {}
        if op_name in ("add", "sub") and len(args) > 1 and _is_zero_number(args[1]) and kwargs.get("alpha", 1) == 1:
            attrs["adds_zero"] = True  # x + 0: a branch sum started from 0
        if not is_neutral(op_name):
            op_name = f"aten.{native}"
        rec.ops.append(Op("", self.modules.current, kind, op_name, f"aten.{func.overloadpacket.__name__}",
                          inputs, outputs, attrs))


# --- entry point -------------------------------------------------------------------


def _run(model: torch.nn.Module, state: dict[str, torch.Tensor], roles: dict[str, str],
         inputs: list[torch.Tensor], cost_dtype: str | None) -> tuple[_Recording, Any]:
    recording = _Recording(cost_dtype=cost_dtype)
    for name, obj in state.items():
        shared = recording.tensors.get(id(obj))  # shared weights are one tensor
        recording.state[name] = shared or recording.new_tensor(obj, roles[name], name)
    recording.inputs = [recording.new_tensor(obj, INPUT) for obj in inputs]
    with torch.no_grad(), _ModuleStack(model, recording) as modules, _Recorder(recording, modules):
        out = torch.func.functional_call(model, state, tuple(inputs), tie_weights=False)
    return recording, out


def _state(model: torch.nn.Module, dtype: torch.dtype | None, meta: bool) -> tuple[dict, dict]:
    """Copies of every parameter and buffer, shared tensors shared: empty ones on the
    meta device, else copies of their values, so that a forward pass that writes its
    state (a running statistic, a counter) leaves the model's own alone."""
    state: dict[str, torch.Tensor] = {}
    roles: dict[str, str] = {}
    copies: dict[int, torch.Tensor] = {}
    named = [(n, t, PARAM) for n, t in model.named_parameters(remove_duplicate=False)]
    named += [(n, t, BUFFER) for n, t in model.named_buffers(remove_duplicate=False)]
    for name, tensor, role in named:
        if id(tensor) not in copies:
            cast = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
            copies[id(tensor)] = (torch.empty_like(tensor, device="meta", dtype=cast) if meta
                                  else tensor.detach().to(cast, copy=True))
        state[name] = copies[id(tensor)]
        roles[name] = role
    return state, roles


def _without_unused_allocations(ops: list[Op]) -> list[Op]:
    # kernels allocate scratch outputs (e.g. BN's saved statistics) that nothing reads
    read = {t.id for op in ops for t in op.inputs}
    return [op for op in ops if op.op != "alloc" or any(t.id in read for t in op.outputs)]


def capture_torch(model: torch.nn.Module, input_specs: list[tuple[tuple[int, ...], str]], dtype: str,
                  name: str) -> Graph:
    """Capture ``model`` run on inputs of the given (shape, dtype) into a :class:`Graph`."""
    # integer costing (int8 deployment): shapes are run in float32, tensors costed as int8
    integer = not lookup(dtype).floating
    run_dtype = torch.float32 if integer else torch_dtype(dtype)
    cost_dtype = dtype if integer else None
    # inference costs: every module runs in eval mode, and gets its own mode back after
    training = {module: module.training for module in model.modules()}
    model.eval()
    try:
        return _capture_in_eval_mode(model, input_specs, run_dtype, cost_dtype, dtype, name)
    finally:
        for module, mode in training.items():
            module.training = mode


def _capture_in_eval_mode(model: torch.nn.Module, input_specs: list[tuple[tuple[int, ...], str]],
                          run_dtype: torch.dtype, cost_dtype: str | None, dtype: str, name: str) -> Graph:
    notes: list[str] = []

    def make_inputs(device: str) -> list[torch.Tensor]:
        made = []
        for shape, in_dtype in input_specs:
            dt = run_dtype if in_dtype == "float" else torch_dtype(in_dtype)
            made.append(torch.empty(shape, dtype=dt, device=device) if device == "meta"
                        else (torch.randn(shape, dtype=dt) if dt.is_floating_point else torch.zeros(shape, dtype=dt)))
        return made

    try:
        state, roles = _state(model, run_dtype, meta=True)
        recording, out = _run(model, state, roles, make_inputs("meta"), cost_dtype)
    except Exception as meta_error:  # noqa: BLE001 - any failure on meta is retried on real tensors
        try:
            state, roles = _state(model, run_dtype, meta=False)
            recording, out = _run(model, state, roles, make_inputs("cpu"), cost_dtype)
        except Exception as real_error:  # noqa: BLE001 - the model's own error, reported in one line
            shapes = ", ".join(str(list(s)) for s, _ in input_specs)
            raise UserError(f"input shape {shapes} does not fit the model: {first_line(real_error)}") from real_error
        notes.append(f"ran on real tensors: an op could not run on meta ({first_line(meta_error)[:120]})")

    ops = _without_unused_allocations(recording.ops)
    zero_adds = sum(1 for op in ops if op.attrs.get("adds_zero"))
    if zero_adds:
        notes.append(f"{zero_adds} add(s) of the number 0 (x + 0, as a branch sum started from 0) counted as eager "
                     "PyTorch runs them; an ONNX export drops them")
    unique_layer_names(ops, {name for name, m in model.named_modules() if name and not any(m.children())})
    unique_state = {record.id: record for record in recording.state.values()}.values()
    params = [t for t in unique_state if t.role == PARAM]
    buffers = [t for t in unique_state if t.role == BUFFER]
    graph_outputs = [recording.tensors[id(o)] for o in tree_flatten(out)[0]
                     if isinstance(o, torch.Tensor) and id(o) in recording.tensors]
    return Graph(name, "torch", dtype, recording.inputs, graph_outputs, ops, params, buffers, notes)

"""ONNX front end: map each node onto the same neutral ops the PyTorch front end uses.

Shapes come from :mod:`deploylens.capture.onnx_shapes` (ONNX shape inference, else one
ONNX Runtime run). Subgraphs that depend only on weights and constants (shape
arithmetic, weight reshapes) are folded, as ONNX Runtime folds them when it creates a
session, and cost nothing.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

from deploylens.errors import UserError
from deploylens.dtypes import FLOAT_DTYPES
from deploylens.capture.ir import ACTIVATION, BUFFER, CONSTANT, INPUT, PARAM, Graph, Op, Tensor
from deploylens.capture.onnx_shapes import dtype_name, tensor_shapes
from deploylens.capture.ops import is_neutral, kind_of

# --- loading -----------------------------------------------------------------------


def _check_external_locations(model: onnx.ModelProto, base_dir: Path) -> None:
    """Refuse external-data locations that leave the model's own folder."""
    base = base_dir.resolve()
    tensors = list(model.graph.initializer)
    tensors += [a.t for n in model.graph.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR]
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (base / location).resolve()
        if not location or os.path.isabs(location) or ".." in Path(location).parts or base not in target.parents:
            raise UserError(f"refusing external data location {location!r} of tensor {tensor.name!r}: "
                            f"it must be a file inside {base}")
        if not target.is_file():
            raise UserError(f"external data file {location!r} of tensor {tensor.name!r} not found in {base}")


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Load an ONNX file, its external data only from inside its own folder."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as error:
        raise UserError(f"{path} is not a readable ONNX model (truncated or another format): {error}") from error
    if model.ir_version <= 0 or not model.graph.node:
        raise UserError(f"{path} is not an ONNX model (no graph)")
    _check_external_locations(model, path.parent)
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read the external data of {path}: {error}") from error
    return model


# --- node -> neutral op table ------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    op: str | Callable[[onnx.NodeProto, list[Tensor]], str]
    inputs: tuple[int, ...] | None = None  # which node inputs the formula reads (default: all)
    attrs: Callable[[dict, list[Tensor]], dict] | None = None
    first_output_only: bool = False


def _gemm_k(attrs: dict, inputs: list[Tensor]) -> dict:
    a = inputs[0].shape
    return {"k": a[0] if attrs.get("transA", 0) else a[-1]}


def _resize_mode(attrs: dict, inputs: list[Tensor]) -> dict:
    mode = attrs.get("mode", b"nearest")
    return {"mode": mode.decode() if isinstance(mode, bytes) else mode}


def _kernel(attrs: dict, inputs: list[Tensor]) -> dict:
    return {"kernel": tuple(attrs["kernel_shape"])}


def _global(attrs: dict, inputs: list[Tensor]) -> dict:
    return {"output_size": (1,) * (len(inputs[0].shape) - 2)}


def _lookup_op(node: onnx.NodeProto, inputs: list[Tensor]) -> str:
    axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
    if inputs[0].is_state and axis == 0:
        return "embedding"
    # a constant scalar index selects one slice: a view, like torch's select
    return "view" if inputs[1].is_state and inputs[1].numel == 1 else "gather"


_FIRST = (0,)
ONNX_OPS: dict[str, _Spec] = {
    "Conv": _Spec("conv"),
    "ConvTranspose": _Spec("conv_transpose"),
    "Gemm": _Spec("matmul", attrs=_gemm_k),
    "MatMul": _Spec("matmul", attrs=lambda a, i: {"k": i[0].shape[-1]}),
    "Einsum": _Spec("einsum", attrs=lambda a, i: {"equation": a["equation"].decode()}),
    "Attention": _Spec("attention", inputs=(0, 1, 2), attrs=lambda a, i: {"heads": a.get("q_num_heads", 1)},
                       first_output_only=True),
    "BatchNormalization": _Spec("batch_norm", first_output_only=True),
    "LayerNormalization": _Spec("layer_norm", first_output_only=True),
    "GroupNormalization": _Spec("group_norm"),
    "InstanceNormalization": _Spec("instance_norm"),
    "RMSNormalization": _Spec("rms_norm"),
    "LRN": _Spec("lrn", attrs=lambda a, i: {"size": a["size"], "alpha": a.get("alpha", 1e-4),
                                             "beta": a.get("beta", 0.75), "bias": a.get("bias", 1.0)}),
    "MaxPool": _Spec("max_pool", inputs=_FIRST, attrs=_kernel, first_output_only=True),
    "AveragePool": _Spec("avg_pool", inputs=_FIRST, attrs=_kernel),
    "LpPool": _Spec("lp_pool", inputs=_FIRST, attrs=_kernel),
    "GlobalAveragePool": _Spec("adaptive_avg_pool", attrs=_global),
    "GlobalMaxPool": _Spec("adaptive_max_pool", attrs=_global),
    "Relu": _Spec("relu"),
    "Clip": _Spec("clamp", inputs=_FIRST),
    "LeakyRelu": _Spec("leaky_relu"),
    "PRelu": _Spec("prelu"),
    "HardSwish": _Spec("hardswish"),
    "HardSigmoid": _Spec("hardsigmoid"),
    "Sigmoid": _Spec("sigmoid"),
    "Swish": _Spec("silu"),
    "Tanh": _Spec("tanh"),
    "Gelu": _Spec("gelu"),
    "Elu": _Spec("elu"),
    "Celu": _Spec("elu"),
    "Selu": _Spec("elu"),
    "Softplus": _Spec("softplus"),
    "Mish": _Spec("mish"),
    **{name: _Spec(name.lower()) for name in ["Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Exp",
                                               "Log", "Neg", "Abs", "Erf", "Where"]},
    "Sum": _Spec("add"),
    "Max": _Spec("maximum"),
    "Min": _Spec("minimum"),
    **{name: _Spec("compare") for name in ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"]},
    **{name: _Spec("logical") for name in ["And", "Or", "Not", "Xor"]},
    "Cast": _Spec("cast"),
    "QuantizeLinear": _Spec("cast", inputs=_FIRST),
    "DequantizeLinear": _Spec("cast", inputs=_FIRST),
    "Softmax": _Spec("softmax"),
    "LogSoftmax": _Spec("log_softmax"),
    **{name: _Spec("reduce", inputs=_FIRST) for name in
       ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin"]},
    "Resize": _Spec("resize", inputs=_FIRST, attrs=_resize_mode),
    "Upsample": _Spec("resize", inputs=_FIRST, attrs=_resize_mode),
    "Concat": _Spec("cat"),
    **{name: _Spec("view", inputs=_FIRST) for name in
       ["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Split", "Slice",
        "SplitToSequence", "SequenceAt"]},
    "ConcatFromSequence": _Spec("cat"),
    "Transpose": _Spec("transpose", attrs=lambda a, i: {"perm": tuple(a.get("perm", range(len(i[0].shape))[::-1]))}),
    "DepthToSpace": _Spec("transpose"),
    "SpaceToDepth": _Spec("transpose"),
    "Expand": _Spec("expand", inputs=_FIRST),
    "Tile": _Spec("copy", inputs=_FIRST),
    "Pad": _Spec("pad", inputs=_FIRST),
    "Gather": _Spec(_lookup_op, attrs=lambda a, i: {"axis": a.get("axis", 0)}),
    "GatherElements": _Spec("gather"),
    "GatherND": _Spec("gather"),
    "ConstantOfShape": _Spec("fill", inputs=()),
    "Range": _Spec("fill", inputs=()),
}
# ops whose outputs depend only on input shapes, which are static here
_SHAPE_OPS = frozenset({"Shape", "Size"})
# ops whose subgraphs read activations of the enclosing graph: never folded, even when
# their own inputs (a condition, a trip count) are constants
_CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})
_BN_STATS_SLOTS = (3, 4)  # running mean and variance are buffers, as in PyTorch


# --- module attribution --------------------------------------------------------------


def module_of(node: onnx.NodeProto) -> str:
    """The PyTorch module path an exported node came from, when the exporter kept it."""
    for prop in node.metadata_props:
        if prop.key == "namespace":  # dynamo exporter: ": Seq/0: Block/0.bn: BatchNorm2d/op: aten.op"
            scopes = [part.split(":")[0].strip() for part in prop.value.split("/")]
            return scopes[-2] if len(scopes) >= 2 else ""
    parts = node.name.strip("/").split("/")
    if not node.name.startswith("/") or len(parts) < 2:
        return ""
    path = ""  # TorchScript exporter: "/layer1/layer1.0/conv1/Conv"
    for scope in parts[:-1]:
        path = scope if path and scope.startswith(path + ".") else f"{path}.{scope}" if path else scope
    return path


# --- rewrites: cost an export as its PyTorch module is costed -------------------------


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def view_strides(old_shape: tuple[int, ...], old_strides: tuple[int, ...],
                 new_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Strides that let ``new_shape`` view a tensor laid out as ``old_strides``, or
    None when the reshape needs a copy (PyTorch's rule for ``Tensor.view``)."""
    if not old_shape:
        return _contiguous_strides(new_shape)
    new_strides = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    chunk_base_stride = old_strides[-1]
    tensor_numel = view_numel = 1
    for tensor_d in range(len(old_shape) - 1, -1, -1):
        tensor_numel *= old_shape[tensor_d]
        if tensor_d == 0 or (old_shape[tensor_d - 1] != 1
                             and old_strides[tensor_d - 1] != tensor_numel * chunk_base_stride):
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                new_strides[view_d] = view_numel * chunk_base_stride
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if tensor_d > 0:
                chunk_base_stride = old_strides[tensor_d - 1]
                tensor_numel = view_numel = 1
    return tuple(new_strides) if view_d == -1 else None


_RESHAPES = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})


def _lazy_transposes(ops: list[Op]) -> None:
    """Cost a Transpose where the data really has to move, as PyTorch does.

    In PyTorch a transpose is a view; kernels read strided inputs, and the data is
    rearranged only where a reshape cannot view the permuted layout (the
    ``.contiguous()`` before a channel shuffle's final view). ONNX makes every Transpose
    a node; here it becomes a view that carries its strides, and the first reshape
    that cannot view them becomes the copy.
    """
    strides: dict[int, tuple[int, ...]] = {}  # non-contiguous views only
    for op in ops:
        if not op.inputs or not op.outputs:
            continue
        source, out = op.inputs[0], op.outputs[0]
        layout = strides.get(source.id, _contiguous_strides(source.shape))
        if op.op == "transpose":
            op.op, op.kind = "view", "data_movement"
            permuted = tuple(layout[axis] for axis in op.attrs["perm"])
            if permuted != _contiguous_strides(out.shape):
                strides[out.id] = permuted
        elif source.id in strides and op.op == "view":
            if op.native in _RESHAPES:
                viewed = view_strides(source.shape, layout, out.shape)
                if viewed is None:
                    op.op = "copy"
                elif viewed != _contiguous_strides(out.shape):
                    strides[out.id] = viewed
            elif op.native == "Gather":  # a select drops its axis
                axis = op.attrs.get("axis", 0) % len(layout)
                strides[out.id] = layout[:axis] + layout[axis + 1:]
            else:  # slices and splits keep the strides of what they slice
                for piece in op.outputs:
                    strides[piece.id] = layout


def _merge_matmul_bias(ops: list[Op], graph_outputs: set[int]) -> list[Op]:
    """MatMul followed by Add of a bias vector runs as one GEMM (ONNX Runtime's
    MatMul+Add fusion; PyTorch's addmm)."""
    readers: dict[int, list[Op]] = {}
    for op in ops:
        for t in op.inputs:
            readers.setdefault(t.id, []).append(op)
    merged: set[int] = set()
    for op in ops:
        if op.op != "matmul" or len(op.inputs) != 2 or op.outputs[0].id in graph_outputs:
            continue
        after = readers.get(op.outputs[0].id, [])
        if len(after) == 1 and after[0].op == "add":
            bias = [t for t in after[0].inputs if t.id != op.outputs[0].id]
            if len(bias) == 1 and bias[0].is_state and len(bias[0].shape) == 1:
                op.inputs.append(bias[0])
                op.outputs = after[0].outputs
                merged.add(id(after[0]))
    return [op for op in ops if id(op) not in merged]


# --- capture -----------------------------------------------------------------------


def _initializer_roles(graph: onnx.GraphProto) -> dict[str, str]:
    """Float tensors that feed weight slots are parameters; BN running stats buffers."""
    slot_roles: dict[str, set] = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            role = BUFFER if node.op_type == "BatchNormalization" and slot in _BN_STATS_SLOTS else PARAM
            slot_roles.setdefault(name, set()).add(role)
    quantized = {n.input[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    roles = {}
    for init in graph.initializer:
        # float weights, and the integer weights of a quantized (QDQ) model
        is_weight = ((dtype_name(init.data_type) in FLOAT_DTYPES or init.name in quantized)
                     and np.prod(init.dims, dtype=np.int64) > 1)
        used_as = slot_roles.get(init.name, set())
        roles[init.name] = (PARAM if PARAM in used_as else BUFFER) if is_weight and used_as else CONSTANT
    return roles



def _aliases_note(graph: onnx.GraphProto, aliases: dict[str, str], shapes: dict) -> str | None:
    """What initializers read through Identity nodes would count as separate tensors.

    The TorchScript exporter stores equal-valued tensors once: the one it keeps is read
    directly, the others through Identity nodes (a freshly initialised BatchNorm's weight
    of ones is also its running variance, and every other of that width). An Identity
    that merely passes a weight on (the only reader of it) is no copy.
    """
    direct = {name for n in graph.node if n.op_type != "Identity" for name in n.input}
    by_source: dict[str, list[str]] = {}
    for alias, source in aliases.items():
        by_source.setdefault(source, []).append(alias)
    copies = [alias for source, names in by_source.items() for alias in (names if source in direct else names[1:])]
    if not copies:
        return None
    stats = {name for n in graph.node if n.op_type == "BatchNormalization"
             for slot, name in enumerate(n.input) if slot in _BN_STATS_SLOTS}
    buffers = sum(math.prod(shapes[name][0]) for name in copies if name in stats)
    params = sum(math.prod(shapes[name][0]) for name in copies if name not in stats)
    sources = len({aliases[name] for name in copies})
    return (f"{len(copies)} initializers are Identity copies of {sources} others of equal value (the exporter "
            f"stores equal tensors once): counted once, {params:,} params and {buffers:,} buffer elements fewer "
            "than as separate tensors")


def capture_onnx(model: onnx.ModelProto, input_specs: list[tuple[tuple[int, ...], str]] | None,
                 dtype: str | None, name: str) -> Graph:
    notes: list[str] = []
    inferred, shapes = tensor_shapes(model, input_specs, notes)
    graph = inferred.graph

    def retype(t_dtype: str) -> str:
        return dtype if dtype and t_dtype in FLOAT_DTYPES else t_dtype

    counter = iter(range(1 << 62))
    values: dict[str, Tensor] = {}
    roles = _initializer_roles(graph)
    params, buffers = [], []
    for init in graph.initializer:
        shape, t_dtype = shapes[init.name]
        values[init.name] = Tensor(next(counter), shape, retype(t_dtype), roles[init.name], init.name)
        if roles[init.name] in (PARAM, BUFFER):
            (params if roles[init.name] == PARAM else buffers).append(values[init.name])
    graph_inputs = []
    for value in graph.input:
        if value.name not in values:
            shape, t_dtype = shapes[value.name]
            values[value.name] = Tensor(next(counter), shape, retype(t_dtype), INPUT, value.name)
            graph_inputs.append(values[value.name])

    ops: list[Op] = []
    names_seen: set[str] = set()
    folded = 0
    aliases: dict[str, str] = {}  # Identity output -> the initializer it reads
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant":
            value = numpy_helper.to_array(next(a.t for a in node.attribute if a.name == "value")) \
                if any(a.name == "value" for a in node.attribute) else np.zeros(())
            values[node.output[0]] = Tensor(next(counter), tuple(value.shape), value.dtype.name, CONSTANT)
            continue
        spec = ONNX_OPS.get(node.op_type)
        all_inputs = [values[i] for i in node.input if i]
        outputs_named = [o for o in node.output if o]
        if node.op_type in _SHAPE_OPS or (all_inputs and all(t.is_state for t in all_inputs)
                                          and node.op_type not in _CONTROL_FLOW):
            # folded at session creation: weight reshapes and transposes (and a QDQ model's
            # dequantized weights) keep the weight's identity
            is_view = spec is not None and spec.op in ("view", "transpose") or node.op_type == "DequantizeLinear"
            for out in outputs_named:
                shape, t_dtype = shapes[out]
                role, t_name = (all_inputs[0].role, all_inputs[0].name) if is_view else (CONSTANT, None)
                values[out] = Tensor(next(counter), shape, retype(t_dtype), role, t_name)
            if node.op_type == "Identity" and all_inputs[0].role in (PARAM, BUFFER):
                aliases[node.output[0]] = all_inputs[0].name
            folded += 1
            continue
        slots = spec.inputs if spec and spec.inputs is not None else range(len(node.input))
        inputs = []
        for slot in slots:
            if slot < len(node.input) and node.input[slot]:
                tensor = values[node.input[slot]]
                if node.op_type == "BatchNormalization" and slot in _BN_STATS_SLOTS and tensor.role == PARAM:
                    # an exporter may alias equal-valued stats to the weights; the slot says buffer
                    tensor = Tensor(tensor.id, tensor.shape, tensor.dtype, BUFFER, tensor.name)
                inputs.append(tensor)
        if spec and spec.first_output_only:
            outputs_named = outputs_named[:1]
        outputs = []
        for out in outputs_named:
            shape, t_dtype = shapes[out]
            values[out] = Tensor(next(counter), shape, retype(t_dtype), ACTIVATION)
            outputs.append(values[out])
        attrs_raw = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        op_name = (spec.op(node, inputs) if callable(spec.op) else spec.op) if spec else f"onnx.{node.op_type}"
        if not is_neutral(op_name):
            op_name = f"onnx.{node.op_type}"
        kind = kind_of(op_name, operands_are_state=any(t.is_state for t in inputs[:2]))
        # an op the IR does not know keeps the node's own attributes, for a custom formula
        attrs = (spec.attrs(attrs_raw, inputs) if spec.attrs else {}) if spec else attrs_raw
        layer = node.name or f"{node.op_type}_{index}"
        while layer in names_seen:
            layer += "'"
        names_seen.add(layer)
        ops.append(Op(layer, module_of(node), kind, op_name, node.op_type, inputs, outputs, attrs))

    _lazy_transposes(ops)
    ops = _merge_matmul_bias(ops, graph_outputs={values[o.name].id for o in graph.output if o.name in values})
    if folded:
        notes.append(f"{folded} nodes that depend only on weights or shapes folded (cost 0, as at session creation)")
    merged_note = _aliases_note(graph, aliases, shapes) if aliases else None
    if merged_note:
        notes.append(merged_note)
    folded_bn = sum(1 for n in graph.node for p in n.metadata_props
                    if p.key.endswith("rewriter.rule_name") and "FuseBatchNormIntoConv" in p.value)
    if folded_bn:
        notes.append(f"the exporter folded {folded_bn} BatchNorm layer(s) into convs (rewriter rule "
                     "FuseBatchNormIntoConv): params and bytes differ from the PyTorch module by the BN terms")
    graph_outputs = [values[o.name] for o in graph.output if o.name in values]
    model_dtype = dtype or next((t.dtype for t in graph_inputs if t.dtype in FLOAT_DTYPES), "float32")
    return Graph(name, "onnx", model_dtype, graph_inputs, graph_outputs, ops, params, buffers, notes)

"""Shapes of an ONNX model's tensors: its input shapes fixed (from ``--input-shape`` or a
dynamic batch of 1), then ONNX shape inference with data propagation; where inference
leaves a shape unknown, one ONNX Runtime run on generated inputs fills it in."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from deploylens.errors import UserError, first_line
from deploylens.onnx_runtime import session


def dtype_name(elem_type: int) -> str:
    if elem_type == onnx.TensorProto.BFLOAT16:
        return "bfloat16"
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError):
        return "float32"


def is_fixed(dim) -> bool:
    """Whether an ONNX dim has a size. A dim named (``dim_param``), left empty, or written
    as a negative size (Paddle2ONNX and others write -1 for "any") is dynamic."""
    return dim.HasField("dim_value") and dim.dim_value >= 0


def dims_text(dims) -> str:
    """A declared shape as a user reads it: ``[batch, 3, ?, ?]`` (dynamic dims by name or ``?``)."""
    return "[" + ", ".join(str(d.dim_value) if is_fixed(d) else (d.dim_param or "?") for d in dims) + "]"


def _forget_negative_dims(model: onnx.ModelProto) -> None:
    """Make -1 dims of declared shapes unknown, as they mean, so that shape inference
    fills them in instead of finding a conflict."""
    graph = model.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            for dim in value.type.tensor_type.shape.dim:
                if dim.HasField("dim_value") and dim.dim_value < 0:
                    dim.Clear()


def _graph_inputs(model: onnx.ModelProto) -> list:
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def own_input_specs(model: onnx.ModelProto, notes: list[str]) -> list[tuple[tuple[int, ...], str]]:
    """The shapes the model's inputs declare (a float input's kind ``float``, others their
    dtype), a dynamic batch dim set to 1 (and ``notes`` say so); any other dynamic dim
    needs ``--input-shape``."""
    specs = []
    for value in _graph_inputs(model):
        shape = []
        if not value.type.tensor_type.HasField("shape"):
            raise UserError(f"input {value.name!r} declares no shape: pass --input-shape")
        dims = value.type.tensor_type.shape.dim
        for position, dim in enumerate(dims):
            if is_fixed(dim):
                shape.append(dim.dim_value)
                continue
            if position != 0:
                raise UserError(f"input {value.name!r} of shape {dims_text(dims)} has a dynamic dim "
                                f"{position}: pass --input-shape")
            notes.append(f"dynamic batch dim of input {value.name!r} set to 1")
            shape.append(1)
        dtype = dtype_name(value.type.tensor_type.elem_type)
        specs.append((tuple(shape), "float" if dtype.startswith(("float", "bfloat")) else dtype))
    return specs


def _fix_input_shapes(model: onnx.ModelProto, input_specs: list[tuple[tuple[int, ...], str]] | None,
                      notes: list[str]) -> None:
    graph_inputs = _graph_inputs(model)
    if input_specs is None:
        input_specs = own_input_specs(model, notes)
    if len(input_specs) != len(graph_inputs):
        raise UserError(f"the model has {len(graph_inputs)} input(s) "
                        f"({', '.join(i.name for i in graph_inputs)}); {len(input_specs)} shape(s) given")
    for index, value in enumerate(graph_inputs):
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):  # no declared shape: the one given is the shape
            tensor_type.shape.SetInParent()
            for _ in input_specs[index][0]:
                tensor_type.shape.dim.add()
        dims = tensor_type.shape.dim
        shape = input_specs[index][0]
        if len(shape) != len(dims):
            raise UserError(f"input shape {list(shape)} does not fit input {value.name!r} of rank {len(dims)}")
        expected = dims_text(dims)
        for dim, size in zip(dims, shape):
            if is_fixed(dim) and dim.dim_value != size:
                raise UserError(f"input shape {list(shape)} does not fit input {value.name!r}: expected {expected}")
            dim.Clear()
            dim.dim_value = size


def _known_shapes(model: onnx.ModelProto) -> dict[str, tuple[tuple[int, ...], str]]:
    shapes = {}
    graph = model.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        if tensor_type.HasField("shape") and all(is_fixed(d) for d in tensor_type.shape.dim):
            shapes[value.name] = (tuple(d.dim_value for d in tensor_type.shape.dim), dtype_name(tensor_type.elem_type))
    for init in graph.initializer:
        shapes[init.name] = (tuple(init.dims), dtype_name(init.data_type))
    return shapes


def _shapes_by_running(model: onnx.ModelProto, missing: list[str],
                       shapes: dict[str, tuple[tuple[int, ...], str]]) -> None:
    """Fill in shapes inference could not derive by running the model once."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend([onnx.ValueInfoProto(name=name) for name in missing])
    initializers = {i.name for i in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        shape, dtype = shapes[value.name]
        feeds[value.name] = (np.random.default_rng(0).standard_normal(shape).astype(dtype)
                             if dtype.startswith("float") else np.zeros(shape, dtype=dtype))
    try:
        results = session(probe.SerializeToString(), quiet=True).run(missing, feeds)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
        cause = error.__cause__ if isinstance(error, UserError) and error.__cause__ else error  # a load error
        raise UserError(f"shapes of {len(missing)} tensors could not be inferred and the model does not run "
                        f"in onnxruntime: {first_line(cause)}") from error
    for name, value in zip(missing, results):
        if isinstance(value, list):  # a tensor sequence: costed as its elements laid end to end
            shapes[name] = ((sum(v.size for v in value),), value[0].dtype.name if value else "float32")
        else:
            shapes[name] = (tuple(value.shape), value.dtype.name)


def tensor_shapes(model: onnx.ModelProto, input_specs: list[tuple[tuple[int, ...], str]] | None,
                  notes: list[str]) -> tuple[onnx.ModelProto, dict[str, tuple[tuple[int, ...], str]]]:
    """The model with its input shapes fixed and inferred, and (shape, dtype) of every
    tensor by name: from shape inference, or else from one onnxruntime run."""
    model_copy = onnx.ModelProto()
    model_copy.CopyFrom(model)
    _forget_negative_dims(model_copy)
    _fix_input_shapes(model_copy, input_specs, notes)
    try:
        inferred = onnx.shape_inference.infer_shapes(model_copy, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError) as error:
        raise UserError(f"the input shape does not fit the model: {first_line(error)}") from error
    shapes = _known_shapes(inferred)
    missing = [o for n in inferred.graph.node if n.op_type != "Constant" for o in n.output if o and o not in shapes]
    if missing:
        _shapes_by_running(inferred, missing, shapes)
        notes.append(f"{len(missing)} tensor shapes taken from one onnxruntime run")
    return inferred, shapes

"""The public analysis API: resolve a model reference, capture it, cost it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deploylens.analysis.profile import Profile, build_profile
from deploylens.capture.loader import default_input_specs, parse_input_shapes, resolve_model
from deploylens.capture.ir import Graph
from deploylens.cost.formulas import Formula
from deploylens.dtypes import analysis_name


def capture(model: Any, input_shape: Any = None, dtype: str | None = None, name: str | None = None,
            deploy: bool = False) -> Graph:
    """Capture ``model`` (any form :func:`resolve_model` accepts) into the IR; ``name``:
    the model's name in the report (default: the reference, or the module's class);
    ``deploy``: a zoo model's deploy form (``NAME:deploy``), any other reference refused."""
    import torch

    dtype = analysis_name(dtype) if dtype is not None else None  # fp16 or float16: one table
    specs = parse_input_shapes(input_shape)
    if deploy:  # a zoo model: its shapes are all a capture needs, so fold a weightless (meta) copy, fast
        with torch.device("meta"):
            built, resolved_name = resolve_model(model, deploy=True)
    else:
        built, resolved_name = resolve_model(model)
    name = name or resolved_name
    if isinstance(built, torch.nn.Module):
        from deploylens.capture.torch_capture import capture_torch

        specs = specs or default_input_specs(model, built)
        return capture_torch(built, specs, dtype or "float32", name)
    from deploylens.capture.onnx_capture import capture_onnx

    return capture_onnx(built, specs, dtype, name)


def analyze(model: Any, input_shape: Any = None, dtype: str | None = None,
            custom_formulas: Mapping[str, Formula] | None = None, name: str | None = None,
            deploy: bool = False) -> Profile:
    """Per-layer FLOPs, MACs, params, bytes and fused kernels of ``model``.

    ``model``: an ``nn.Module``, an ``onnx.ModelProto``, an ``.onnx`` path,
    ``package.module:factory``, ``file.py:factory`` or a zoo name.
    ``input_shape``: ``(1, 3, 224, 224)``, a list of shapes for several inputs, or the
    CLI text form ``"1,3,224,224;1,16:int64"``. Defaults: the zoo model's resolution,
    1x3x224x224 for other modules, the file's own shapes for ONNX.
    ``custom_formulas``: for this call only (as ``custom_mapping`` of torch's
    ``FlopCounterMode``), formulas that add to or override the registered ones. A key
    is an op name as it appears in ``layers[].op``: a neutral op (``conv``, ``relu``,
    ...) or, for an op the IR does not know, its native name as it appears in
    ``totals.unknown_ops`` (``aten.cumsum``, ``onnx.Hardmax``). A value takes the
    :class:`~deploylens.capture.ir.Op` (its ``inputs`` / ``outputs`` tensors with their
    shapes, and ``attrs``: an unknown ONNX node's own attributes) and returns a
    :class:`~deploylens.cost.formulas.Work` (``flops``, ``macs``).
    ``name``: the model's name in the report (default: the reference, or the module's class).
    ``deploy``: analyse a zoo model's deploy form (RepVGG / MobileOne branches folded;
    named ``NAME:deploy``); any other reference is a :class:`~deploylens.errors.UserError`.

    A module is costed for inference (in eval mode) and left as it was: its own mode
    (training or not, per submodule) and its parameters and buffers are unchanged.
    """
    return build_profile(capture(model, input_shape, dtype, name, deploy), custom_formulas)

"""The deploy chain behind ``deploylens deploy``: each requested step in order, each
measured (params, MACs, bytes, error against the original, optionally latency)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from deploylens.deploy.onnx_steps import export_onnx, onnx_outputs, quantize, sensitivity
from deploylens.deploy.transforms import check_equivalence, fuse_bn, reparameterize
from deploylens.errors import UserError
from deploylens.numerics import example_inputs, max_relative_error
from deploylens.onnx_runtime import EXPORT_OPSET


def _row(step: str, subject: Any, input_shape: tuple[int, ...], error: float | None, latency: Callable | None,
         **extra) -> dict:
    from deploylens.analysis.api import analyze

    totals = analyze(subject, input_shape).totals
    return {"step": step, "params": totals.params, "macs": totals.macs, "bytes_fused": totals.bytes_fused,
            "max_rel_error": error, "latency_ms": latency(subject) if latency else None, **extra}


def run_chain(model: Any, input_shape: Any = None, reparam: bool = False, fuse: bool = False,
              onnx_path: str | None = None, int8: bool = False, int8_path: str | None = None, calib: Any = None,
              per_channel: bool = True, method: str = "minmax", activations: str = "uint8", opset: int = EXPORT_OPSET,
              bench: bool = False,
              force: bool = False, progress: Callable[[str], None] = lambda message: None) -> dict:
    """Run the requested steps on ``model`` (any form ``analyze`` takes that is a PyTorch
    model); returns {"steps": [...], "sensitivity": ..., "warnings": [...]}."""
    from deploylens.capture.loader import default_input_specs, parse_input_shapes, resolve_model

    built, _ = resolve_model(model)
    if not isinstance(built, torch.nn.Module):
        raise UserError("deploy starts from a PyTorch model (zoo name, package.module:factory or file.py:factory)")
    if int8 and not onnx_path:
        raise UserError("--int8 quantizes the ONNX export: give --onnx PATH too")
    shape = (parse_input_shapes(input_shape) or default_input_specs(model, built))[0][0]
    inputs = example_inputs([(shape, "float")])
    with torch.inference_mode():
        reference = built.eval()(*inputs)
    latency = (lambda subject: _latency(subject, shape)) if bench else None

    steps = [_row("original", built, shape, 0.0, latency)]
    current = built
    if reparam:
        progress("re-parameterizing")
        current = reparameterize(current, [shape], force)
        steps.append(_row("reparameterize", current, shape,
                          check_equivalence(built, current, inputs).max_rel_error, latency))
    if fuse:
        progress("folding BatchNorm")
        current = fuse_bn(current, [shape], force)
        steps.append(_row("fuse_bn", current, shape, check_equivalence(built, current, inputs).max_rel_error, latency))
    result: dict = {"steps": steps, "sensitivity": None, "warnings": []}
    if onnx_path:
        progress("exporting to ONNX")
        report = export_onnx(current, onnx_path, tuple(shape), opset=opset, force=force)
        steps.append(_row("export_onnx", onnx_path, shape,
                          max_relative_error(onnx_outputs(onnx_path, inputs[0]), reference), latency,
                          simplified_by=report.simplified_by, path=report.path))
    if int8:
        progress("quantizing to INT8")
        out = int8_path or str(Path(onnx_path).with_suffix(".int8.onnx"))
        result["warnings"] += quantize(onnx_path, out, calib, per_channel, method, activations=activations)
        report = sensitivity(onnx_path, out, calib)
        result["sensitivity"] = report.to_dict()
        steps.append(_row("quantize_int8", out, shape, max_relative_error(onnx_outputs(out, inputs[0]), reference),
                          latency, path=out, top1_agreement=report.top1_agreement, cosine=report.cosine_similarity))
    return result


def _latency(subject: Any, shape: tuple[int, ...]) -> float:
    from deploylens.bench.harness import bench
    from deploylens.bench.runner import StopRule

    backend = "onnxruntime" if isinstance(subject, str) else "torch"
    return bench(subject, [backend], [shape[0]], input_shape=[shape],
                 rule=StopRule(min_time=0.5, max_time=3.0))[0].p50_ms

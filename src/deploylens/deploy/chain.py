"""The deploy chain behind ``deploylens deploy``: each requested step in order, each
measured (params, MACs, bytes, error against the original, optionally latency). Its
files are all or nothing: every argument is checked before the first step, the ONNX and
INT8 files are made in a temporary folder and moved into place only when every step
succeeded."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from deploylens.deploy.onnx_steps import (EXPORT_TOLERANCE, calibration_data, calibration_source,
                                          check_quantize_options, export_onnx, onnx_outputs, quantize, sensitivity)
from deploylens.deploy.transforms import TOLERANCE, check_equivalence, fuse_bn, reparameterize_report
from deploylens.errors import UserError
from deploylens.numerics import example_inputs, max_relative_error
from deploylens.onnx_runtime import EXPORT_OPSET
from deploylens.output import check_destination, move_into_place


def _row(step: str, subject: Any, input_shape: tuple[int, ...], error: float | None, latency: Callable | None,
         dtype: str | None = None, **extra) -> dict:
    from deploylens.analysis.api import analyze

    totals = analyze(subject, input_shape, dtype).totals
    return {"step": step, "params": totals.params, "macs": totals.macs, "bytes_fused": totals.bytes_fused,
            "max_rel_error": error, "latency_ms": latency(subject) if latency else None, **extra}


def run_chain(model: Any, input_shape: Any = None, reparam: bool = False, fuse: bool = False,
              onnx_path: str | None = None, int8: bool = False, int8_path: str | None = None, calib: Any = None,
              per_channel: bool = True, method: str = "minmax", activations: str = "uint8", opset: int = EXPORT_OPSET,
              bench: bool = False,
              force: bool = False, progress: Callable[[str], None] = lambda message: None) -> dict:
    """Run the requested steps on ``model`` (any form ``analyze`` takes that is a PyTorch
    model); returns {"steps": [...], "sensitivity": ..., "warnings": [...]}.

    ``onnx_path`` and ``int8_path`` (default: the ONNX path's ``.int8.onnx``) are checked
    before anything runs (an existing file is replaced only with ``force``, a folder is
    never made) and written only when every step succeeded; ``force`` also keeps a step
    whose error exceeds its tolerance (with a warning). The calibration data and options
    are read and checked before the export too."""
    from deploylens.capture.loader import default_input_specs, parse_input_shapes, resolve_model

    int8_out = int8_destination(onnx_path, int8_path, int8, calib)
    if int8:
        check_quantize_options(method, activations)
        calibration_source(calib)
    for path in (onnx_path, int8_out):
        check_destination(path, force)
    built, _ = resolve_model(model)
    if not isinstance(built, torch.nn.Module):
        raise UserError("deploy starts from a PyTorch model (zoo name, package.module:factory or file.py:factory)")
    shape = (parse_input_shapes(input_shape) or default_input_specs(model, built))[0][0]
    calibration, calibration_notes = calibration_data(calib, shape) if int8 else (None, [])
    inputs = example_inputs([(shape, "float")])
    with torch.inference_mode():
        reference = built.eval()(*inputs)
    latency = (lambda subject: _latency(subject, shape)) if bench else None

    steps = [_row("original", built, shape, 0.0, latency)]
    current = built
    unfolded_warnings: list[str] = []  # one line per block re-parameterization left multi-branch
    if reparam:
        progress("re-parameterizing")
        folding = reparameterize_report(current, [shape], force)
        current = folding.model
        steps.append(_row("reparameterize", current, shape, folding.check.max_rel_error, latency,
                          folded=len(folding.folded), unfolded=folding.unfolded))
        unfolded_warnings = [f"re-parameterization left {u['block']} unfolded: {u['reason']}"
                             for u in folding.unfolded]
    if fuse:
        progress("folding BatchNorm")
        current = fuse_bn(current, [shape], force)
        steps.append(_row("fuse_bn", current, shape, check_equivalence(built, current, inputs).max_rel_error, latency))
    result: dict = {"steps": steps, "sensitivity": None, "warnings": unfolded_warnings}
    if onnx_path:
        with tempfile.TemporaryDirectory(prefix="deploylens-deploy-") as staging:
            _onnx_steps(result, current, shape, inputs, reference, latency, staging, onnx_path, int8_out, calibration,
                        calibration_notes, per_channel, method, activations, opset, force, progress)
    result["warnings"] += _inexact(steps)
    return result


def int8_destination(onnx_path: str | None, int8_path: str | None, int8: bool, calib: Any = None) -> str | None:
    """Where ``--int8`` writes: ``int8_path``, by default the ONNX file's ``.int8.onnx``;
    INT8 options without ``--int8`` (or without ``--onnx``) are refused, not ignored."""
    if not int8:
        if int8_path is not None or calib is not None:
            raise UserError(f"{'--int8-out' if int8_path is not None else '--calib'} is for --int8: add --int8")
        return None
    if not onnx_path:
        raise UserError("--int8 quantizes the ONNX export: give --onnx PATH too")
    out = int8_path or str(Path(onnx_path).with_suffix(".int8.onnx"))
    if os.path.abspath(out) == os.path.abspath(onnx_path):
        raise UserError(f"the INT8 model would overwrite the ONNX export {onnx_path}: give --int8-out another path")
    return out


def _onnx_steps(result: dict, current: torch.nn.Module, shape: tuple[int, ...], inputs: list, reference: Any,
                latency: Callable | None, staging: str, onnx_path: str, int8_out: str | None, calibration: Any,
                calibration_notes: list[str], per_channel: bool, method: str, activations: str, opset: int,
                force: bool, progress: Callable[[str], None]) -> None:
    """Export (and quantize) into ``staging``; move the files into place at the end."""
    steps = result["steps"]
    progress("exporting to ONNX")
    staged = os.path.join(staging, "model.onnx")
    report = export_onnx(current, staged, tuple(shape), opset=opset, force=force)
    steps.append(_row("export_onnx", staged, shape, max_relative_error(onnx_outputs(staged, inputs[0]), reference),
                      latency, simplified_by=report.simplified_by, path=onnx_path))
    moves = [(staged, onnx_path)]
    if int8_out:
        progress("quantizing to INT8")
        staged_int8 = os.path.join(staging, "model.int8.onnx")
        quantize(staged, staged_int8, calibration, per_channel, method, activations=activations)
        report = sensitivity(staged, staged_int8, calibration)
        result["warnings"] += calibration_notes + [w for w in report.warnings if w not in calibration_notes]
        result["sensitivity"] = report.to_dict()
        # its bytes are those of the INT8 graph costed at int8 (int8 weights and activations, int32 biases)
        steps.append(_row("quantize_int8", staged_int8, shape,
                          max_relative_error(onnx_outputs(staged_int8, inputs[0]), reference), latency, dtype="int8",
                          path=int8_out, top1_agreement=report.top1_agreement, cosine=report.cosine_similarity))
        moves.append((staged_int8, int8_out))
    progress("writing")
    move_into_place(moves)


def _inexact(steps: list[dict]) -> list[str]:
    """A warning for each step kept (with --force) although its error exceeds its tolerance."""
    tolerances = {"reparameterize": TOLERANCE, "fuse_bn": TOLERANCE, "export_onnx": EXPORT_TOLERANCE}
    return [f"{row['step']} changed the outputs by {row['max_rel_error']:.2e} (relative, over its tolerance "
            f"{tolerances[row['step']]:.0e}): kept because of --force" for row in steps
            if row["step"] in tolerances and row["max_rel_error"] is not None
            and row["max_rel_error"] > tolerances[row["step"]]]


def _latency(subject: Any, shape: tuple[int, ...]) -> float:
    from deploylens.bench.harness import bench
    from deploylens.bench.runner import StopRule

    backend = "onnxruntime" if isinstance(subject, str) else "torch"
    return bench(subject, [backend], [shape[0]], input_shape=[shape],
                 rule=StopRule(min_time=0.5, max_time=3.0))[0].p50_ms

"""``deploylens deploy``: fold BN, re-parameterize, export ONNX, quantize INT8."""

from __future__ import annotations

from typing import List, Optional

import typer

from deploylens.cli.app import SHAPE_HELP, Format, app, joined_shapes, progress, show, table, warn
from deploylens.errors import UserError
from deploylens.onnx_runtime import EXPORT_OPSET


@app.command()
def deploy(
    model: str = typer.Argument(..., help="A PyTorch model: zoo name, package.module:factory or file.py:factory."),
    reparam: bool = typer.Option(False, "--reparam", help="Merge parallel conv branches (RepVGG, MobileOne, ...)."),
    fuse: bool = typer.Option(False, "--fuse", help="Fold BatchNorm into the conv / linear before it."),
    onnx_path: Optional[str] = typer.Option(None, "--onnx", help="Export to this ONNX file (checked in onnxruntime; "
                                            "written only when every step succeeded)."),
    int8: bool = typer.Option(False, "--int8", help="INT8 post-training static quantization of the export (QDQ)."),
    int8_path: Optional[str] = typer.Option(None, "--int8-out", help="INT8 model path (default: NAME.int8.onnx)."),
    calib: Optional[str] = typer.Option(None, help="Calibration data: an .npy file or a folder of images."),
    per_tensor: bool = typer.Option(False, "--per-tensor", help="Per-tensor weight scales (default: per-channel)."),
    method: str = typer.Option("minmax", help="Calibration method: minmax, entropy or percentile."),
    activations: str = typer.Option("uint8", help="INT8 activation type: uint8 (x86 fast path) or int8."),
    opset: int = typer.Option(EXPORT_OPSET, help="ONNX opset."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", "-i", help=SHAPE_HELP),
    bench: bool = typer.Option(False, "--bench", help="Measure latency after every step (benchmark harness)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files, and keep a step's output "
                                                      "even when its error exceeds tolerance (with a warning)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json."),
) -> None:
    """Fold BN, re-parameterize, export ONNX, quantize INT8: each step checked numerically."""

    from deploylens.deploy.chain import run_chain

    if not (reparam or fuse or onnx_path):
        raise UserError("nothing to do: give --reparam, --fuse and/or --onnx PATH")
    with progress() as shown:
        task = shown.add_task("deploying", total=None)
        result = run_chain(model, joined_shapes(input_shape), reparam, fuse, onnx_path, int8, int8_path, calib,
                           not per_tensor, method, activations, opset, bench, force,
                           progress=lambda message: shown.update(task, description=message))
    for warning in result["warnings"]:
        warn(warning)
    show(result, fmt, _render)


def _render(console, result: dict) -> None:
    from deploylens.report.tables import human

    timed = any(row["latency_ms"] is not None for row in result["steps"])  # with --bench
    shown = table(("step", "params", "MACs", "bytes (fused)", "max rel error vs original") +
                  (("latency ms",) if timed else ()) + ("notes",), left=("step", "notes"))
    for row in result["steps"]:
        notes = []
        if row.get("folded") is not None:  # re-parameterization: the blocks folded, and those left as they were
            notes.append(f"{row['folded']} blocks folded" +
                         (f", {len(row['unfolded'])} left unfolded" if row.get("unfolded") else ""))
        if row.get("simplified_by"):
            notes.append(f"simplified by {row['simplified_by']}")
        if row.get("top1_agreement") is not None:
            notes.append(f"top-1 agreement {row['top1_agreement'] * 100:.1f}%, cosine {row['cosine']:.4f}")
        elif row.get("cosine") is not None:  # the FP32 output does not depend on the input: see the warning
            notes.append(f"top-1 agreement n/a, cosine {row['cosine']:.4f}")
        if row.get("path"):
            notes.append(row["path"])
        shown.add_row(row["step"], human(row["params"]), human(row["macs"]), human(row["bytes_fused"], "B"),
                      f"{row['max_rel_error']:.2e}",
                      *((("" if row["latency_ms"] is None else f"{row['latency_ms']:.3f}"),) if timed else ()),
                      "; ".join(notes))
    console.print(shown)
    if result["sensitivity"]:
        worst = result["sensitivity"]["layers"][:5]
        console.print("least accurate INT8 layers (SQNR, dB): " +
                      ", ".join(f"{w['tensor']} {w['sqnr_db']:.1f}" for w in worst), markup=False, highlight=False)

"""``deploylens analyze`` and ``deploylens crosscheck``: the cost of every layer and
kernel, and a PyTorch model's analysis against its ONNX export's."""

from __future__ import annotations

from enum import Enum
from typing import List, Optional

import typer

from deploylens.cli.app import (FORCE_HELP, MODEL_HELP, OUTPUT_HELP, SHAPE_HELP, Format, app, joined_shapes, page, show,
                                warn)
from deploylens.output import check_destination, emit

DEPLOY_HELP = "Analyse the zoo model's deploy form (RepVGG/MobileOne branches folded)."

CONVENTIONS = """
Cost conventions: MACs are multiply-accumulates of conv/linear/matmul/attention and
FLOPs = 2 x MACs for them (bias adds not counted). Element-wise, activation, norm and
softmax ops count fixed FLOPs per output element (relu 1, inference BN 2, hardswish 4,
sigmoid 4, layer norm 5, softmax 5, ...; see README) and 0 MACs. Bytes (ShuffleNetV2's
memory access cost) = bytes read + bytes written: inputs, parameters and outputs, each
numel x dtype size; views cost 0, a real copy reads and writes once. The fused view
groups conv/linear + BN + bias + activation + residual add and element-wise chains into
one kernel that reads its inputs and folded weights and writes only what leaves it.
Arithmetic intensity = FLOPs / bytes. Ops without a formula are listed as unknown and
make the totals incomplete; they are never counted as zero.
"""


class View(str, Enum):
    eager = "eager"
    fused = "fused"


class By(str, Enum):
    op = "op"
    module = "module"
    kind = "kind"


class Sort(str, Enum):
    order = "order"
    flops = "flops"
    macs = "macs"
    bytes = "bytes"
    params = "params"


def warn_incomplete(unknown: dict[str, int]) -> None:
    if unknown:
        listed = ", ".join(f"{name} x{count}" for name, count in sorted(unknown.items()))
        warn(f"no cost formula for {listed}; totals are incomplete")


@app.command(epilog=CONVENTIONS)
def analyze(
    model: str = typer.Argument(..., help=MODEL_HELP),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", "-i", help=SHAPE_HELP),
    dtype: Optional[str] = typer.Option(None, help="Element type to cost: float32 (default), float16, bfloat16, int8."),
    deploy: bool = typer.Option(False, "--deploy", help=DEPLOY_HELP),
    view: View = typer.Option(View.eager, help="eager: every op; fused: deploy-time kernels."),
    by: By = typer.Option(By.op, help="Rows per op (or kernel), per module prefix, or per kind."),
    depth: int = typer.Option(1, min=1, help="Module path components for --by module."),
    sort: Sort = typer.Option(Sort.order, help="Row order."),
    top: int = typer.Option(0, min=0, help="Show only the first N rows (0: all)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table, json (full profile) or csv (the rows)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help=OUTPUT_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Per-layer FLOPs, MACs, params, bytes, arithmetic intensity and fused kernels."""
    from deploylens.analysis.api import analyze as run_analysis
    from deploylens.report.tables import render_table, rows, to_csv, to_json

    check_destination(output, force)
    profile = run_analysis(model, joined_shapes(input_shape), dtype, deploy=deploy)
    warn_incomplete(profile.totals.unknown_ops)
    if fmt is Format.json:
        emit(to_json(profile, depth), output)
        return
    table_rows = rows(profile, view.value, by.value, depth, sort.value, top)
    if fmt is Format.csv:
        emit(to_csv(table_rows), output)
        return
    with page(output) as console:
        render_table(profile, table_rows, console)


@app.command()
def crosscheck(
    model: str = typer.Argument(..., help="The PyTorch model: package.module:factory, file.py:factory or zoo name."),
    onnx_file: str = typer.Argument(..., help="Its ONNX export."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", "-i", help=SHAPE_HELP),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json."),
) -> None:
    """Compare a PyTorch model's analysis with its ONNX export's and explain differences."""
    from deploylens.analysis.api import analyze as run_analysis
    from deploylens.analysis.crosscheck import crosscheck as compare

    shapes = joined_shapes(input_shape)
    show(compare(run_analysis(model, shapes), run_analysis(onnx_file, shapes)), fmt, _render_crosscheck)


def _render_crosscheck(console, result: dict) -> None:
    for key, value in result.items():
        if key != "explanations":
            console.print(f"{key}: {value}", markup=False, highlight=False)
    for line in result["explanations"]:
        console.print(f"note: {line}", markup=False, highlight=False)

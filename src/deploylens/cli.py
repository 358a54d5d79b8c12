"""The ``deploylens`` command: a thin shell over the Python API."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from typing import List, Optional

import typer
from rich.console import Console

from deploylens.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="How fast will this CNN run on that device, why, and what to change.")
# piped output keeps full-width tables instead of rich's 80-column default
stdout = Console(width=None if sys.stdout.isatty() else 200)
stderr = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

MODEL_HELP = "An .onnx file, package.module:factory, path/to/file.py:factory, or a zoo name."
SHAPE_HELP = ("Input shape, e.g. 1,3,224,224; repeat the option (or separate with ';') for several inputs; "
              "append :int64 for an integer input.")

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


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


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


def _joined_shapes(shapes: Optional[List[str]]) -> Optional[str]:
    return ";".join(shapes) if shapes else None


def _emit(text: str, output: Optional[str]) -> None:
    from deploylens.report import write_atomically

    if output:
        write_atomically(output, text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _warn_incomplete(unknown: dict[str, int]) -> None:
    if unknown:
        listed = ", ".join(f"{name} x{count}" for name, count in sorted(unknown.items()))
        stderr.print(f"warning: no cost formula for {listed}; totals are incomplete", markup=False, highlight=False)


@app.command(epilog=CONVENTIONS)
def analyze(
    model: str = typer.Argument(..., help=MODEL_HELP),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", "-i", help=SHAPE_HELP),
    dtype: Optional[str] = typer.Option(None, help="Element type to cost: float32 (default), float16, bfloat16, int8."),
    view: View = typer.Option(View.eager, help="eager: every op; fused: deploy-time kernels."),
    by: By = typer.Option(By.op, help="Rows per op (or kernel), per module prefix, or per kind."),
    depth: int = typer.Option(1, min=1, help="Module path components for --by module."),
    sort: Sort = typer.Option(Sort.order, help="Row order."),
    top: int = typer.Option(0, min=0, help="Show only the first N rows (0: all)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table, json (full profile) or csv (the rows)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Per-layer FLOPs, MACs, params, bytes, arithmetic intensity and fused kernels."""
    from deploylens.analyze import analyze as run_analysis
    from deploylens.report import render_table, rows, to_csv, to_json

    profile = run_analysis(model, _joined_shapes(input_shape), dtype)
    _warn_incomplete(profile.totals.unknown_ops)
    if fmt is Format.json:
        _emit(to_json(profile, depth), output)
        return
    table_rows = rows(profile, view.value, by.value, depth, sort.value, top)
    if fmt is Format.csv:
        _emit(to_csv(table_rows), output)
    elif output:
        console = Console(record=True, width=200)
        with console.capture():
            render_table(profile, table_rows, view.value, console)
        _emit(console.export_text(), output)
    else:
        render_table(profile, table_rows, view.value, stdout)


@app.command()
def crosscheck(
    model: str = typer.Argument(..., help="The PyTorch model: package.module:factory, file.py:factory or zoo name."),
    onnx_file: str = typer.Argument(..., help="Its ONNX export."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", "-i", help=SHAPE_HELP),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json."),
) -> None:
    """Compare a PyTorch model's analysis with its ONNX export's and explain differences."""
    from deploylens.analyze import analyze as run_analysis
    from deploylens.analyze import crosscheck as compare

    shapes = _joined_shapes(input_shape)
    result = compare(run_analysis(model, shapes), run_analysis(onnx_file, shapes))
    if fmt is Format.json:
        _emit(json.dumps(result, indent=2), None)
        return
    for key, value in result.items():
        if key != "explanations":
            stdout.print(f"{key}: {value}", markup=False, highlight=False)
    for line in result["explanations"]:
        stdout.print(f"note: {line}", markup=False, highlight=False)


zoo_app = typer.Typer(no_args_is_help=True, help="The built-in architectures, with published figures.")
app.add_typer(zoo_app, name="zoo")


def _percent(value: Optional[float]) -> str:
    return "" if value is None else f"{value * 100:+.2f}%"


@zoo_app.command("list")
def zoo_list(
    family: Optional[str] = typer.Option(None, help="Only this family (resnet, repvgg, mobilenet_v2, ...)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Every zoo model: params and MACs measured by the analyzer beside the published ones."""
    from rich.progress import Progress

    from deploylens import zoo
    from deploylens.report import human, to_csv
    from deploylens.zoo.compare import compare

    selected = [n for n in zoo.names() if family is None or zoo.variant(n).family == family]
    if not selected:
        families = sorted({zoo.variant(n).family for n in zoo.names()})
        raise UserError(f"no zoo family {family!r}; families: {', '.join(families)}")
    records = []
    with Progress(console=stderr, transient=True, disable=fmt is not Format.table) as progress:
        task = progress.add_task("analysing the zoo", total=len(selected))
        for name in selected:
            records.append(compare(name))
            progress.advance(task)
    if fmt is Format.json:
        _emit(json.dumps(records, indent=2), output)
        return
    if fmt is Format.csv:
        _emit(to_csv(records), output)
        return
    from rich.table import Table

    table = Table(header_style="bold")
    for column in ("name", "res", "form", "params", "published", "dev", "MACs", "published", "dev", "top-1"):
        table.add_column(column, justify="left" if column in ("name", "form") else "right")
    for r in records:
        table.add_row(r["name"], str(r["resolution"]), r["form"], human(r["params_counted_as_source"]),
                      r["published_params"] or "", _percent(r["params_deviation"]), human(r["macs"]),
                      r["published_macs"] or "", _percent(r["macs_deviation"]),
                      "" if r["published_top1"] is None else f"{r['published_top1']:.2f}")
    stdout.print(table)
    stdout.print("params are counted as each source counted them (see `deploylens zoo show NAME`)", markup=False)


@zoo_app.command("show")
def zoo_show(
    name: str = typer.Argument(..., help="A zoo name (deploylens zoo list)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json."),
) -> None:
    """Architecture summary of one zoo model, its figures and their sources."""
    from deploylens import zoo
    from deploylens.analyze import analyze as run_analysis
    from deploylens.report import human
    from deploylens.zoo.compare import compare

    record = compare(name)
    profile = run_analysis(name)
    stages = profile.by_module(1)
    if fmt is Format.json:
        _emit(json.dumps({**record, "modules": stages}, indent=2), None)
        return
    for key, value in record.items():
        stdout.print(f"{key}: {value}", markup=False, highlight=False)
    stdout.print(f"\n{zoo.variant(name).build.__module__}: top-level modules", markup=False)
    for module, sums in stages.items():
        stdout.print(f"  {module:12s} layers {sums['layers']:4d}  params {human(sums['params']):>9s}  "
                     f"MACs {human(sums['macs']):>9s}", markup=False)


def main() -> None:
    # click reports usage errors itself (exit 2); everything else is one line here
    try:
        app()
    except UserError as error:
        stderr.print(f"deploylens: error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as error:  # noqa: BLE001 - an internal fault: one line, traceback on request
        if os.environ.get("DEPLOYLENS_DEBUG"):
            raise
        stderr.print(f"deploylens: internal error: {type(error).__name__}: {error} "
                     "(set DEPLOYLENS_DEBUG=1 for the traceback)", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

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


def _csv_list(text: str, convert=str) -> list:
    try:
        return [convert(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"bad list {text!r}: expected comma-separated values")


_BENCH_COLUMNS = ("backend", "device", "dtype", "batch", "threads", "scenario", "p50_ms", "p90_ms", "p99_ms",
                  "mean_ms", "std_ms", "min_ms", "throughput", "iterations", "stop_reason", "achieved_gflops",
                  "achieved_gbs", "max_rel_error")


@app.command()
def bench(
    model: str = typer.Argument(..., help=MODEL_HELP),
    backend: str = typer.Option(
        "torch", help="Comma-separated: torch, torch-compile, onnxruntime, openvino, tensorrt."),
    batch: str = typer.Option("1", help="Comma-separated batch sizes; 1 is the latency scenario, more is throughput."),
    threads: Optional[int] = typer.Option(None, min=1, help="Threads for every backend (default: torch's count)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    dtype: str = typer.Option("fp32", help="fp32, fp16 or bf16 (torch backends)."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", "-i", help=SHAPE_HELP),
    min_time: float = typer.Option(1.0, min=0.0, help="Seconds of timed samples at least."),
    max_time: float = typer.Option(10.0, min=0.01, help="Seconds of timed samples at most."),
    layers: bool = typer.Option(False, "--layers", help="Also measure per-layer times (profilers)."),
    store: Optional[str] = typer.Option(None, help="SQLite results store (default: $DEPLOYLENS_STORE or "
                                                    "~/.local/share/deploylens/runs.sqlite)."),
    no_store: bool = typer.Option(False, "--no-store", help="Do not save this run."),
    fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Latency and throughput: warm-up, adaptive stop, percentiles, outputs checked first."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from deploylens.bench.harness import bench as run_bench
    from deploylens.bench.runner import StopRule
    from deploylens.bench.store import Store
    from deploylens.report import to_csv

    if min_time > max_time:
        raise UserError(f"--min-time {min_time} exceeds --max-time {max_time}")
    results_store = None if no_store else Store(store)
    rule = StopRule(min_time=min_time, max_time=max_time)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=stderr,
                  transient=True) as progress:
        task = progress.add_task("benchmarking", total=None)
        results = run_bench(model, _csv_list(backend), _csv_list(batch, int), threads, device, dtype,
                            _joined_shapes(input_shape), rule, layers, results_store,
                            progress=lambda message: progress.update(task, description=message))
    for r in results:
        if r.noisy:
            stderr.print(f"warning: {r.backend} batch {r.batch} is noisy: IQR {r.iqr_ms:.3f} ms is over 10% of the "
                         f"median {r.p50_ms:.3f} ms", markup=False, highlight=False)
    records = [{k: v for k, v in r.to_dict().items() if k != "samples_ms"} for r in results]
    if fmt is Format.json:
        _emit(json.dumps(records, indent=2), output)
        return
    if fmt is Format.csv:
        _emit(to_csv([{k: r[k] for k in _BENCH_COLUMNS} for r in records]), output)
        return
    from rich.table import Table

    table = Table(header_style="bold")
    for column in ("backend", "batch", "p50 ms", "p90 ms", "p99 ms", "mean +/- std", "samples/s", "iters", "stop",
                   "load ms", "1st ms", "GFLOP/s", "GB/s", "rel err"):
        table.add_column(column, justify="left" if column in ("backend", "stop") else "right")
    for r in results:
        table.add_row(r.backend, str(r.batch), f"{r.p50_ms:.3f}", f"{r.p90_ms:.3f}", f"{r.p99_ms:.3f}",
                      f"{r.mean_ms:.3f} +/- {r.std_ms:.3f}", f"{r.throughput:.1f}", str(r.iterations), r.stop_reason,
                      f"{r.cold_ms['load']:.1f}", f"{r.cold_ms['first_inference']:.1f}",
                      f"{r.achieved_gflops or 0:.1f}", f"{r.achieved_gbs or 0:.2f}",
                      "" if r.max_rel_error is None else f"{r.max_rel_error:.1e}")
    first = results[0]
    stdout.print(f"[bold]{first.model}[/]  device {first.device}  dtype {first.dtype}  threads {first.threads}  "
                 "(batch 1: single-stream latency; larger: offline throughput)")
    stdout.print(table)
    for r in results:
        if r.layers:
            stdout.print(f"slowest layers, {r.backend} batch {r.batch}:", markup=False)
            for row in r.layers[:10]:
                stdout.print(f"  {row['layer'][-56:]:56s} {row['kind']:12s} {row['time_ms']:8.3f} ms "
                             f"{row['share'] * 100:5.1f}%  {row['achieved_gflops'] or 0:8.1f} GFLOP/s  "
                             f"{row['achieved_gbs'] or 0:7.2f} GB/s", markup=False, highlight=False)
    if results_store:
        stdout.print(f"saved to {results_store.path}", markup=False)


runs_app = typer.Typer(no_args_is_help=True, help="Stored bench runs: list, show, compare.")
app.add_typer(runs_app, name="runs")
STORE_HELP = "SQLite results store (default: $DEPLOYLENS_STORE or ~/.local/share/deploylens/runs.sqlite)."


@runs_app.command("list")
def runs_list(store: Optional[str] = typer.Option(None, help=STORE_HELP),
              fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """The most recent runs."""
    from deploylens.bench.store import Store

    rows = Store(store).runs()
    if fmt is Format.json:
        _emit(json.dumps(rows, indent=2), None)
        return
    for row in rows:
        stdout.print(f"{row['id']:5d}  {row['created']}  {row['status']:11s}  {row['measurements']:3d} measurements  "
                     f"{row['model']}", markup=False, highlight=False)


@runs_app.command("show")
def runs_show(run_id: int = typer.Argument(...), store: Optional[str] = typer.Option(None, help=STORE_HELP),
              fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """One run: arguments, environment and measurements."""
    from deploylens.bench.store import Store

    run = Store(store).run(run_id)
    if fmt is Format.json:
        _emit(json.dumps(run, indent=2), None)
        return
    stdout.print(f"run {run['id']}  {run['created']}  {run['model']}  {run['status']}", markup=False)
    for m in run["measurements"]:
        stdout.print(f"  {m['backend']:14s} batch {m['batch']:4d}  p50 {m['p50_ms']:9.3f} ms  "
                     f"{m['throughput']:9.1f} samples/s  {m['stop_reason']}", markup=False, highlight=False)


@runs_app.command("compare")
def runs_compare(baseline: int = typer.Argument(...), candidate: int = typer.Argument(...),
                 store: Optional[str] = typer.Option(None, help=STORE_HELP),
                 fail_above: Optional[float] = typer.Option(None, help="Exit 1 when a p50 ratio exceeds this "
                                                                        "(e.g. 1.10: a 10% regression)."),
                 fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Candidate / baseline ratios of the median latency and throughput."""
    from deploylens.bench.store import Store

    result = Store(store).compare(baseline, candidate)
    if fmt is Format.json:
        _emit(json.dumps(result, indent=2), None)
    else:
        stdout.print(f"run {candidate} vs {baseline} ({result['models'][1]} vs {result['models'][0]})", markup=False)
        for row in result["rows"]:
            stdout.print(f"  {row['backend']:14s} batch {row['batch']:4d}  p50 {row['baseline_p50_ms']:9.3f} -> "
                         f"{row['p50_ms']:9.3f} ms  x{row['p50_ratio']:.3f}", markup=False, highlight=False)
    if fail_above is not None and any(row["p50_ratio"] > fail_above for row in result["rows"]):
        raise typer.Exit(1)


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

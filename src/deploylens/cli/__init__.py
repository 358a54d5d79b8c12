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
    from deploylens.output import write_atomically

    if output:
        write_atomically(output, text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _emit_records(records: list[dict], fmt: "Format", output: Optional[str] = None) -> bool:
    """Write ``records`` as JSON or CSV when that is the format asked; False for a table."""
    from deploylens.report.tables import to_csv

    if fmt is Format.json:
        _emit(json.dumps(records, indent=2), output)
    elif fmt is Format.csv:
        _emit(to_csv(records), output)
    else:
        return False
    return True


def _table(columns: tuple[str, ...], left: tuple[str, ...]):
    """A rich table with ``columns``, numbers right-aligned, ``left`` ones left-aligned."""
    from rich.table import Table

    table = Table(header_style="bold")
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    return table


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
    from deploylens.analysis.api import analyze as run_analysis
    from deploylens.report.tables import render_table, rows, to_csv, to_json

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
            render_table(profile, table_rows, console)
        _emit(console.export_text(), output)
    else:
        render_table(profile, table_rows, stdout)


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
# with --probe: CSV column -> field of a measurement's quiet figures
_QUIET_COLUMNS = {"adjusted_p50_ms": "adjusted_p50_ms", "quiet_p50_ms": "p50_ms", "quiet_share": "share"}


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
    rounds: int = typer.Option(1, min=1, help="Time every backend and batch this many times, round-robin, and "
                                              "report the quietest round (on a shared, noisy machine)."),
    layers: bool = typer.Option(False, "--layers", help="Also measure per-layer times (profilers)."),
    probe: bool = typer.Option(False, "--probe", help="Time a small fixed conv between samples (every 50 ms) and "
                               "also report the median of the samples taken while it ran at its quiet speed and "
                               "that of all samples adjusted to its quiet speed: a shared host's interference "
                               "taken out."),
    store: Optional[str] = typer.Option(None, help="SQLite results store (default: $DEPLOYLENS_STORE or "
                                                    "~/.local/share/deploylens/runs.sqlite)."),
    no_store: bool = typer.Option(False, "--no-store", help="Do not save this run."),
    default_malloc: bool = typer.Option(False, "--default-malloc", help="Keep glibc's allocator defaults (fresh "
                                        "page-faulted memory for large activations on every torch inference)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Latency and throughput: warm-up, adaptive stop, percentiles, outputs checked first."""
    import torch
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from deploylens.bench.harness import bench as run_bench
    from deploylens.bench.interference import InterferenceProbe
    from deploylens.bench.runner import StopRule
    from deploylens.bench.store import Store
    from deploylens.calibration.run import known_probe_level
    from deploylens.report.tables import to_csv

    if min_time > max_time:
        raise UserError(f"--min-time {min_time} exceeds --max-time {max_time}")
    results_store = None if no_store else Store(store)
    rule = StopRule(min_time=min_time, max_time=max_time)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=stderr,
                  transient=True) as progress:
        task = progress.add_task("benchmarking", total=None)
        results = run_bench(model, _csv_list(backend), _csv_list(batch, int), threads, device, dtype,
                            _joined_shapes(input_shape), rule, layers, results_store,
                            progress=lambda message: progress.update(task, description=message),
                            malloc_tuning=not default_malloc, rounds=rounds,
                            probe=InterferenceProbe(known_level=known_probe_level(threads or torch.get_num_threads()))
                            if probe else None)
    for r in results:
        if r.noisy:
            stderr.print(f"warning: {r.backend} batch {r.batch} is noisy: IQR {r.iqr_ms:.3f} ms is over 10% of the "
                         f"median {r.p50_ms:.3f} ms", markup=False, highlight=False)
    records = [{k: v for k, v in r.to_dict().items() if k not in ("samples_ms", "probe_ms")} for r in results]
    if fmt is Format.json:
        _emit(json.dumps(records, indent=2), output)
        return
    if fmt is Format.csv:
        _emit(to_csv([{**{k: r[k] for k in _BENCH_COLUMNS},
                       **({key: r["quiet"][field] for key, field in _QUIET_COLUMNS.items()} if probe else {})}
                      for r in records]), output)
        return
    table = _table(("backend", "batch", "p50 ms") + (("adjusted p50 ms", "quiet p50 ms", "quiet %") if probe else ()) +
                   ("p90 ms", "p99 ms", "mean +/- std", "samples/s", "iters", "stop",
                    "load ms", "1st ms", "GFLOP/s", "GB/s", "rel err"), left=("backend", "stop"))
    for r in results:
        quiet = ((f"{r.quiet['adjusted_p50_ms']:.3f}", "-" if r.quiet["p50_ms"] is None else f"{r.quiet['p50_ms']:.3f}",
                  f"{r.quiet['share'] * 100:.0f}") if probe else ())
        table.add_row(r.backend, str(r.batch), f"{r.p50_ms:.3f}", *quiet, f"{r.p90_ms:.3f}", f"{r.p99_ms:.3f}",
                      f"{r.mean_ms:.3f} +/- {r.std_ms:.3f}", f"{r.throughput:.1f}", str(r.iterations), r.stop_reason,
                      f"{r.cold_ms['load']:.1f}", f"{r.cold_ms['first_inference']:.1f}",
                      f"{r.achieved_gflops or 0:.1f}", f"{r.achieved_gbs or 0:.2f}",
                      "" if r.max_rel_error is None else f"{r.max_rel_error:.1e}")
    first = results[0]
    stdout.print(f"[bold]{first.model}[/]  device {first.device}  dtype {first.dtype}  threads {first.threads}  "
                 "(batch 1: single-stream latency; larger: offline throughput)")
    stdout.print(table)
    if rounds > 1:
        for r in results:
            medians = ", ".join(f"{m:.3f}" for m in r.rounds_p50_ms)
            stdout.print(f"  {r.backend} batch {r.batch}: round medians {medians} ms; the table shows the quietest",
                         markup=False, highlight=False)
    if probe:
        figures = results[-1].quiet
        stdout.print(f"quiet: samples taken while the probe conv ran within {figures['tolerance']:.0%} of its quiet "
                     f"time ({figures['probe_level_ms']:.3f} ms); '-': fewer than 3 of them. adjusted: every sample "
                     f"x (quiet time / probe reading) ^ {figures['exponent']:g}", markup=False, highlight=False)
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


hw_app = typer.Typer(no_args_is_help=True, help="Hardware: the device catalog and this machine.")
app.add_typer(hw_app, name="hw")


@hw_app.command("list")
def hw_list(fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv.")) -> None:
    """Catalogued devices with their peaks, bandwidth and ridge point."""
    from deploylens.hardware.spec import load_catalog

    rows = []
    for spec in load_catalog().values():
        dtype = "fp32" if "fp32" in spec.peak else next(iter(spec.peak))
        rows.append({"name": spec.name, "class": spec.device_class, "family": spec.family,
                     **{f"peak_{d}_tflops": (spec.peak_flops(d) or 0) / 1e12 or None for d in ("fp32", "fp16", "int8")},
                     "bandwidth_gbs": spec.bandwidth.value / 1e9 if spec.bandwidth else None,
                     "ridge_point": spec.ridge_point(dtype), "ridge_dtype": dtype})
    if _emit_records(rows, fmt):
        return
    table = _table(("name", "class", "fp32 TFLOPS", "fp16 TFLOPS", "int8 TOPS", "GB/s", "ridge FLOP/B"),
                   left=("name", "class"))

    def cell(value, digits=1):
        return "" if value is None else f"{value:.{digits}f}"

    for r in rows:
        table.add_row(r["name"], r["class"], cell(r["peak_fp32_tflops"], 2), cell(r["peak_fp16_tflops"]),
                      cell(r["peak_int8_tflops"]), cell(r["bandwidth_gbs"]),
                      "" if r["ridge_point"] is None else f"{r['ridge_point']:.1f} ({r['ridge_dtype']})")
    stdout.print(table)
    stdout.print("every figure carries its source: deploylens hw show NAME", markup=False)


@hw_app.command("show")
def hw_show(name: str = typer.Argument(..., help="A catalog name, or 'this' for this machine."),
            fmt: Format = typer.Option(Format.table, "--format", help="table or json.")) -> None:
    """One device: every figure with its source, and the ridge point per dtype."""
    from deploylens.hardware.local import this_cpu, this_gpu
    from deploylens.hardware.spec import load_catalog

    catalog = load_catalog()
    if name == "this":
        spec = this_cpu()
        gpu = this_gpu(catalog)
        if gpu is not None:
            stdout.print(f"CUDA GPU: {gpu.name} (catalog entry: deploylens hw show {gpu.name})", markup=False)
    elif name in catalog:
        spec = catalog[name]
    else:
        raise UserError(f"unknown device {name!r}; one of: this, {', '.join(sorted(catalog))}")
    data = spec.to_dict()
    if fmt is Format.json:
        _emit(json.dumps(data, indent=2), None)
        return
    stdout.print(f"{spec.name}  ({spec.device_class}, {spec.family})  {spec.notes}", markup=False)
    for dtype, figure in spec.peak.items():
        ridge = spec.ridge_point(dtype)
        stdout.print(f"  peak {dtype}: {figure.value / 1e12:.3f} T{'OPS' if dtype == 'int8' else 'FLOPS'} "
                     f"[{figure.status}]  ridge {'' if ridge is None else f'{ridge:.1f} FLOP/byte'}  "
                     f"source: {'; '.join(figure.sources)} {figure.note}", markup=False, highlight=False)
    for label, figure, unit in (("bandwidth", spec.bandwidth, 1e9), ("memory", spec.memory, 1e9)):
        if figure:
            stdout.print(f"  {label}: {figure.value / unit:g} {'GB/s' if label == 'bandwidth' else 'GB'} "
                         f"[{figure.status}]  source: {'; '.join(figure.sources)} {figure.note}",
                         markup=False, highlight=False)


@hw_app.command("calibrate")
def hw_calibrate(
    backend: str = typer.Option("torch", help="torch or onnxruntime."),
    threads: Optional[int] = typer.Option(None, min=1, help="Threads (default: torch's count)."),
    device: str = typer.Option("cpu", help="cpu, or cuda (torch backend): this machine's GPU."),
    dtype: str = typer.Option("fp32", help="fp32; on cuda also fp16 or bf16."),
    rounds: Optional[int] = typer.Option(None, min=1, help="Passes over the cases; a case's time is the median of "
                                                           "all its samples adjusted to the interference probe's "
                                                           "quiet level (default: 3 on the CPU, 1 on a GPU)."),
    combine: bool = typer.Option(False, "--combine", help="Combine with the profile already saved: every timing "
                                 "the median of all the calibrations combined (repeat on a noisy machine)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Profile path (default: the per-user "
                                                                      "calibration folder predict reads)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json."),
) -> None:
    """Micro-benchmark each kernel class on this machine; save the calibrated profile."""
    from pathlib import Path

    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from deploylens.calibration import run as calibration

    threads = threads or torch.get_num_threads()
    expected = calibration.identity(device, backend, threads, dtype)
    path = Path(output) if output else calibration.profile_path(backend, threads, device, dtype)
    # the saved profile is read before the minutes of calibration, so a bad one fails at once
    earlier = calibration.load(path) if combine and path.exists() else None
    if earlier is not None:
        calibration.check_combinable(earlier, expected)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=stderr, transient=True) as progress:
        task = progress.add_task("calibrating", total=None)
        profile = calibration.calibrate(backend, threads, rounds=rounds, device=device, dtype=dtype,
                                        progress=lambda done, total, label: progress.update(
            task, completed=done, total=total, description=f"calibrating: {label}"),
                                        probe_level=calibration.known_probe_level(threads))
    quiet_share = (profile.get("probe") or {}).get("quiet_share")
    if quiet_share is not None and quiet_share < calibration.BUSY_QUIET_SHARE:
        stderr.print(f"warning: the host was busy during this calibration (only {quiet_share:.0%} of its cases ran "
                     "while the interference probe was at its quiet speed): its times rest on the adjustment for "
                     "interference; run it again later with --combine", markup=False, highlight=False)
    if earlier is not None:
        profile = calibration.combine(earlier, profile)
    calibration.save(profile, path)
    summary = {"path": str(path), "device": device, "gpu": expected["gpu"], "backend": backend, "threads": threads,
               "dtype": dtype, "seconds": profile["seconds_taken"],
               "overhead_us": profile["overhead_s"]["kernel"] * 1e6,
               "call_overhead_us": profile["overhead_s"]["call"] * 1e6, "context_factor": profile["context_factor"],
               "quiet_share": quiet_share,
               "isa_peak_gflops": (profile.get("isa_peak_flops") or 0) / 1e9 or None,
               "compute_ceiling_gflops": (profile.get("peak_flops") or 0) / 1e9 or None, "classes": {}}
    for klass, points in profile["points"].items():
        if not points:  # reorders: ONNX Runtime only
            continue
        compute = klass in calibration.COMPUTE_CLASSES
        rates = [(p["flops"] if compute else p["bytes"]) / p["seconds"] for p in points]
        summary["classes"][klass] = {"points": len(points), "unit": "GFLOP/s" if compute else "GB/s",
                                     "best": max(rates) / 1e9, "median": sorted(rates)[len(rates) // 2] / 1e9}
    if fmt is Format.json:
        _emit(json.dumps(summary, indent=2), None)
        return
    where = f"{expected['gpu']} ({dtype})" if device == "cuda" else f"{threads} threads"
    stdout.print(f"calibrated {backend} on {where} in {profile['seconds_taken']} s -> {path}", markup=False)
    factors = ", ".join(f"{f:.2f}x at batch {b}" for b, f in summary["context_factor"].items())
    stdout.print(f"  per-kernel overhead {summary['overhead_us']:.1f} us, per call {summary['call_overhead_us']:.1f} "
                 f"us; kernels inside a network run "
                 f"{factors} of their isolated time", markup=False)
    if summary["compute_ceiling_gflops"] and summary["isa_peak_gflops"]:
        faster = summary["compute_ceiling_gflops"] / summary["isa_peak_gflops"]
        stdout.print(f"  compute ceiling {summary['compute_ceiling_gflops']:.1f} GFLOP/s (the ISA's peak at the "
                     f"nominal clock: {summary['isa_peak_gflops']:.1f}"
                     + (f"; the fastest case ran {faster:.2f}x that: the cores ran above their nominal clock)"
                        if faster > 1 else ")"), markup=False, highlight=False)
    for klass, c in summary["classes"].items():
        stdout.print(f"  {klass:15s} {c['points']:4d} points  best {c['best']:8.1f} {c['unit']}  "
                     f"median {c['median']:8.1f} {c['unit']}", markup=False, highlight=False)


@app.command()
def predict(
    model: str = typer.Argument(..., help=MODEL_HELP),
    target: str = typer.Option("this", help="A catalog device (deploylens hw list) or 'this' (calibrated)."),
    backend: str = typer.Option("torch", help="torch or onnxruntime on 'this'."),
    batch: int = typer.Option(1, min=1, help="Batch size."),
    dtype: Optional[str] = typer.Option(None, help="float32 (default), float16, bfloat16 or int8."),
    threads: Optional[int] = typer.Option(None, min=1, help="Threads of the calibration on 'this'."),
    device: str = typer.Option("cpu", help="On 'this': cpu, or cuda (this machine's GPU, calibrated)."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", "-i", help=SHAPE_HELP),
    top: int = typer.Option(10, min=0, help="Slowest kernels to list (0: all)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Roofline latency per fused kernel: compute-, memory- or overhead-bound, and totals."""
    from rich.progress import BarColumn, Progress, TextColumn

    from deploylens.predict.api import predict as run_prediction
    from deploylens.report.tables import to_csv

    with Progress(TextColumn("{task.description}"), BarColumn(), console=stderr, transient=True) as progress:
        task = progress.add_task("predicting", total=None)
        prediction = run_prediction(
            model, target, backend, batch, dtype, _joined_shapes(input_shape), threads,
            progress=lambda done, total, label: progress.update(
                task, completed=done, total=total, description=f"no calibration yet, calibrating: {label}"),
            device=device)
    for note in prediction.notes:
        if note.startswith("incomplete"):
            stderr.print(f"warning: {note}", markup=False, highlight=False)
    data = prediction.to_dict()
    if fmt is Format.json:
        _emit(json.dumps(data, indent=2), output)
        return
    if fmt is Format.csv:
        _emit(to_csv(data["kernels"]), output)
        return
    t = prediction.totals
    stdout.print(f"[bold]{prediction.model}[/] on {prediction.target} ({prediction.backend}), "
                 f"batch {prediction.batch}, "
                 f"{prediction.dtype}: [bold]{t['latency_ms']:.3f} ms[/]  ({t['throughput']:.1f} samples/s)  "
                 f"kernels {t['kernels']}: {t['bound_counts']['compute']} compute-, {t['bound_counts']['memory']} "
                 f"memory-, {t['bound_counts']['overhead']} overhead-bound  complete {t['complete']}")
    by_share = sorted(prediction.share_by_kind.items(), key=lambda kv: -kv[1])
    shares = ", ".join(f"{k} {v * 100:.1f}%" for k, v in by_share)
    stdout.print(f"time by kind: {shares}", markup=False)
    table = _table(("kernel", "class", "MFLOPs", "KB", "compute ms", "memory ms", "overhead ms", "time ms", "bound"),
                   left=("kernel", "class", "bound"))
    slowest = sorted(prediction.kernels, key=lambda k: -k.time_ms)
    for k in slowest[:top] if top else slowest:
        table.add_row(k.name, k.kernel_class, f"{k.flops / 1e6:.2f}", f"{k.bytes / 1e3:.1f}", f"{k.compute_ms:.4f}",
                      f"{k.memory_ms:.4f}", f"{k.overhead_ms:.4f}", f"{k.time_ms:.4f}", k.bound)
    stdout.print(table)
    for note in prediction.notes:
        stdout.print(f"note: {note}", markup=False)


@app.command()
def deploy(
    model: str = typer.Argument(..., help="A PyTorch model: zoo name, package.module:factory or file.py:factory."),
    reparam: bool = typer.Option(False, "--reparam", help="Merge parallel conv branches (RepVGG, MobileOne, ...)."),
    fuse: bool = typer.Option(False, "--fuse", help="Fold BatchNorm into the conv / linear before it."),
    onnx_path: Optional[str] = typer.Option(None, "--onnx", help="Export to this ONNX file (checked in onnxruntime)."),
    int8: bool = typer.Option(False, "--int8", help="INT8 post-training static quantization of the export (QDQ)."),
    int8_path: Optional[str] = typer.Option(None, "--int8-out", help="INT8 model path (default: NAME.int8.onnx)."),
    calib: Optional[str] = typer.Option(None, help="Calibration data: an .npy file or a folder of images."),
    per_tensor: bool = typer.Option(False, "--per-tensor", help="Per-tensor weight scales (default: per-channel)."),
    method: str = typer.Option("minmax", help="Calibration method: minmax, entropy or percentile."),
    activations: str = typer.Option("uint8", help="INT8 activation type: uint8 (x86 fast path) or int8."),
    opset: int = typer.Option(17, help="ONNX opset."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", "-i", help=SHAPE_HELP),
    bench: bool = typer.Option(False, "--bench", help="Measure latency after every step (benchmark harness)."),
    force: bool = typer.Option(False, "--force", help="Keep a step's output even when its error exceeds tolerance."),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json."),
) -> None:
    """Fold BN, re-parameterize, export ONNX, quantize INT8: each step checked numerically."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from deploylens.deploy.chain import run_chain
    from deploylens.report.tables import human

    if not (reparam or fuse or onnx_path):
        raise UserError("nothing to do: give --reparam, --fuse and/or --onnx PATH")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=stderr, transient=True) as progress:
        task = progress.add_task("deploying", total=None)
        result = run_chain(model, _joined_shapes(input_shape), reparam, fuse, onnx_path, int8, int8_path, calib,
                           not per_tensor, method, activations, opset, bench, force,
                           progress=lambda message: progress.update(task, description=message))
    for warning in result["warnings"]:
        stderr.print(f"warning: {warning}", markup=False, highlight=False)
    if fmt is Format.json:
        _emit(json.dumps(result, indent=2), None)
        return
    table = _table(("step", "params", "MACs", "bytes (fused)", "max rel error vs original", "latency ms", "notes"),
                   left=("step", "notes"))
    for row in result["steps"]:
        notes = []
        if row.get("simplified_by"):
            notes.append(f"simplified by {row['simplified_by']}")
        if row.get("top1_agreement") is not None:
            notes.append(f"top-1 agreement {row['top1_agreement'] * 100:.1f}%, cosine {row['cosine']:.4f}")
        if row.get("path"):
            notes.append(row["path"])
        table.add_row(row["step"], human(row["params"]), human(row["macs"]), human(row["bytes_fused"], "B"),
                      f"{row['max_rel_error']:.2e}", "" if row["latency_ms"] is None else f"{row['latency_ms']:.3f}",
                      "; ".join(notes))
    stdout.print(table)
    if result["sensitivity"]:
        worst = result["sensitivity"]["layers"][:5]
        stdout.print("least accurate INT8 layers (SQNR, dB): " +
                     ", ".join(f"{w['tensor']} {w['sqnr_db']:.1f}" for w in worst), markup=False, highlight=False)


@app.command("lint")
def lint_command(
    model: str = typer.Argument(..., help=MODEL_HELP),
    target: str = typer.Option("nvidia-gpu", help="mobile-cpu, npu, nvidia-gpu, a catalog device, or this."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", "-i", help=SHAPE_HELP),
    int8: bool = typer.Option(False, "--int8", help="The model is meant to run in INT8 on the target."),
    select: Optional[str] = typer.Option(None, help="Only these rules (comma-separated ids)."),
    ignore: Optional[str] = typer.Option(None, help="Skip these rules (comma-separated ids)."),
    fail_on: Optional[str] = typer.Option(None, help="Exit 1 when a finding is at least this severe: warning or "
                                                     "error."),
    fmt: str = typer.Option("table", "--format", help="table, json or sarif."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
) -> None:
    """The field guide's design rules (ShuffleNetV2 G1-G4, alignment, depthwise, ...) for a target."""
    from deploylens.lint import SEVERITIES, lint, to_sarif

    if fmt not in ("table", "json", "sarif"):
        raise UserError(f"--format {fmt}: one of table, json, sarif")
    if fail_on is not None and fail_on not in ("warning", "error"):
        raise UserError(f"--fail-on {fail_on}: warning or error")
    report = lint(model, target, _joined_shapes(input_shape), _csv_list(select) if select else None,
                  _csv_list(ignore) if ignore else None, int8)
    if fmt == "json":
        _emit(json.dumps(report.to_dict(), indent=2), output)
    elif fmt == "sarif":
        _emit(json.dumps(to_sarif(report), indent=2), output)
    else:
        table = _table(("rule", "severity", "layer", "impact", "message"),
                       left=("rule", "severity", "layer", "impact", "message"))
        for f in report.findings:
            impact = "" if not f.impact or f.impact["value"] is None else f"{f.impact['value']:.4g} {f.impact['unit']}"
            table.add_row(f.rule, f.severity, f.layer, impact, f.message)
        stdout.print(table)
        summary = report.summary
        predicted = summary["predicted_ms"]
        stdout.print(f"{report.model} on {report.target}: {len(report.findings)} findings {summary['by_rule']}"
                     + (f"; predicted {predicted:.3f} ms, {summary['predicted_ms_if_fixed']:.3f} ms if the "
                        "ms-impact findings were fixed" if predicted is not None else ""), markup=False)
        for note in summary["target_notes"]:
            stdout.print(f"note: {note}", markup=False)
    if fail_on is not None:
        threshold = SEVERITIES.index(fail_on)
        if any(SEVERITIES.index(f.severity) >= threshold for f in report.findings):
            raise typer.Exit(1)


@app.command("recommend")
def recommend_command(
    target: str = typer.Option("this", help="mobile-cpu, npu, nvidia-gpu, a catalog device, or this."),
    budget_ms: Optional[float] = typer.Option(None, help="Latency budget in milliseconds."),
    measure: bool = typer.Option(False, "--measure", help="Measure latency here instead of predicting (this only)."),
    models: Optional[str] = typer.Option(None, help="Only these zoo models (comma-separated)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json."),
) -> None:
    """Every zoo model ranked by latency on a target, with top-1, lint findings and the Pareto front."""
    from rich.progress import BarColumn, Progress, TextColumn

    from deploylens.recommend import recommend
    from deploylens.report.tables import human

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  console=stderr, transient=True) as progress:
        task = progress.add_task("ranking", total=None)
        result = recommend(target, budget_ms, measure, _csv_list(models) if models else None,
                           progress=lambda done, total, name: progress.update(task, completed=done, total=total,
                                                                              description=f"ranking: {name}"))
    if fmt is Format.json:
        _emit(json.dumps(result, indent=2), None)
        return
    table = _table(("model", "latency ms", "params", "MACs", "top-1", "pareto", "budget", "findings"),
                   left=("model", "findings"))
    for c in result["candidates"]:
        table.add_row(c["model"], "" if c["latency_ms"] is None else f"{c['latency_ms']:.3f}", human(c["params"]),
                      human(c["macs"]), "" if c["top1"] is None else f"{c['top1']:.1f}",
                      "*" if c["model"] in result["pareto"] else "",
                      "" if result["within_budget"] is None else ("yes" if c["model"] in result["within_budget"]
                                                                  else "no"),
                      ", ".join(f"{k} {v}" for k, v in c["findings"].items()))
    stdout.print(table)
    stdout.print(f"latency: {result['candidates'][0]['latency_source']}; top-1: published (see zoo show)", markup=False)
    stdout.print(f"advice: {result['advice']}", markup=False)


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
    from deploylens.report.tables import human
    from deploylens.analysis.published import compare

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
    if _emit_records(records, fmt, output):
        return
    table = _table(("name", "res", "form", "params", "published", "dev", "MACs", "published", "dev", "top-1"),
                   left=("name", "form"))
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
    from deploylens.analysis.api import analyze as run_analysis
    from deploylens.report.tables import human
    from deploylens.analysis.published import compare

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

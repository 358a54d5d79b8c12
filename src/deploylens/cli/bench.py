"""``deploylens bench``: latency and throughput on several backends and batch sizes."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from deploylens.cli.app import (FORCE_HELP, MODEL_HELP, OUTPUT_HELP, SHAPE_HELP, STORE_HELP, Format, app, csv_list,
                                joined_shapes, progress, show, table, warn)
from deploylens.errors import UserError
from deploylens.output import check_destination, emit

HTML_HELP = "Also write the results as a self-contained HTML page (charts; its data as the JSON output)."
_BENCH_COLUMNS = ("backend", "device", "dtype", "batch", "threads", "scenario", "p50_ms", "p90_ms", "p99_ms",
                  "mean_ms", "std_ms", "min_ms", "throughput", "iterations", "stop_reason", "achieved_gflops",
                  "achieved_gbs", "max_rel_error")
# with --probe: CSV column -> field of a measurement's quiet figures
_QUIET_COLUMNS = {"adjusted_p50_ms": "adjusted_p50_ms", "quiet_p50_ms": "p50_ms", "quiet_share": "share"}


def check_destinations(output: Optional[str], html: Optional[str], force: bool) -> None:
    """A command's ``-o`` and ``--html`` files checked before the work starts: each
    writable, and not the same file."""
    if output and html and Path(output).resolve() == Path(html).resolve():
        raise UserError(f"-o and --html name the same file {html}: give the page its own file")
    check_destination(output, force)
    check_destination(html, force)


@app.command()
def bench(
    model: str = typer.Argument(..., help=MODEL_HELP),
    deploy: bool = typer.Option(False, "--deploy", help="Measure the zoo model's deploy form (RepVGG/MobileOne "
                                                        "branches folded)."),
    backend: str = typer.Option(
        "torch", help="Comma-separated: torch, torch-compile, torch-cudagraph (CUDA), onnxruntime, openvino, "
                         "tensorrt."),
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
    store: Optional[str] = typer.Option(None, help=STORE_HELP),
    no_store: bool = typer.Option(False, "--no-store", help="Do not save this run."),
    default_malloc: bool = typer.Option(False, "--default-malloc", help="Keep glibc's allocator defaults (fresh "
                                        "page-faulted memory for large activations on every torch inference)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help=OUTPUT_HELP),
    html: Optional[str] = typer.Option(None, "--html", help=HTML_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Latency and throughput: warm-up, adaptive stop, percentiles, outputs checked first."""
    import torch

    from deploylens.bench.harness import bench as run_bench, check_request
    from deploylens.bench.interference import InterferenceProbe
    from deploylens.bench.runner import StopRule
    from deploylens.bench.store import Store
    from deploylens.hardware.calibration_profile import known_probe_level
    from deploylens.report.collect import bench_records
    from deploylens.report.measured import bench_page
    from deploylens.report.tables import to_csv

    # every argument is checked before anything runs or the results store is touched
    check_destinations(output, html, force)
    if min_time > max_time:
        raise UserError(f"--min-time {min_time} exceeds --max-time {max_time}")
    backends, batches = csv_list(backend), csv_list(batch, int)
    check_request(backends, batches, device, dtype, rounds)
    results_store = None if no_store else Store(store)  # created only when the first run is saved
    rule = StopRule(min_time=min_time, max_time=max_time)
    with progress() as shown:
        task = shown.add_task("benchmarking", total=None)
        results = run_bench(model, backends, batches, threads, device, dtype,
                            joined_shapes(input_shape), rule, layers, results_store,
                            progress=lambda message: shown.update(task, description=message),
                            malloc_tuning=not default_malloc, rounds=rounds,
                            probe=InterferenceProbe(known_level=known_probe_level(threads or torch.get_num_threads()))
                            if probe else None, deploy=deploy)
    for r in results:
        if r.noisy:
            warn(f"{r.backend} batch {r.batch} is noisy: IQR {r.iqr_ms:.3f} ms is over 10% of the median "
                 f"{r.p50_ms:.3f} ms")
    records = bench_records(results)
    if html:
        emit(bench_page(records), html)
    if fmt is Format.csv:
        emit(to_csv([{**{k: r[k] for k in _BENCH_COLUMNS},
                      **({key: r["quiet"][field] for key, field in _QUIET_COLUMNS.items()} if probe else {})}
                     for r in records]), output)
        return
    show(records, fmt, lambda console, _records: _render(console, results, rounds, probe, results_store), output)


def _render(console, results: list, rounds: int, probe: bool, results_store) -> None:
    shown = table(("backend", "batch", "p50 ms") + (("adjusted p50 ms", "quiet p50 ms", "quiet %") if probe else ()) +
                  ("p90 ms", "p99 ms", "mean +/- std", "samples/s", "iters", "stop",
                   "load ms", "1st ms", "GFLOP/s", "GB/s", "rel err"), left=("backend", "stop"),
                  # what a narrow terminal leaves out first (JSON and CSV have everything)
                  optional=("mean +/- std", "load ms", "1st ms", "rel err", "GB/s", "iters", "GFLOP/s", "p90 ms",
                            "quiet %", "quiet p50 ms"))
    for r in results:
        quiet = ((f"{r.quiet['adjusted_p50_ms']:.3f}", "-" if r.quiet["p50_ms"] is None else f"{r.quiet['p50_ms']:.3f}",
                  f"{r.quiet['share'] * 100:.0f}") if probe else ())
        shown.add_row(r.backend, str(r.batch), f"{r.p50_ms:.3f}", *quiet, f"{r.p90_ms:.3f}", f"{r.p99_ms:.3f}",
                      f"{r.mean_ms:.3f} +/- {r.std_ms:.3f}", f"{r.throughput:.1f}", str(r.iterations), r.stop_reason,
                      f"{r.cold_ms['load']:.1f}", f"{r.cold_ms['first_inference']:.1f}",
                      f"{r.achieved_gflops or 0:.1f}", f"{r.achieved_gbs or 0:.2f}",
                      "" if r.max_rel_error is None else f"{r.max_rel_error:.1e}")
    first = results[0]
    console.print(f"[bold]{first.model}[/]  device {first.device}  dtype {first.dtype}  threads {first.threads}  "
                  "(batch 1: single-stream latency; larger: offline throughput)")
    console.print(shown)
    if rounds > 1:
        for r in results:
            medians = ", ".join(f"{m:.3f}" for m in r.rounds_p50_ms)
            console.print(f"  {r.backend} batch {r.batch}: round medians {medians} ms; the table shows the quietest",
                          markup=False, highlight=False)
    if probe:
        figures = results[-1].quiet
        console.print(f"quiet: samples taken while the probe conv ran within {figures['tolerance']:.0%} of its quiet "
                      f"time ({figures['probe_level_ms']:.3f} ms); '-': fewer than 3 of them. adjusted: every sample "
                      f"x (quiet time / probe reading) ^ {figures['exponent']:g}", markup=False, highlight=False)
    for r in results:
        if r.layers:
            console.print(f"slowest layers, {r.backend} batch {r.batch}:", markup=False)
            for row in r.layers[:10]:
                console.print(f"  {row['layer'][-56:]:56s} {row['kind']:12s} {row['time_ms']:8.3f} ms "
                              f"{row['share'] * 100:5.1f}%  {row['achieved_gflops'] or 0:8.1f} GFLOP/s  "
                              f"{row['achieved_gbs'] or 0:7.2f} GB/s", markup=False, highlight=False)
    if results_store:
        console.print(f"saved to {results_store.path}", markup=False)

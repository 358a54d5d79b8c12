"""``deploylens hw``: the device catalog, this machine, and its calibration."""

from __future__ import annotations

from typing import Optional

import typer

from deploylens.cli.app import Format, app, emit_records, page, progress, show, table, warn
from deploylens.errors import UserError
from deploylens.output import check_destination

hw_app = typer.Typer(no_args_is_help=True, help="Hardware: the device catalog and this machine.")
app.add_typer(hw_app, name="hw")


@hw_app.command("list")
def hw_list(fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv.")) -> None:
    """Catalogued devices with their peaks, bandwidth and ridge point."""
    from deploylens.hardware.spec import load_catalog, unsourced

    rows = []
    for spec in load_catalog().values():
        dtype = "fp32" if "fp32" in spec.peak else next(iter(spec.peak))
        rows.append({"name": spec.name, "class": spec.device_class, "family": spec.family,
                     **{f"peak_{d}_tflops": (spec.peak_flops(d) or 0) / 1e12 or None for d in ("fp32", "fp16", "int8")},
                     "bandwidth_gbs": spec.bandwidth.value / 1e9 if spec.bandwidth else None,
                     "ridge_point": spec.ridge_point(dtype), "ridge_dtype": dtype})
    if emit_records(rows, fmt):
        return
    shown = table(("name", "class", "fp32 TFLOPS", "fp16 TFLOPS", "int8 TOPS", "GB/s", "ridge FLOP/B"),
                  left=("name", "class"))

    def cell(value, digits=1):
        return "" if value is None else f"{value:.{digits}f}"

    for r in rows:
        shown.add_row(r["name"], r["class"], cell(r["peak_fp32_tflops"], 2), cell(r["peak_fp16_tflops"]),
                      cell(r["peak_int8_tflops"]), cell(r["bandwidth_gbs"]),
                      "" if r["ridge_point"] is None else f"{r['ridge_point']:.1f} ({r['ridge_dtype']})")
    with page() as console:
        console.print(shown)
        console.print("every figure carries its source: deploylens hw show NAME", markup=False)
        console.print(f"named but not catalogued (no source found): {', '.join(sorted(unsourced()))}", markup=False)


@hw_app.command("show")
def hw_show(name: str = typer.Argument(..., help="A catalog name, or 'this' for this machine."),
            fmt: Format = typer.Option(Format.table, "--format", help="table or json.")) -> None:
    """One device: every figure with its source, and the ridge point per dtype."""
    from deploylens.hardware.local import this_cpu, this_gpu
    from deploylens.hardware.spec import load_catalog, unsourced

    catalog = load_catalog()
    lines = []
    if name == "this":
        spec = this_cpu()
        gpu = this_gpu(catalog)
        if gpu is not None:
            lines.append(f"CUDA GPU: {gpu.name} (catalog entry: deploylens hw show {gpu.name})")
    elif name in catalog:
        spec = catalog[name]
    elif name in (missing := unsourced()):
        raise UserError(f"{name} is not catalogued: {missing[name]}")
    else:
        raise UserError(f"unknown device {name!r}; one of: this, {', '.join(sorted(catalog))}")

    def render(console, _data) -> None:
        for line in lines:
            console.print(line, markup=False)
        _render_spec(console, spec)

    show(spec.to_dict(), fmt, render)


def _render_spec(console, spec) -> None:
    console.print(f"{spec.name}  ({spec.device_class}, {spec.family}{', ' + spec.architecture if spec.architecture else ''})"
                  f"  {spec.notes}", markup=False)
    for label, figure, unit, suffix in (("compute units", spec.compute_units, 1, ""),
                                        ("performance cores", spec.performance_cores, 1, ""),
                                        ("boost clock", spec.boost_clock, 1e9, " GHz"), ("cache", spec.cache, 2**20, " MiB")):
        if figure:
            console.print(f"  {label}: {figure.value / unit:g}{suffix} [{figure.status}]  source: "
                          f"{'; '.join(figure.sources)} {figure.note}", markup=False, highlight=False)
    for dtype, figure in spec.peak.items():
        ridge = spec.ridge_point(dtype)
        console.print(f"  peak {dtype}: {figure.value / 1e12:.3f} T{'OPS' if dtype == 'int8' else 'FLOPS'} "
                      f"[{figure.status}]  ridge {'' if ridge is None else f'{ridge:.1f} FLOP/byte'}  "
                      f"source: {'; '.join(figure.sources)} {figure.note}", markup=False, highlight=False)
    for label, figure, unit in (("bandwidth", spec.bandwidth, 1e9), ("memory", spec.memory, 1e9)):
        if figure:
            console.print(f"  {label}: {figure.value / unit:g} {'GB/s' if label == 'bandwidth' else 'GB'} "
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
    budget: Optional[float] = typer.Option(None, min=1.0, help="Seconds the whole calibration may take (default: "
                                           "the device's, 105 on the CPU, unbounded on a GPU; inf: no bound); fewer "
                                           "seconds, shorter rounds."),
    combine: bool = typer.Option(False, "--combine", help="Combine with the profile already saved: every timing "
                                 "the median of all the calibrations combined (repeat on a noisy machine)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Profile path (default: the per-user "
                                                                      "calibration folder predict reads)."),
    force: bool = typer.Option(False, "--force", help="Overwrite the -o profile if it exists (--combine reads and "
                                                      "replaces it anyway)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json."),
) -> None:
    """Micro-benchmark each kernel class on this machine; save the calibrated profile."""
    from pathlib import Path

    import torch

    from deploylens.calibration import calibrate, combine as combined
    from deploylens.hardware import calibration_profile as stored
    from deploylens.hardware.kernel_classes import COMPUTE_CLASSES

    # a given path is checked before the minutes of calibration; the default one is this
    # machine's profile, which a new calibration replaces
    check_destination(output, force or combine)
    threads = threads or torch.get_num_threads()
    expected = stored.identity(device, backend, threads, dtype)
    path = Path(output) if output else stored.profile_path(backend, threads, device, dtype)
    # the saved profile is read before the minutes of calibration, so a bad one fails at once
    earlier = stored.load(path) if combine and path.exists() else None
    if earlier is not None:
        stored.check_combinable(earlier, expected)
    with progress(counted=True) as shown:
        task = shown.add_task("calibrating", total=None)
        profile = calibrate(backend, threads, rounds=rounds, device=device, dtype=dtype,
                            progress=lambda done, total, label: shown.update(
                                task, completed=done, total=total, description=f"calibrating: {label}"),
                            probe_level=stored.known_probe_level(threads),
                            budget_s=budget)
    quiet_share = profile.probe.quiet_share if profile.probe else None
    if quiet_share is not None and quiet_share < stored.BUSY_QUIET_SHARE:
        warn(f"the host was busy during this calibration (only {quiet_share:.0%} of its cases ran while the "
             "interference probe was at its quiet speed): its times rest on the adjustment for interference; run it "
             "again later with --combine")
    if earlier is not None:
        profile = combined(earlier, profile)
    stored.save(profile, path)
    summary = {"path": str(path), "device": device, "gpu": expected["gpu"], "backend": backend, "threads": threads,
               "dtype": dtype, "seconds": profile.seconds_taken, "budget_s": profile.budget_s,
               "overhead_us": profile.overhead_s.kernel * 1e6,
               "call_overhead_us": profile.overhead_s.call * 1e6, "context_factor": profile.context_factor,
               "quiet_share": quiet_share,
               "isa_peak_gflops": (profile.isa_peak_flops or 0) / 1e9 or None,
               "compute_ceiling_gflops": (profile.peak_flops or 0) / 1e9 or None, "classes": {}}
    for klass, points in profile.points.items():
        if not points:  # reorders: ONNX Runtime only
            continue
        compute = klass in COMPUTE_CLASSES
        rates = [(p.flops if compute else p.bytes) / p.seconds for p in points]
        summary["classes"][klass] = {"points": len(points), "unit": "GFLOP/s" if compute else "GB/s",
                                     "best": max(rates) / 1e9, "median": sorted(rates)[len(rates) // 2] / 1e9}
    summary["skipped"], summary["notes"] = profile.skipped, profile.notes
    show(summary, fmt, _render_calibration)


def _render_calibration(console, summary: dict) -> None:
    where = f"{summary['gpu']} ({summary['dtype']})" if summary["device"] == "cuda" else f"{summary['threads']} threads"
    console.print(f"calibrated {summary['backend']} on {where} in {summary['seconds']} s -> {summary['path']}",
                  markup=False)
    factors = ", ".join(f"{f:.2f}x at batch {b}" for b, f in summary["context_factor"].items())
    console.print(f"  per-kernel overhead {summary['overhead_us']:.1f} us, per call {summary['call_overhead_us']:.1f} "
                  f"us; kernels inside a network run {factors} of their isolated time", markup=False)
    if summary["compute_ceiling_gflops"] and summary["isa_peak_gflops"]:
        faster = summary["compute_ceiling_gflops"] / summary["isa_peak_gflops"]
        console.print(f"  compute ceiling {summary['compute_ceiling_gflops']:.1f} GFLOP/s (the ISA's peak at its clock, "
                      f"boost where readable: {summary['isa_peak_gflops']:.1f}"
                      + (f"; the fastest case ran {faster:.2f}x that: the cores ran above that clock)"
                         if faster > 1 else ")"), markup=False, highlight=False)
    for klass, c in summary["classes"].items():
        console.print(f"  {klass:15s} {c['points']:4d} points  best {c['best']:8.1f} {c['unit']}  "
                      f"median {c['median']:8.1f} {c['unit']}", markup=False, highlight=False)
    if summary["skipped"]:
        console.print(f"  the budget left {len(summary['skipped'])} cases untimed (listed in the profile's skipped)",
                      markup=False)
    for note in summary["notes"]:
        console.print(f"note: {note}", markup=False)


@hw_app.command("fit")
def hw_fit(
    rows: list[str] = typer.Argument(..., help="CSV files of measured whole networks: model, input_shape, batch, "
                                               "precision, runtime, samples_per_s or ms_per_batch; optional "
                                               "device and source columns."),
    device: Optional[str] = typer.Option(None, help="The catalog device the rows were measured on (rows without a "
                                                    "device column)."),
    prior: str = typer.Option("family", help="family: shrink toward the shipped model of the rows' family (a few "
                                             "rows of a new device are enough); generic; or a device model file."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write the device model here (JSON; then "
                                                                      "`predict --device-model`)."),
    force: bool = typer.Option(False, "--force", help="Overwrite the -o file if it exists."),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json."),
) -> None:
    """Fit a device model on measured whole-network rows; report its leave-one-out error."""
    from deploylens.calibration.published import fit_rows, read_rows
    from deploylens.hardware import device_model
    from deploylens.hardware.spec import load_catalog

    check_destination(output, force)
    catalog = load_catalog()
    measured = []
    for path in rows:
        usable, problems = read_rows(path, catalog, device)
        for problem in problems:
            warn(f"skipped {problem}")
        measured += usable
    if not measured:
        raise UserError("no usable rows to fit on")
    prior_model = None
    if prior not in ("family", "generic"):
        prior_model = device_model.load(prior)
    elif prior == "family":
        first = measured[0]
        found, _ = device_model.find(catalog[first.device], first.precision, first.runtime)
        prior_model = found if found is not None and found.runtime == first.runtime else None
    with progress(counted=True) as shown:
        task = shown.add_task("analysing the measured networks", total=len(measured))
        fit = fit_rows(measured, catalog, prior_model, advance=lambda: shown.advance(task))
    for problem in fit.skipped:
        warn(f"skipped {problem}")
    if output:
        device_model.save(fit.model, output)
    show({**fit.to_dict(), "path": output}, fmt, _render_fit)


def _render_fit(console, data: dict) -> None:
    model = data["model"]
    accuracy = model["accuracy"]
    console.print(f"{model['family']}/{model['precision']}/{model['runtime']} fitted on "
                  + ", ".join(f"{f['device']} ({f['rows']} rows)" for f in model["fitted_on"]), markup=False)
    if accuracy:
        console.print(f"leave-one-out over {accuracy['rows']} rows: median error {accuracy['median_error']:.1%}, "
                      f"{accuracy['within_10']:.0%} within 10%, {accuracy['within_25']:.0%} within 25%",
                      markup=False)
    console.print(f"method: {model['method']}", markup=False)
    shown = table(("class", "of peak FLOP/s", "of bandwidth"), left=("class",))
    for klass, memory in model["memory_efficiency"].items():
        compute = model["compute_efficiency"].get(klass)
        shown.add_row(klass, "" if compute is None else f"{compute:.3f}", f"{memory:.3f}")
    console.print(shown)
    console.print(f"overhead: {model['kernel_overhead_s'] * 1e6:.2f} us per kernel, "
                  f"{model['call_overhead_s'] * 1e6:.1f} us per call", markup=False)
    rows = table(("row", "model", "batch", "measured ms", "fitted ms", "left-out ms"), left=("row", "model"))
    for r in data["rows"]:
        left_out = "" if r["left_out_ms"] is None else f"{r['left_out_ms']:.3f}"
        rows.add_row(r["where"], r["model"], str(r["batch"]), f"{r['measured_ms']:.3f}", f"{r['fitted_ms']:.3f}",
                     left_out)
    console.print(rows)
    if data["path"]:
        console.print(f"wrote {data['path']}: deploylens predict MODEL --target DEVICE --device-model "
                      f"{data['path']}", markup=False)

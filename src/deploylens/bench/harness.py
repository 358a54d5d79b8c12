"""``deploylens.bench``: correct latency and throughput on several backends.

Phase 1 prepares every (backend, batch) session and checks its outputs against torch
eager, so that a wrong export is never timed and a bad input writes nothing. Phase 2
times each one (warm-up, block timing, adaptive stop) and stores it.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from deploylens.bench import environment, malloc
from deploylens.bench.backends import Prepared, resolve_backends, temporary_onnx_dir
from deploylens.bench.gpu import NvmlSampler, load_nvml
from deploylens.bench.interference import InterferenceProbe, adjusted_median, pooled, quiet_median, quiet_samples
from deploylens.bench.runner import StopRule, measure, quietest
from deploylens.bench.stats import Timing
from deploylens.dtypes import RUN_PRECISIONS, precision_key
from deploylens.errors import UserError, first_line
from deploylens.hardware.local import this_gpu
from deploylens.hardware.spec import HardwareSpec, load_catalog
from deploylens.numerics import example_inputs, max_relative_error
from deploylens.onnx_runtime import export_for_runtime, session as onnxruntime_session

# per precision the backends run in: max |diff| relative to max |reference| (deploylens.numerics)
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 5e-2}


@dataclass
class Measurement:
    model: str
    backend: str
    device: str
    dtype: str
    batch: int
    threads: int
    scenario: str  # "latency" (batch 1, sequential) or "throughput" (offline, batched)
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    iqr_ms: float
    median_ci95_ms: list[float]
    throughput: float  # samples per second at the median
    iterations: int
    block: int
    warmup_iterations: int
    stop_reason: str
    noisy: bool
    cold_ms: dict  # {"load": ..., "first_inference": ...}
    max_rel_error: float | None  # outputs vs torch eager fp32
    flops: int | None  # per batch, from the analyzer
    bytes_fused: int | None
    achieved_gflops: float | None
    achieved_gbs: float | None
    device_p50_ms: float | None = None  # CUDA events
    gpu: dict | None = None  # NVML: GPU-Util beside achieved fractions of peak
    samples_ms: list[float] = field(default_factory=list)
    # with an interference probe: its reading around each sample, and the quiet samples' figures
    probe_ms: list[float] = field(default_factory=list)
    quiet: dict | None = None
    layers: list[dict] | None = None
    rounds_p50_ms: list[float] = field(default_factory=list)  # every round's median; the fields above: the lowest
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def check_request(backends: list[str] | tuple[str, ...], batches: list[int] | tuple[int, ...], device: str = "cpu",
                  dtype: str = "fp32", rounds: int = 1) -> tuple[str, list]:
    """Refuse, before anything is loaded, run or stored, a request :func:`bench` cannot
    carry out: an unknown or missing backend, a device or dtype it does not run, a batch
    size under 1. Returns the dtype's key (fp16 for float16) and the backends."""
    if device not in ("cpu", "cuda"):
        raise UserError(f"unknown device {device!r}: cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible here (the CUDA paths are skipped)")
    dtype = precision_key(dtype)  # fp16 or float16: one table
    if dtype not in RUN_PRECISIONS:
        raise UserError(f"dtype {dtype!r} does not run on the benchmark backends: one of {', '.join(RUN_PRECISIONS)}")
    if rounds < 1:
        raise UserError("--rounds must be at least 1")
    if not backends:
        raise UserError("no backend given")
    if not batches or any(b <= 0 for b in batches):
        raise UserError("batch sizes must be positive integers")
    return dtype, resolve_backends(list(backends), dtype, device)


def bench(model: Any, backends: list[str] | tuple[str, ...] = ("torch",), batches: list[int] | tuple[int, ...] = (1,),
          threads: int | None = None, device: str = "cpu", dtype: str = "fp32", input_shape: Any = None,
          rule: StopRule = StopRule(), layers: bool = False, store: Any = None,
          progress: Callable[[str], None] = lambda message: None, malloc_tuning: bool = True,
          rounds: int = 1, probe: InterferenceProbe | None = None, deploy: bool = False) -> list[Measurement]:
    """Measure ``model`` (any form ``analyze`` takes) on each backend and batch size;
    with ``deploy``, a zoo model's deploy form (re-parameterized, named ``NAME:deploy``).

    ``rounds`` > 1 times every (backend, batch) that many times, round-robin, and reports
    the round with the lowest median (:func:`deploylens.bench.runner.quietest`): the
    machine's own speed on a shared host; every round's median is kept.

    ``probe`` (:class:`deploylens.bench.interference.InterferenceProbe`, shared by every
    measurement of the run, or of several runs) is read between samples; each
    measurement then also reports ``quiet``: the median of its samples, over all rounds,
    taken while the probe ran at its quiet speed, their share, and the median of all its
    samples adjusted to the probe's quiet level (see :func:`quiet_figures`).

    ``malloc_tuning`` raises glibc's mmap/trim thresholds for this process first (see
    :mod:`deploylens.bench.malloc`); the environment records the allocator state.
    """
    from deploylens.analysis.api import analyze
    from deploylens.capture.loader import default_input_specs, parse_input_shapes, resolve_model

    dtype, chosen = check_request(backends, batches, device, dtype, rounds)
    if malloc_tuning:
        malloc.tune()
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    built, name = resolve_model(model, deploy=deploy)
    is_torch = isinstance(built, torch.nn.Module)
    if not is_torch and any(b.needs_torch_model for b in chosen):
        raise UserError("torch backends need a PyTorch model, not an ONNX file")
    shapes = parse_input_shapes(input_shape) or default_input_specs(model, built)

    with temporary_onnx_dir() as workdir:
        onnx_path = os.path.join(workdir, "model.onnx")
        prepared: list[tuple[Any, int, Prepared, float | None, list]] = []
        for batch in batches:
            inputs = example_inputs([((batch, *shape[1:]), kind) for shape, kind in shapes])
            reference = None
            if is_torch:
                try:
                    with torch.inference_mode():
                        reference = built.float().eval()(*inputs)
                except Exception as error:  # noqa: BLE001 - the model's own error
                    raise UserError(f"the model rejects batch {batch} with input shapes "
                                    f"{[list(x.shape) for x in inputs]}: {first_line(error)}") from error
            for backend in chosen:
                progress(f"preparing {backend.name} batch {batch}")
                if backend.needs_torch_model:
                    subject = built if device == "cpu" and dtype == "fp32" else copy.deepcopy(built)
                    session = backend.prepare(subject, inputs, threads, device, dtype)
                else:
                    if not os.path.exists(onnx_path):
                        if is_torch:
                            try:
                                export_for_runtime(built, inputs, onnx_path)
                            except Exception as error:  # noqa: BLE001 - the exporter's error, in one line
                                raise UserError(f"cannot export the model to ONNX for {backend.name}: "
                                                f"{first_line(error)}") from error
                        else:
                            import onnx

                            onnx.save_model(built, onnx_path)
                    try:
                        session = backend.prepare(onnx_path, [x.numpy() for x in inputs], threads, device)
                    except UserError:
                        raise
                    except Exception as error:  # noqa: BLE001 - runtimes raise their own types
                        raise UserError(f"{backend.name} cannot run the model: {first_line(error)}") from error
                error = max_relative_error(session.outputs(), reference) if reference is not None else None
                if error is not None and error > TOLERANCE[dtype]:
                    raise UserError(f"outputs of {backend.name} differ from torch eager by {error:.2e} "
                                    f"(relative, tolerance {TOLERANCE[dtype]:.0e}) at batch {batch}: not timed")
                prepared.append((backend, batch, session, error, inputs))

        profiles = {}
        for batch in batches:
            try:
                profiles[batch] = analyze(built, [((batch, *s[1:]), d) for s, d in shapes])
            except UserError:
                profiles[batch] = None

        env = environment.capture(threads)
        arguments = {"backends": list(backends), "batches": list(batches), "threads": threads, "device": device,
                     "dtype": dtype, "input_shapes": [list(s) for s, _ in shapes], "rule": asdict(rule),
                     "rounds": rounds}
        run_id = store.begin(name, arguments, env) if store else None
        results = []
        status = "interrupted"
        try:
            # looked up once: NVML for sampling beside each round, the GPU's catalog peaks
            nvml = load_nvml() if device == "cuda" else None
            gpu_spec = this_gpu(load_catalog()) if device == "cuda" else None
            # rounds run back to back over every (backend, batch), so that a noisy spell
            # of the machine hits one round of each rather than all rounds of one
            rounds_of: list[list] = [[] for _ in prepared]
            for round_index in range(rounds):
                for (backend, batch, session, error, inputs), timings in zip(prepared, rounds_of):
                    progress(f"timing {backend.name} batch {batch}" +
                             (f" (round {round_index + 1}/{rounds})" if rounds > 1 else ""))
                    timings.append(_timed_round(session, rule, nvml, probe))
                    if round_index < rounds - 1:
                        continue
                    # its last round: report and store it now, so that an interrupt keeps it
                    quiet = quietest([t for t, _ in timings])
                    timing, util = next(pair for pair in timings if pair[0] is quiet)
                    result = _measurement(name, backend.name, device, dtype, batch, threads, timing, session, error,
                                          profiles.get(batch), util, gpu_spec)
                    result.rounds_p50_ms = [t.summary.p50 * 1e3 for t, _ in timings]
                    if probe:
                        result.quiet = quiet_figures([t for t, _ in timings], probe)
                    if layers:
                        result.layers = _layer_times(backend.name, built, inputs, onnx_path, threads,
                                                     profiles.get(batch))
                    results.append(result)
                    if store:
                        store.add(run_id, result.to_dict())
            status = "complete"
        finally:
            if store:
                store.finish(run_id, status)
            for *_, session, _e, _i in prepared:
                session.close()
    return results


def _timed_round(session: Prepared, rule: StopRule, nvml: Any, probe: InterferenceProbe | None
                 ) -> tuple[Any, dict | None]:
    """One timed round, with NVML sampling beside it when ``nvml`` (the pynvml module) is given."""
    def timed():
        return measure(session.run, rule, sync=session.sync, device_timer=session.device_timer, probe=probe)

    if not nvml:
        return timed(), None
    with NvmlSampler(nvml) as sampler:
        timing = timed()
    return timing, sampler.report()


def quiet_figures(timings: list[Timing], probe: InterferenceProbe) -> dict:
    """``timings`` (every round of one measurement) against the probe's level now: the
    median of the quiet samples (see :func:`quiet_median`), their count and share, and the
    median of all samples adjusted to that level (see :func:`adjusted_median`)."""
    samples, readings = pooled(timings)
    level = probe.level()
    quiet = quiet_samples(samples, readings, probe, level)
    median = quiet_median(quiet)
    return {"p50_ms": median * 1e3 if median is not None else None, "samples": len(quiet),
            "share": len(quiet) / len(samples),
            "adjusted_p50_ms": adjusted_median(samples, readings, level, probe.exponent) * 1e3,
            "probe_level_ms": level * 1e3, "tolerance": probe.tolerance, "exponent": probe.exponent}


def _measurement(model: str, backend: str, device: str, dtype: str, batch: int, threads: int, timing, session,
                 error, profile, util, gpu_spec: HardwareSpec | None) -> Measurement:
    s = timing.summary
    flops = profile.totals.flops if profile else None
    nbytes = profile.totals.bytes_fused if profile else None
    gpu = None
    if device == "cuda":
        from deploylens.bench.gpu import utilization_context

        # fractions of the catalog's peaks of this GPU, when it is catalogued
        peak = gpu_spec.peak_flops(dtype) if gpu_spec else None
        gpu = utilization_context(util, flops / s.p50 / 1e12 if flops else None,
                                  nbytes / s.p50 / 1e9 if nbytes else None, peak / 1e12 if peak else None,
                                  gpu_spec.bandwidth.value / 1e9 if gpu_spec and gpu_spec.bandwidth else None)
        gpu["catalog_entry"] = gpu_spec.name if gpu_spec else None
    return Measurement(
        model=model, backend=backend, device=device, dtype=dtype, batch=batch, threads=threads,
        scenario="latency" if batch == 1 else "throughput",
        p50_ms=s.p50 * 1e3, p90_ms=s.p90 * 1e3, p95_ms=s.p95 * 1e3, p99_ms=s.p99 * 1e3, mean_ms=s.mean * 1e3,
        std_ms=s.std * 1e3, min_ms=s.min * 1e3, max_ms=s.max * 1e3, iqr_ms=s.iqr * 1e3,
        median_ci95_ms=[s.ci_low * 1e3, s.ci_high * 1e3], throughput=batch / s.p50, iterations=timing.iterations,
        block=timing.block, warmup_iterations=timing.warmup_iterations, stop_reason=timing.stop_reason,
        noisy=timing.noisy, cold_ms={"load": session.load_s * 1e3, "first_inference": session.first_s * 1e3},
        max_rel_error=error, flops=flops, bytes_fused=nbytes,
        achieved_gflops=flops / s.p50 / 1e9 if flops else None,
        achieved_gbs=nbytes / s.p50 / 1e9 if nbytes else None,
        device_p50_ms=(sorted(timing.device_samples)[len(timing.device_samples) // 2] * 1e3
                       if timing.device_samples else None),
        gpu=gpu, samples_ms=[x * 1e3 for x in timing.samples], probe_ms=[x * 1e3 for x in timing.probe_readings],
        info=session.info)


def _layer_times(backend: str, model, inputs, onnx_path: str, threads: int, profile) -> list[dict] | None:
    from deploylens.bench.layers import join, onnxruntime_node_times, output_owners, torch_module_times

    if backend in ("torch", "torch-compile") and isinstance(model, torch.nn.Module) and profile:
        return join(torch_module_times(model, inputs), profile, by="module")
    if backend == "onnxruntime":
        from deploylens.analysis.api import analyze

        onnx_profile = analyze(onnx_path, [tuple(x.shape) for x in inputs])
        names = [i.name for i in onnxruntime_session(onnx_path).get_inputs()]
        feeds = dict(zip(names, [x.numpy() for x in inputs]))
        return join(onnxruntime_node_times(onnx_path, feeds, threads), onnx_profile, by="name",
                    owners=output_owners(onnx_path))
    return None

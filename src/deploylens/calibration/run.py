"""`deploylens hw calibrate`: time the calibration set and the synthetic networks on this
machine, within a time budget, and derive the device model from the timings.

Each case is a small PyTorch module; the onnxruntime backend runs the same case exported
to ONNX, so both backends are calibrated by one set of definitions. On a CPU an
interference probe runs between samples (:mod:`deploylens.bench.interference`): a case's
time is the median of its samples over all rounds adjusted to the probe's quiet level.
On a CUDA GPU a case is replayed as a CUDA graph (the GPU's time alone) and what
launching its eager ops costs the CPU is measured apart; the predictor overlaps the two.
"""

from __future__ import annotations

import math
import os
import platform
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Callable

import torch
import torch.nn as nn

from deploylens.analysis.api import analyze
from deploylens.bench import malloc
from deploylens.bench.interference import InterferenceProbe, adjusted_median, pooled, quiet_median, quiet_samples
from deploylens.bench.runner import measure, quietest
from deploylens.calibration.budget import NETWORK, SETTINGS, Budget
from deploylens.calibration.cases import CHAIN, Case, conv_relu_onnx, cases, chain, runtime_cases
from deploylens.calibration.fit import derive, overheads
from deploylens.calibration.networks import BATCHES, RESOLUTION, STYLES, label, synthetic_network
from deploylens.calibration.sessions import launch_seconds, boundary_reorder_bytes, case_runner, launch_per_op
from deploylens.dtypes import analysis_name
from deploylens.errors import UserError
from deploylens.hardware.calibration_profile import (
    CalibrationPoint,
    CalibrationProfile,
    Machine,
    Probe,
    empty_points,
    identity,
)
from deploylens.hardware.local import cpu_info, this_cpu
from deploylens.kernels.onnxruntime_graph import added_kernels_in, as_onnx

Progress = Callable[[int, int, str], None]
Build = Callable[[], Callable[[], object]]


def _case_cost(case: Case, dtype: str) -> tuple[int, int, int]:
    """FLOPs, bytes (fused view) and the number of ops an eager call of ``case`` runs."""
    if case.cost:
        return case.cost
    profile = analyze(case.build().eval(), list(case.shapes), dtype)
    return profile.totals.flops, profile.totals.bytes_fused, sum(1 for layer in profile.layers if layer.op != "view")


class _Sessions:
    """How each timing's session is built on ``backend``: the cases', the synthetic
    networks' and the overheads'; what building them measured on the way (ONNX Runtime's
    boundary reorders and added kernels, a CUDA case's launch cost)."""

    def __init__(self, backend: str, threads: int, device: str, dtype: str, workdir: str):
        self.backend, self.threads, self.device, self.dtype, self.workdir = backend, threads, device, dtype, workdir
        self.sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        self.boundary: dict[str, int] = {}  # ONNX Runtime: bytes of the reorders around a conv case
        self.launch_s: dict[str, float] = {}  # CUDA: the CPU's time to launch a case's eager ops
        self.added: dict[str, list] = {}  # ONNX Runtime: the kernels it adds to each synthetic network

    def eager(self, model: nn.Module, inputs: list[torch.Tensor]) -> Build:
        return lambda: case_runner(self.backend, model, inputs, self.threads, self.workdir, device=self.device,
                                   dtype=self.dtype)

    def case(self, case: Case) -> Build:
        def build():
            torch.manual_seed(0)
            model, inputs = case.build().eval(), [torch.randn(s) for s in case.shapes]
            onnx_model, optimized = None, None
            if self.backend == "onnxruntime" and case.onnx:
                onnx_model = case.onnx()
            elif self.backend == "onnxruntime" and case.geometry:
                onnx_model = conv_relu_onnx(case.geometry, case.shapes[0])
                optimized = os.path.join(self.workdir, "optimized.onnx")
            if self.device == "cuda":  # eager on an idle GPU first, then the same module as a graph
                self.launch_s[case.label] = launch_seconds(self.eager(model, inputs)(), self.sync)
            run = case_runner(self.backend, model, inputs, self.threads, self.workdir, onnx_model, self.device,
                              self.dtype, graph=self.device == "cuda", optimized=optimized)
            if optimized:
                out = case.geometry["c_out"] * case.geometry["pixels"]
                self.boundary[case.label] = boundary_reorder_bytes(
                    optimized, {"input0": math.prod(case.shapes[0]), "conv": out, "output": out})
            return run
        return build

    def network(self, name: str, model: nn.Module, inputs: list[torch.Tensor]) -> Build:
        """A synthetic network's session; on ONNX Runtime its optimized graph read for the
        kernels it adds (the derived figures need them)."""
        if self.backend != "onnxruntime":
            return self.eager(model, inputs)

        def build():
            onnx_model = as_onnx(model, inputs, self.workdir)
            optimized = os.path.join(self.workdir, "optimized.onnx")
            run = case_runner("onnxruntime", None, inputs, self.threads, self.workdir, onnx_model.SerializeToString(),
                              optimized=optimized)
            self.added[name] = added_kernels_in(onnx_model, optimized, [tuple(x.shape) for x in inputs])
            return run
        return build


def _time_all(sessions: dict[str, Build], networks: set[str], rounds: int, case_major: bool, budget: Budget,
              probe: InterferenceProbe | None, sync: Callable[[], None], progress: Progress, done: int,
              total: int) -> dict[str, list]:
    """Every session's rounds, within ``budget``: round-robin (each session built first),
    or with ``case_major`` each session's rounds back to back on a session dropped after
    them. ONNX Runtime gives each session a thread pool whose threads spin for a while
    after a run, slowing the sessions run beside them (docs/device-models.md), so ONNX
    Runtime's cases run case-major."""
    prebuilt = rounds > 1 and not case_major
    held = {}
    for name, build in sessions.items() if prebuilt else ():
        progress(done, total, f"preparing {name}")
        done += 1
        held[name] = build()
    rounds_of: dict[str, list] = {name: [] for name in sessions}
    order = ([(index, name) for name in sessions for index in range(rounds)] if case_major
             else [(index, name) for index in range(rounds) for name in sessions])
    for round_index, name in order:
        progress(done, total, f"round {round_index + 1}/{rounds}: {name}")
        done += 1
        began = time.perf_counter()
        rule = NETWORK if name in networks else budget.case_rule(round_index == 0, began)
        if rule:  # None: out of time, the case keeps the rounds it had
            if name not in held:
                held[name] = sessions[name]()
            rounds_of[name].append(measure(held[name], rule, sync=sync, probe=probe))
            budget.spent(name in networks, time.perf_counter() - began, rule.max_time)
        if not prebuilt and round_index == rounds - 1:
            held.pop(name, None)
    return rounds_of


def _seconds(rounds_of: dict[str, list], probe: InterferenceProbe | None) -> tuple[dict[str, float], Probe | None]:
    """Each timing's seconds: with probe readings, the median of its samples over all
    rounds adjusted to the probe's quiet level (with the probe's exponent: one fitted on
    short cases comes out low, since a case spans one or two probe readings); without (a
    GPU), its quietest round's median."""
    if not (probe and probe.readings):
        return {name: quietest(timings).summary.p50 for name, timings in rounds_of.items()}, None
    level = probe.level()
    measured = {name: pooled(timings) for name, timings in rounds_of.items()}
    seconds = {name: adjusted_median(samples, readings, level, probe.exponent)
               for name, (samples, readings) in measured.items()}
    quiet = sum(quiet_median(quiet_samples(samples, readings, probe, level)) is not None
                for samples, readings in measured.values())
    return seconds, Probe(level, probe.tolerance, quiet / len(measured), probe.exponent)


def calibrate(backend: str = "torch", threads: int | None = None, max_flops: float | None = None,
              rounds: int | None = None, device: str = "cpu", dtype: str = "fp32",
              progress: Progress = lambda done, total, label: None, probe_level: float | None = None,
              budget_s: float | None = None, styles: tuple[str, ...] | None = None
              ) -> CalibrationProfile:
    """Time the calibration set ``rounds`` times (default: the device's) and the synthetic
    networks of ``styles`` (default: all), within ``budget_s`` seconds (None: the device's
    budget; ``math.inf``: no bound), and derive the device model. ``max_flops``: the largest
    case (default: the device's). ``probe_level``: the machine's quiet probe level known
    from earlier runs (:func:`~deploylens.hardware.calibration_profile.known_probe_level`)."""
    threads = threads or torch.get_num_threads()
    valid_for = identity(device, backend, threads, dtype)
    setting = SETTINGS[device]
    if max_flops is not None:
        setting = replace(setting, max_flops=max_flops)
    if budget_s is not None:
        if not budget_s > 0:
            raise UserError("the calibration's time budget must be positive seconds")
        setting = replace(setting, budget_s=None if math.isinf(budget_s) else budget_s)
    rounds = setting.rounds if rounds is None else rounds
    if rounds < 1:
        raise UserError("calibration needs at least one round")
    styles = tuple(STYLES) if styles is None else styles
    unknown = [s for s in styles if s not in STYLES]
    if unknown:
        raise UserError(f"unknown synthetic network {', '.join(unknown)}: one of {', '.join(STYLES)}")
    torch.set_num_threads(threads)
    allocator = malloc.tune()  # the same allocator state as `deploylens bench`
    started = time.perf_counter()
    chosen = cases(setting, valid_for["vector_lanes"]) + (runtime_cases(setting) if backend == "onnxruntime" else [])
    # a GPU case is timed as a CUDA graph on a device nobody shares: no probe there
    probe = InterferenceProbe(known_level=probe_level) if device == "cpu" else None
    with tempfile.TemporaryDirectory(prefix="deploylens-calibrate-") as workdir:
        builders = _Sessions(backend, threads, device, dtype, workdir)
        # the synthetic networks first (see Budget)
        networks = {label(style, batch): (style, batch) for batch in BATCHES for style in styles}
        sessions = {name: builders.network(name, synthetic_network(style).eval(),
                                        [torch.randn(batch, 3, RESOLUTION, RESOLUTION)])
                    for name, (style, batch) in networks.items()}
        sessions.update({case.label: builders.case(case) for case in chosen})
        one = torch.randn(1)
        sessions["overhead call"] = builders.eager(chain(1), [one])
        sessions["overhead chain"] = builders.eager(chain(CHAIN), [one])
        if backend == "torch":  # views cost nothing in a runtime's graph
            sessions["overhead view"] = lambda: (lambda: one.view(1, 1))
        case_major = backend == "onnxruntime"
        total = len(chosen) + (len(sessions) if rounds > 1 and not case_major else 0) + rounds * len(sessions)
        costs = {}
        for index, case in enumerate(chosen):
            progress(index, total, f"costing {case.label}")
            costs[case.label] = _case_cost(case, analysis_name(dtype))
        budget = Budget.of(started, setting.budget_s, rounds * (len(sessions) - len(networks)),
                           rounds * len(networks))
        rounds_of = _time_all(sessions, set(networks), rounds, case_major, budget, probe, builders.sync, progress,
                              len(chosen), total)
    seconds, probed = _seconds(rounds_of, probe)
    fixed = overheads(seconds, device)
    points = empty_points()
    for case in chosen:
        flops, nbytes, ops = costs[case.label]
        points[case.kernel_class].append(CalibrationPoint(
            case.label, flops, nbytes, seconds[case.label], list(case.shapes[0]), case.geometry,
            launch_per_op(builders.launch_s[case.label], ops, fixed) if case.label in builders.launch_s else None,
            builders.boundary.get(case.label) or None))
    info = cpu_info()
    profile = CalibrationProfile(
        device=device, backend=backend, threads=threads, dtype=dtype, vector_lanes=valid_for["vector_lanes"],
        machine=Machine(info["model"], info["isa"], info["mhz"], platform.node(), valid_for["gpu"]), points=points,
        fixed_s={name: value for name, value in seconds.items() if name not in costs},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), torch=torch.__version__, rounds=rounds,
        budget_s=setting.budget_s, allocator=allocator,
        # the ISA's peak at the nominal clock; predictions are capped at it or at the
        # fastest case (calibration.fit.compute_ceiling); none on a GPU
        isa_peak_flops=this_cpu(threads).peak_flops("fp32") if device == "cpu" else None, probe=probed)
    derive(profile, builders.added)
    progress(total, total, "done")
    profile.seconds_taken = round(time.perf_counter() - started, 1)
    return profile

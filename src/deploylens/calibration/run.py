"""`deploylens hw calibrate`: time the calibration set and the synthetic networks on this
machine, within a time budget, and derive the device model from the timings.

Each case is a small PyTorch module; the onnxruntime backend runs the same case exported
to ONNX, so both backends are calibrated by one set of definitions. On a CPU an
interference probe runs between samples (:mod:`deploylens.bench.interference`): a case's
time is the median of its samples over all rounds adjusted to the probe's quiet level.
On a CUDA GPU a case is replayed as a CUDA graph (the GPU's time alone) and what
launching its eager ops costs the CPU is measured apart; the predictor overlaps the two.

Every part of a calibration is charged to its time budget (:class:`~deploylens.calibration.budget.Budget`):
the minimum viable calibration (:func:`essentials`) first, then the synthetic networks and
the other cases; what the budget leaves untimed is listed in the profile (``skipped``). On
a CPU no rate is left above what the cores can physically do (``Bounds``): a faster timing
is capped there and named in the profile's notes.
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
from deploylens.calibration.budget import SETTINGS, Budget
from deploylens.calibration.cases import CHAIN, Case, conv_relu_onnx, cases, chain, runtime_cases
from deploylens.calibration.fit import derive, overheads
from deploylens.calibration.networks import BATCHES, RESOLUTION, STYLES, label, synthetic_network
from deploylens.calibration.sessions import launch_seconds, boundary_reorder_bytes, case_runner, launch_per_op
from deploylens.dtypes import analysis_name
from deploylens.errors import UserError
from deploylens.hardware.calibration_profile import (
    Bounds,
    CalibrationPoint,
    CalibrationProfile,
    Machine,
    Probe,
    empty_points,
    identity,
)
from deploylens.hardware.kernel_classes import COMPUTE_CLASSES
from deploylens.hardware.local import cpu_info, physical_bounds, this_cpu
from deploylens.kernels.onnxruntime_graph import added_kernels_in, as_onnx

Progress = Callable[[int, int, str], None]
Build = Callable[[], Callable[[], object]]
# the timings the minimum viable calibration holds beside one case per kernel class
OVERHEADS = ("overhead call", "overhead chain", "overhead view")
# a probe reading counts at most this many times the quiet level when a sample is adjusted
# to it: past that the probe (a conv on every thread) was held up by a thread of its own
# being descheduled, which slows it hundreds of times while the case's samples slow a few
# times (measured on the 2-core AMD EPYC VM, 2026-12-03, three busy-loop processes beside a
# calibration: probe readings 150-770x its quiet level, the cases' samples 1-10x; unclipped,
# the adjustment put a concatenation at 1134 GB/s against 82 GB/s for its samples' median).
# Up to 4x the adjustment is as measured and fitted (docs/measurement.md); past it a sample is
# scaled by 4 ^ -0.45 = 0.54 at the least, so a busy host can still make a case look up to
# 1.9x faster than it is (a concatenation at 337 GB/s against 166-173 quiet, in that run):
# the physical bounds cap what is impossible, the busy-host warning says the rest.
MAX_PROBE_RATIO = 4.0


class _OutOfTime(Exception):
    """A round ran into the end of the budget's timing."""


class _Guarded:
    """A session's run that stops the round it is timed in (:class:`_OutOfTime`) once the
    budget's timing has ended or ``until`` has passed (a synthetic network's round: the
    networks' share of the budget), unless ``always`` (the minimum viable calibration)."""

    def __init__(self, run: Callable[[], object], budget: Budget):
        self.run, self.budget, self.always, self.until = run, budget, False, math.inf

    def __call__(self):
        if not self.always and time.perf_counter() > min(self.budget.end, self.until):
            raise _OutOfTime
        return self.run()


def essentials(chosen: list[Case]) -> list[str]:
    """The minimum viable calibration: beside the overheads, one case of each kernel class
    (of those ``chosen``), the middle one by size of its batch-1 cases. Every kernel then
    has a rate (that of the nearest case timed) and a profile predicts; these run first
    and always, whatever the budget."""
    def size(case: Case) -> float:
        g = case.geometry
        return math.prod(case.shapes[0]) * (g["c_out"] * g["kernel"] ** 2 / g["groups"] if g else 1)

    picked = []
    for klass in dict.fromkeys(case.kernel_class for case in chosen):
        of_class = [c for c in chosen if c.kernel_class == klass]
        single = sorted((c for c in of_class if c.shapes[0][0] == 1), key=size) or of_class
        picked.append(single[len(single) // 2].label)
    return picked


def _spread(names: list[str]) -> list[str]:
    """``names`` in an order that spreads any prefix of it over the whole list (steps of
    the golden ratio), so that a budget running out leaves gaps all over the calibration
    set rather than its last sizes untimed."""
    golden = (5 ** 0.5 - 1) / 2
    return [names[i] for i in sorted(range(len(names)), key=lambda i: (i * golden) % 1.0)]


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
        self.costs: dict[str, tuple[int, int, int]] = {}  # each case timed: FLOPs, bytes, ops
        self.analyses: dict[str, object] = {}  # each synthetic network timed: its analysis, for the fit
        self.budget: Budget | None = None  # told how long the analyses took (the fit's time)

    def eager(self, model: nn.Module, inputs: list[torch.Tensor]) -> Build:
        return lambda: case_runner(self.backend, model, inputs, self.threads, self.workdir, device=self.device,
                                   dtype=self.dtype)

    def case(self, case: Case) -> Build:
        def build():
            if case.label not in self.costs:  # costed when first timed: the budget's time
                self.costs[case.label] = _case_cost(case, analysis_name(self.dtype))
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

    def network(self, name: str, style: str, batch: int) -> Build:
        """A synthetic network's session, built when first timed, with its analysis for the
        whole-network fit (:func:`~deploylens.calibration.fit.context_fit`); on ONNX Runtime
        its optimized graph read for the kernels it adds (the fit needs them too)."""
        def build():
            model = synthetic_network(style).eval()
            inputs = [torch.randn(batch, 3, RESOLUTION, RESOLUTION)]
            began = time.perf_counter()
            self.analyses[name] = analyze(model, [(tuple(inputs[0].shape), "float")], analysis_name(self.dtype))
            if self.budget is not None:
                self.budget.analysed(time.perf_counter() - began)
            if self.backend != "onnxruntime":
                return self.eager(model, inputs)()
            onnx_model = as_onnx(model, inputs, self.workdir)
            optimized = os.path.join(self.workdir, "optimized.onnx")
            run = case_runner("onnxruntime", None, inputs, self.threads, self.workdir, onnx_model.SerializeToString(),
                              optimized=optimized)
            self.added[name] = added_kernels_in(onnx_model, optimized, [tuple(x.shape) for x in inputs])
            return run
        return build


def _order(sessions: list[str], networks: list[str], first: list[str], rounds: int,
           case_major: bool) -> list[tuple[int, str]]:
    """The rounds to run, as (round index, session): the minimum viable calibration
    (``first``), then the synthetic networks, then the other cases spread (see
    :func:`_spread`); round-robin, each round in that order, or with ``case_major`` each
    session's rounds back to back."""
    rest = _spread([name for name in sessions if name not in networks and name not in first])
    ordered = [name for name in first if name in sessions] + list(networks) + rest
    if case_major:
        return [(index, name) for name in ordered for index in range(rounds)]
    return [(index, name) for index in range(rounds) for name in ordered]


def _time_all(sessions: dict[str, Build], networks: list[str], first: list[str], rounds: int, case_major: bool,
              budget: Budget, probe: InterferenceProbe | None, sync: Callable[[], None], progress: Progress
              ) -> dict[str, list]:
    """Every session's rounds that ``budget`` allows (see :func:`_order`), each session
    built when first timed; with ``case_major`` each session's rounds back to back on a
    session dropped after them. ONNX Runtime gives each session a thread pool whose threads
    spin for a while after a run, slowing the sessions run beside them
    (docs/device-models.md), so ONNX Runtime's cases run case-major. A round past the
    budget's end stops at its next call and is dropped; the minimum viable calibration's
    first rounds (``first``) always run."""
    held = {}
    rounds_of: dict[str, list] = {name: [] for name in sessions}
    order = _order(list(sessions), networks, first, rounds, case_major)
    for done, (round_index, name) in enumerate(order):
        progress(done, len(order), f"round {round_index + 1}/{rounds}: {name}")
        began = time.perf_counter()
        network, essential = name in networks, round_index == 0 and name in first
        rule = (budget.network_rule(name, began) if network
                else budget.case_rule(round_index == 0, began, essential))
        if rule:  # None: out of time, the session keeps the rounds it had
            try:
                if name not in held:
                    held[name] = _Guarded(sessions[name](), budget)
                held[name].always = essential
                held[name].until = budget.network_until(began) if network else math.inf
                rounds_of[name].append(measure(held[name], rule, sync=sync, probe=probe))
            except _OutOfTime:
                pass
            budget.spent(network, time.perf_counter() - began, rule.max_time, name)
        if case_major and round_index == rounds - 1:
            held.pop(name, None)
    return rounds_of


def _seconds(rounds_of: dict[str, list], probe: InterferenceProbe | None) -> tuple[dict[str, float], Probe | None]:
    """Each timing's seconds: with probe readings, the median of its samples over all
    rounds adjusted to the probe's quiet level (with the probe's exponent: one fitted on
    short cases comes out low, since a case spans one or two probe readings; each reading
    counted at most MAX_PROBE_RATIO times the level); without (a GPU), its quietest
    round's median."""
    if not (probe and probe.readings):
        return {name: quietest(timings).summary.p50 for name, timings in rounds_of.items()}, None
    level = probe.level()
    measured = {name: pooled(timings) for name, timings in rounds_of.items()}
    # a reading counts at most MAX_PROBE_RATIO times the level (a descheduled probe thread)
    seconds = {name: adjusted_median(samples, [min(r, level * MAX_PROBE_RATIO) for r in readings], level,
                                     probe.exponent)
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
        networks = {label(style, batch): (style, batch) for batch in BATCHES for style in styles}
        sessions = {name: builders.network(name, style, batch) for name, (style, batch) in networks.items()}
        sessions.update({case.label: builders.case(case) for case in chosen})
        one = torch.randn(1)
        sessions["overhead call"] = builders.eager(chain(1), [one])
        sessions["overhead chain"] = builders.eager(chain(CHAIN), [one])
        if backend == "torch":  # views cost nothing in a runtime's graph
            sessions["overhead view"] = lambda: (lambda: one.view(1, 1))
        first = [name for name in OVERHEADS if name in sessions] + essentials(chosen)
        budget = Budget.of(started, setting.budget_s, rounds * (len(sessions) - len(networks)),
                           rounds * len(networks), rounds)
        builders.budget = budget
        rounds_of = _time_all(sessions, list(networks), first, rounds, backend == "onnxruntime", budget, probe,
                              builders.sync, progress)
    timed = {name: timings for name, timings in rounds_of.items() if timings}
    seconds, probed = _seconds(timed, probe)
    fixed = overheads(seconds, device)
    points = empty_points()
    for case in chosen:
        if case.label not in seconds:
            continue
        flops, nbytes, ops = builders.costs[case.label]
        points[case.kernel_class].append(CalibrationPoint(
            case.label, flops, nbytes, seconds[case.label], list(case.shapes[0]), case.geometry,
            launch_per_op(builders.launch_s[case.label], ops, fixed) if case.label in builders.launch_s else None,
            builders.boundary.get(case.label) or None))
    info = cpu_info()
    bounds = physical_bounds(threads, info) if device == "cpu" else None
    profile = CalibrationProfile(
        device=device, backend=backend, threads=threads, dtype=dtype, vector_lanes=valid_for["vector_lanes"],
        machine=Machine(info["model"], info["isa"], info["mhz"], platform.node(), valid_for["gpu"]), points=points,
        fixed_s={name: value for name, value in seconds.items() if name not in builders.costs},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), torch=torch.__version__, rounds=rounds,
        budget_s=setting.budget_s, allocator=allocator,
        # the ISA's peak at the highest boost clock where it is readable, else at
        # /proc/cpuinfo's clock; predictions are capped at it or at the fastest case
        # (calibration.fit.compute_ceiling), both within the bounds; none on a GPU
        isa_peak_flops=this_cpu(threads).peak_flops("fp32") if device == "cpu" else None, probe=probed,
        bounds=Bounds(**bounds) if bounds else None,
        skipped=[name for name in sessions if name not in timed])
    profile.notes += capped(profile) + _partial(profile, len(chosen), list(networks))
    derive(profile, builders.added, builders.analyses)
    progress(1, 1, "done")
    profile.seconds_taken = round(time.perf_counter() - started, 1)
    return profile


def capped(profile: CalibrationProfile) -> list[str]:
    """Caps every point timed faster than the profile's physical bounds allow at them
    (keeping its timing in ``measured_s``); a note per kernel class capped. A timing that
    fast is an artefact (a busy host's adjustment, a bound too low for this CPU), so the
    note names it."""
    if profile.bounds is None:
        return []
    notes = []
    for klass, points in profile.points.items():
        compute = klass in COMPUTE_CLASSES
        over = []
        for p in points:
            work = p.flops if compute else p.bytes
            bound = profile.bounds.flops if compute else profile.bounds.bandwidth(p.bytes)
            if work and p.seconds < work / bound:
                over.append((work / p.seconds, bound, p))
                p.measured_s, p.seconds = p.measured_s or p.seconds, work / bound
        if over:
            rate, bound, fastest = max(over, key=lambda item: item[0] / item[1])
            unit, scale = ("GFLOP/s", 1e9) if compute else ("GB/s", 1e9)
            notes.append(f"{klass}: {len(over)} of {len(points)} points timed faster than the physical bound, capped "
                         f"at it: {fastest.label} at {rate / scale:.0f} {unit} against {bound / scale:.0f} {unit} "
                         f"({profile.bounds.source})")
    return notes


def _partial(profile: CalibrationProfile, cases_total: int, networks: list[str]) -> list[str]:
    """The note of a calibration its budget cut short (nothing when every part was timed)."""
    if not profile.skipped:
        return []
    untimed = sum(1 for name in profile.skipped if name in networks)
    return [f"partial calibration: its {profile.budget_s:g} s budget ran out before {len(profile.skipped) - untimed} "
            f"of {cases_total} cases and {untimed} of {len(networks)} synthetic networks were timed (listed in "
            "`skipped`); their kernels take the rates of the nearest cases timed"]

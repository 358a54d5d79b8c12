"""The figures a calibration derives from its timings: the compute ceiling, the per-kernel
and per-call overheads, the time of ONNX Runtime's boundary reorders in each conv case,
and per batch size the whole-network factor and per-kernel cost fitted on the synthetic
networks; and the combination of several calibrations into one."""

from __future__ import annotations

import copy
import statistics

from deploylens.analysis.api import analyze
from deploylens.calibration.cases import CHAIN
from deploylens.calibration.networks import BATCHES, RESOLUTION, STYLES, label, synthetic_network
from deploylens.cost.records import KernelCost
from deploylens.dtypes import analysis_name
from deploylens.hardware.calibration_profile import CalibrationProfile, Overheads, check_combinable
from deploylens.hardware.kernel_classes import COMPUTE_CLASSES, channel_alignment
from deploylens.kernels.onnxruntime_graph import added_kernels
from deploylens.predict.calibrated import nearest_rate, size_distance
from deploylens.predict.core import kernels_to_run, predict_profile


def overheads(seconds: dict[str, float], device: str) -> Overheads:
    """Per-kernel overhead (each extra op of the chain), per-call overhead (a model call or
    session run, paid once per inference), in torch eager a view op's, and what a
    calibration point's time holds beyond its kernel (a CUDA graph replay: nothing)."""
    kernel = max((seconds["overhead chain"] - seconds["overhead call"]) / (CHAIN - 1), 0.0)
    call = max(seconds["overhead call"] - kernel, 0.0)
    return Overheads(kernel, call, seconds.get("overhead view", 0.0), 0.0 if device == "cuda" else kernel + call)


def fit_context(networks: list[tuple[float, float, int]], per_kernel: bool = True) -> tuple[float, float]:
    """(factor, seconds per kernel) with measured = factor x predicted + kernels x seconds,
    fitted to (measured s, predicted s, kernels) of whole networks in relative least
    squares; the factor alone without ``per_kernel`` or when that term comes out negative;
    (1, 0) without networks (a calibration whose budget timed none)."""
    if not networks:
        return 1.0, 0.0
    a = [predicted / measured for measured, predicted, _ in networks]
    b = [kernels / measured for measured, _, kernels in networks]
    aa, ab, bb = sum(x * x for x in a), sum(x * y for x, y in zip(a, b)), sum(y * y for y in b)
    determinant = aa * bb - ab * ab
    if per_kernel and determinant > 0:
        factor, per_kernel = (bb * sum(a) - ab * sum(b)) / determinant, (aa * sum(b) - ab * sum(a)) / determinant
        if per_kernel >= 0 and factor > 0:
            return factor, per_kernel
    return sum(a) / aa, 0.0


def context_fit(profile: CalibrationProfile, batch: int, rounds: int = 4,
                added: dict[str, list[KernelCost]] | None = None,
                analyses: dict | None = None) -> tuple[float, float]:
    """How the synthetic networks at ``batch`` run against their prediction from the
    profile's points: a factor on every kernel and, at the smallest batch, a cost per
    kernel (see :func:`fit_context`; at larger batches a per-kernel term overshoots small
    networks, so they take the factor alone). The factor fades for kernels near the
    compute ceiling (see ``predict.calibrated.calibrated_time``), so it is fitted in
    ``rounds``: each round predicts with the factor so far and corrects it by the factor
    fitted on that. ``added``: ONNX Runtime's added kernels per network label, read from
    the graphs its timing sessions saved (otherwise each network is exported again here).
    ``analyses``: each network's analysis by label, made while it was timed (otherwise
    each network is analysed here)."""
    shape = (batch, 3, RESOLUTION, RESOLUTION)
    networks = []  # analysed once: only the factor changes between rounds
    for style in STYLES:
        name = label(style, batch)
        if name not in profile.fixed_s:
            continue
        model = synthetic_network(style).eval()
        analysis = (analyses[name] if analyses and name in analyses
                    else analyze(model, [(shape, "float")], analysis_name(profile.dtype)))
        extra = ([] if profile.backend != "onnxruntime" else added[name] if added and name in added
                 else added_kernels(model, [shape], profile.threads))
        networks.append((profile.fixed_s[name], analysis, kernels_to_run(analysis, profile, profile.backend, extra)))
    trial = copy.copy(profile)  # the profile itself keeps its figures: each round predicts from a trial factor
    factor, per_kernel = 1.0, 0.0
    for _ in range(rounds):
        trial.context_factor, trial.context_kernel_s = {str(batch): factor}, {}
        predicted = [predict_profile(analysis, trial, profile.backend, batch, kernels).totals
                     for _, analysis, kernels in networks]
        correction, per_kernel = fit_context([(measured, p["latency_ms"] / 1e3, p["kernels"])
                                              for (measured, _, _), p in zip(networks, predicted)],
                                             per_kernel=batch == min(BATCHES))
        factor *= correction
    return factor, per_kernel


def boundary_times(profile: CalibrationProfile) -> None:
    """The time of the reorders ONNX Runtime ran around each conv case, at the rate of the
    batch-1 reorder cases of its input channel alignment, nearest in size: a conv inside a
    network keeps the blocked layout and runs none of them. A case's reorders touch the
    tensors its conv reads or writes next, in cache, as a batch-1 round trip does."""
    lanes = profile.vector_lanes

    def alignment(shape: list[int]) -> int:
        return channel_alignment(shape[1], shape[1], 1, lanes)

    round_trips = [r for r in profile.points.get("reorder", []) if r.input_shape[0] == 1]
    for points in profile.points.values():
        for p in points:
            if not (p.reorder_bytes and round_trips):
                continue
            # a stem's 3 input channels have no reorder case of their alignment: all round trips
            like = [r for r in round_trips if alignment(r.input_shape) == alignment(p.input_shape)] or round_trips
            p.boundary_s = p.reorder_bytes / nearest_rate(like, size_distance(0, p.reorder_bytes, False), False,
                                                          profile.overhead_s.in_points)


def compute_ceiling(profile: CalibrationProfile) -> float | None:
    """The fastest a kernel may be predicted on a CPU: the ISA's peak at its clock (the
    highest boost clock where readable, else /proc/cpuinfo's) or, when the cores ran
    faster than that (turbo, which a VM's /proc/cpuinfo does not show), the fastest rate a
    calibration case reached; never above the physical bound (``profile.bounds``). None on
    a GPU, whose fp32 convs run on TF32 tensor cores by default, above its fp32 peak."""
    if profile.device != "cpu":
        return None
    rates = [p.flops / p.seconds for klass in COMPUTE_CLASSES for p in profile.points.get(klass, [])
             if p.flops and p.seconds > 0]
    ceiling = max([profile.isa_peak_flops or 0.0, *rates]) or None
    return min(ceiling, profile.bounds.flops) if ceiling and profile.bounds else ceiling


def derive(profile: CalibrationProfile, added: dict[str, list[KernelCost]] | None = None,
           analyses: dict | None = None) -> None:
    """The compute ceiling and overheads, then per batch size the whole-network factor and
    per-kernel cost (dispatch, cache behaviour and layout change with the batch), from the
    profile's timings (``added``, ``analyses``: see :func:`context_fit`)."""
    profile.peak_flops = compute_ceiling(profile)
    profile.overhead_s = overheads(profile.fixed_s, profile.device)
    boundary_times(profile)
    fits = {str(b): context_fit(profile, b, added=added, analyses=analyses) for b in BATCHES}
    profile.context_factor = {b: factor for b, (factor, _) in fits.items()}
    profile.context_kernel_s = {b: per_kernel for b, (_, per_kernel) in fits.items()}


def combine(earlier: CalibrationProfile, later: CalibrationProfile) -> CalibrationProfile:
    """One profile from calibrations of the same machine, backend and threads: every
    timing the median of those of all the calibrations combined (kept per point in
    ``seconds_each``, per fixed timing in ``fixed_each``), the derived figures computed
    again. Calibrations minutes apart meet different spells of a shared host; their
    median is steadier than any one of them (docs/device-models.md)."""
    check_combinable(earlier, later.identity())
    before = {(klass, p.label): p.seconds_each or [p.seconds]
              for klass, points in earlier.points.items() for p in points}
    merged = copy.deepcopy(later)
    for klass, points in merged.points.items():
        for p in points:
            p.seconds_each = before.get((klass, p.label), []) + (p.seconds_each or [p.seconds])
            p.seconds = statistics.median(p.seconds_each)
        # a case only the earlier calibration timed (the later one's budget skipped it)
        timed = {p.label for p in points}
        points += [copy.deepcopy(p) for p in earlier.points.get(klass, []) if p.label not in timed]
    merged.skipped = [name for name in later.skipped if name in set(earlier.skipped)]
    merged.notes = [note for note in dict.fromkeys(earlier.notes + later.notes)
                    if merged.skipped or not note.startswith("partial calibration")]

    def fixed_each(profile: CalibrationProfile) -> dict[str, list[float]]:
        return profile.fixed_each or {name: [value] for name, value in profile.fixed_s.items()}

    fixed_before = fixed_each(earlier)
    later_fixed = fixed_each(later)
    merged.fixed_each = {name: fixed_before.get(name, []) + later_fixed.get(name, [])
                         for name in dict.fromkeys([*fixed_before, *later_fixed])}
    merged.fixed_s = {name: statistics.median(values) for name, values in merged.fixed_each.items()}
    merged.rounds = earlier.rounds + later.rounds
    derive(merged)
    return merged

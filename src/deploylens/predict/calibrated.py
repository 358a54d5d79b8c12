"""A kernel's time from this machine's calibration: each kernel is matched to the
calibration points of its class nearest to it, whose achieved rate it takes: a conv by
its geometry (channels, groups, output pixels, kernel size, stride, channel alignment to
the SIMD width), any other kernel by (log FLOPs, log bytes)."""

from __future__ import annotations

import math
from typing import Callable

from deploylens.cost.records import KernelCost
from deploylens.errors import UserError
from deploylens.hardware.calibration_profile import CalibrationPoint, CalibrationProfile
from deploylens.hardware.kernel_classes import COMPUTE_CLASSES, channel_alignment

NEIGHBOURS = 4
# steps of the conv geometry distance, in log10 units of channels or pixels
KERNEL_STEP, STRIDE_STEP, ALIGNMENT_STEP = 0.5, 0.3, 1.0

Distance = Callable[[CalibrationPoint], float]


def _log(value: float) -> float:
    return math.log10(max(value, 1.0))


def size_distance(flops: int, nbytes: int, compute: bool) -> Distance:
    """Distance in (log FLOPs, log bytes); bytes only for a memory-bound class."""
    def distance(p: CalibrationPoint) -> float:
        if not compute:
            return abs(_log(p.bytes) - _log(nbytes))
        return math.hypot(_log(p.flops) - _log(flops), _log(p.bytes) - _log(nbytes))
    return distance


def geometry_distance(geometry: dict, lanes: int) -> Distance:
    """Distance between conv geometries: log channels, log channels per group and log
    output pixels, plus fixed steps for another kernel size, stride or each level of
    channel alignment (a conv whose channels do not fill the SIMD vectors runs a slower
    path: :func:`~deploylens.hardware.kernel_classes.channel_alignment`)."""
    alignment = channel_alignment(geometry["c_in"], geometry["c_out"], geometry["groups"], lanes)

    def features(g: dict) -> tuple[float, ...]:
        return (_log(g["pixels"]), _log(g["c_in"]), _log(g["c_out"]), _log(g["c_in"] // g["groups"]))

    mine = features(geometry)

    def distance(p: CalibrationPoint) -> float:
        other = p.geometry
        return (math.dist(mine, features(other))
                + KERNEL_STEP * (other["kernel"] != geometry["kernel"])
                + STRIDE_STEP * (other["stride"] != geometry["stride"])
                + ALIGNMENT_STEP * abs(channel_alignment(other["c_in"], other["c_out"], other["groups"], lanes)
                                       - alignment))
    return distance


def nearest(points: list[CalibrationPoint], distance: Distance) -> list[tuple[float, CalibrationPoint]]:
    """The calibration points nearest to a kernel, with inverse-square-distance weights."""
    return [(1.0 / (distance(p) + 0.05) ** 2, p) for p in sorted(points, key=distance)[:NEIGHBOURS]]


def log_mean(weighted: list[tuple[float, float]]) -> float:
    return math.exp(sum(w * math.log(v) for w, v in weighted) / sum(w for w, _ in weighted))


def nearest_rate(points: list[CalibrationPoint], distance: Distance, compute: bool, overhead: float) -> float:
    """Achieved rate (FLOP/s or bytes/s) of the calibration points nearest to a kernel,
    weighted in log space, with the fixed overhead taken out."""
    def seconds(p: CalibrationPoint) -> float:  # its own kernel: without the overhead and boundary copies it holds
        return max(p.seconds - overhead - p.boundary_s, p.seconds * 0.1)

    return log_mean([(w, (p.flops if compute else p.bytes) / seconds(p)) for w, p in nearest(points, distance)])


def by_batch(table: dict[str, float], batch: int, default: float, log_values: bool) -> float:
    """A calibrated per-batch figure at ``batch``, interpolated in log batch between the
    batch sizes calibrated (in log value too with ``log_values``)."""
    points = sorted((int(b), v) for b, v in table.items())
    if not points:
        return default
    if batch <= points[0][0]:
        return points[0][1]
    scale, unscale = (math.log, math.exp) if log_values else (float, float)
    for (b0, v0), (b1, v1) in zip(points, points[1:]):
        if batch <= b1:
            t = math.log(batch / b0) / math.log(b1 / b0)
            return unscale(scale(v0) + t * (scale(v1) - scale(v0)))
    return points[-1][1]


def context_factor(calibration: CalibrationProfile, batch: int) -> float:
    """The calibrated whole-network factor for ``batch`` (1.0 before any is measured)."""
    return by_batch(calibration.context_factor, batch, 1.0, log_values=True)


def context_kernel_seconds(calibration: CalibrationProfile, batch: int) -> float:
    """The calibrated cost per kernel inside a network for ``batch`` (0 before any is measured)."""
    return by_batch(calibration.context_kernel_s, batch, 0.0, log_values=False)


def kernel_overhead(calibration: CalibrationProfile, batch: int, launch: float | None = None) -> float:
    """Seconds a kernel costs inside a network beyond its work: its launch (by default the
    calibrated per-kernel overhead of a CPU), which kernels inside a network pay
    ``context_factor`` times over, plus the per-kernel cost fitted on the synthetic
    networks (both measured at calibration)."""
    launch = calibration.overhead_s.kernel if launch is None else launch
    return launch * context_factor(calibration, batch) + context_kernel_seconds(calibration, batch)


def calibrated_time(kernel: KernelCost, klass: str, calibration: CalibrationProfile, batch: int = 1,
                    geometry: dict | None = None) -> tuple[float, float, float]:
    """Compute, memory and overhead seconds of ``kernel`` from this machine's calibration:
    a conv is matched to the calibrated convs of the nearest ``geometry``, any other
    kernel to the points of its class nearest in size."""
    points = calibration.points.get(klass) or []
    if not points:
        raise UserError(f"the calibration profile has no {klass} points: run `deploylens hw calibrate` again")
    fixed = calibration.overhead_s.in_points
    compute = klass in COMPUTE_CLASSES
    distance = (geometry_distance(geometry, calibration.vector_lanes) if geometry
                else size_distance(kernel.flops, kernel.bytes, compute))
    factor = context_factor(calibration, batch)
    # on a GPU, launching an eager op costs the CPU what the nearest points' ops did; a CPU
    # point's time holds its own launch, and a kernel costs the calibrated per-kernel overhead
    launch = (log_mean([(w, p.launch_per_op_s) for w, p in nearest(points, distance)]) * len(kernel.layers)
              if calibration.device == "cuda" else None)
    overhead = kernel_overhead(calibration, batch, launch)
    alone = nearest_rate(points, distance, compute, fixed)
    ceiling = calibration.peak_flops
    # a kernel that runs near the ceiling alone runs so inside a network too: the factor fades
    near = min(alone / ceiling, 1.0) if compute and ceiling else 0.0
    rate = alone / factor ** (1.0 - near)
    if compute and ceiling:  # and never faster than the machine goes (calibration.fit.compute_ceiling)
        rate = min(rate, ceiling)
    if compute:
        copies = calibration.points["copy"]
        bandwidth = nearest_rate(copies, size_distance(0, kernel.bytes, False), False, fixed) / factor
        return kernel.flops / rate, kernel.bytes / bandwidth, overhead
    return 0.0, kernel.bytes / rate, overhead

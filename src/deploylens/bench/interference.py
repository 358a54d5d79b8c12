"""Interference from a shared host, seen by a fixed probe timed between samples.

On a shared VM a neighbour on the same physical cores slows everything down, for seconds
at a time and invisibly from inside (no steal time). The time of a fixed small conv read
between a model's iterations follows the model's slowdown, so a sample whose bracketing
probe readings are near the probe's quiet speed ran on a quiet machine. Noise on a
timing only adds time (Chen & Revels, "Robust benchmarking in noisy environments",
2016), so the probe's quiet speed is a low percentile of its readings.

Busy samples need not be thrown away: a sample's time x (quiet level / its probe
reading) ** exponent estimates its time on a quiet host (:func:`adjusted`). The probe, a
small cache-resident conv, slows down more than a whole model does, so the exponent is
below 1. The measurements behind the method and its constants are in
docs/measurement.md (interference probe).
"""

from __future__ import annotations

import math
import time
from typing import Callable

from deploylens.bench.stats import Timing, percentile

# a sample counts as quiet when the probe readings around it are within this of the quiet level
TOLERANCE = 0.10
# the probe runs between samples at most this often, so it costs ~1% of a measurement
INTERVAL_S = 0.05
# the quiet level: this percentile of all readings (the lowest few can be lucky outliers)
QUIET_PERCENTILE = 2.0
# a quiet median needs at least this many quiet samples
MIN_QUIET = 3
# how far a sample's time follows the probe's slowdown: measured per backend and batch
# between 0.35 and 0.55 (docs/measurement.md); per kernel class it varies more
# (benchmarks/interference_sensitivity.py)
EXPONENT = 0.45
# fitting the exponent needs this many measurements with MIN_QUIET quiet and busy samples each
MIN_FIT_GROUPS = 5
_EXPONENT_GRID = [step / 20 for step in range(21)]
_CALLS = 3  # a reading is the fastest of this many calls: the first after a model runs on cold caches


class InterferenceProbe:
    """A dense 3x3 conv (64 channels, 28x28, 58 MFLOP; its time on a measured machine is in
    docs/measurement.md) whose fastest of three calls is one reading; every reading is kept,
    so a whole run (several models, passes minutes apart) shares one quiet level.
    ``known_level``: the quietest level an earlier run of this machine saw, so that a run
    made entirely in a busy spell is still measured against the machine's quiet speed."""

    def __init__(self, workload: Callable[[], object] | None = None,
                 clock: Callable[[], float] = time.perf_counter, tolerance: float = TOLERANCE,
                 exponent: float = EXPONENT, known_level: float | None = None):
        if workload is None:
            import torch

            conv, x = torch.nn.Conv2d(64, 64, 3, padding=1).eval(), torch.randn(1, 64, 28, 28)

            def workload():
                with torch.inference_mode():
                    conv(x)
        self.workload, self.clock, self.tolerance, self.exponent = workload, clock, tolerance, exponent
        self.known_level = known_level
        self.readings: list[float] = []

    def __call__(self) -> float:
        """One reading, in seconds."""
        best = float("inf")
        for _ in range(_CALLS):
            start = self.clock()
            self.workload()
            best = min(best, self.clock() - start)
        self.readings.append(best)
        return best

    def level(self) -> float:
        """The probe's quiet time: a low percentile of every reading so far, or the known
        level when that is lower."""
        if not self.readings:
            raise ValueError("the probe has no readings yet")
        return min(percentile(sorted(self.readings), QUIET_PERCENTILE), self.known_level or math.inf)

    def is_quiet(self, reading: float, level: float | None = None) -> bool:
        return is_quiet(reading, self.level() if level is None else level, self.tolerance)


def is_quiet(reading: float, level: float, tolerance: float = TOLERANCE) -> bool:
    """Whether a probe reading is within ``tolerance`` of the quiet ``level``."""
    return reading <= level * (1 + tolerance)


def quiet_samples(samples: list[float], readings: list[float], probe: InterferenceProbe,
                  level: float | None = None) -> list[float]:
    """The samples whose probe reading (see :func:`deploylens.bench.runner.measure`) was
    quiet, against ``level`` (default: the probe's level now)."""
    level = probe.level() if level is None else level
    return [s for s, r in zip(samples, readings) if probe.is_quiet(r, level)]


def quiet_median(quiet: list[float]) -> float | None:
    """The median of quiet samples; None with fewer than :data:`MIN_QUIET`."""
    return percentile(sorted(quiet), 50) if len(quiet) >= MIN_QUIET else None


def pooled(timings: list[Timing]) -> tuple[list[float], list[float]]:
    """The samples and probe readings of every round of one measurement."""
    return [s for t in timings for s in t.samples], [r for t in timings for r in t.probe_readings]


def adjusted(samples: list[float], readings: list[float], level: float, exponent: float = EXPONENT) -> list[float]:
    """Each sample scaled to the probe's quiet ``level``: x (level / reading) ** exponent.
    A reading under the level (a lucky one) leaves its sample as it is."""
    return [s * min(1.0, level / r) ** exponent for s, r in zip(samples, readings)]


def adjusted_median(samples: list[float], readings: list[float], level: float,
                    exponent: float = EXPONENT) -> float | None:
    """The median of the :func:`adjusted` samples (None without any)."""
    scaled = adjusted(samples, readings, level, exponent)
    return percentile(sorted(scaled), 50) if scaled else None


def fit_exponent(groups: list[tuple[list[float], list[float]]], level: float,
                 tolerance: float = TOLERANCE) -> float | None:
    """The exponent (of 0, 0.05, ..., 1) that brings the busy samples of each measurement
    (a group: its samples and probe readings) closest to its quiet samples: the median
    over groups of log(adjusted busy median / quiet median) nearest 0. Only groups with
    :data:`MIN_QUIET` quiet and busy samples each count; None with fewer than
    :data:`MIN_FIT_GROUPS` of them."""
    usable = []
    for samples, readings in groups:
        quiet = [s for s, r in zip(samples, readings) if is_quiet(r, level, tolerance)]
        busy = [(s, r) for s, r in zip(samples, readings) if not is_quiet(r, level, tolerance)]
        if len(quiet) >= MIN_QUIET and len(busy) >= MIN_QUIET:
            usable.append((quiet_median(quiet), [s for s, _ in busy], [r for _, r in busy]))
    if len(usable) < MIN_FIT_GROUPS:
        return None

    def gap(exponent: float) -> float:
        logs = sorted(math.log(adjusted_median(busy, readings, level, exponent) / quiet)
                      for quiet, busy, readings in usable)
        return abs(percentile(logs, 50))
    return min(_EXPONENT_GRID, key=gap)

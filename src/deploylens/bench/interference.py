"""Interference from a shared host, seen by a fixed probe timed between samples.

On a shared VM a neighbour on the same physical cores slows everything down by up to
~1.7x for seconds at a time, invisible from inside (no steal time). Measured here: the
time of a fixed small conv read between a model's iterations follows the model's
slowdown (correlation 0.92 over 690 ResNet-18 iterations), so a sample whose bracketing
probe readings are near the probe's quiet speed ran on a quiet machine. Keeping those
samples makes a measurement repeat: over 10 zoo models timed in 3 passes of 1.5 s,
the pass medians agreed within 10% for 6 of 10 models, those of the quiet samples for 9
(median max/min spread 22% -> 5%).

Noise on a timing only adds time (Chen & Revels, "Robust benchmarking in noisy
environments", 2016), so the probe's quiet speed is a low percentile of its readings.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from deploylens.bench.stats import percentile

if TYPE_CHECKING:
    from deploylens.bench.runner import Timing

# a sample counts as quiet when the probe readings around it are within this of the quiet level
TOLERANCE = 0.10
# the probe runs between samples at most this often, so it costs ~1% of a measurement
INTERVAL_S = 0.05
# the quiet level: this percentile of all readings (the lowest few can be lucky outliers)
QUIET_PERCENTILE = 2.0
# a quiet median needs at least this many quiet samples
MIN_QUIET = 3
_CALLS = 3  # a reading is the fastest of this many calls: the first after a model runs on cold caches


class InterferenceProbe:
    """A dense 3x3 conv (64 channels, 28x28, 58 MFLOP, ~0.26 ms on 2 cores here) whose
    fastest of three calls is one reading; every reading is kept, so a whole run (several
    models, passes minutes apart) shares one quiet level."""

    def __init__(self, workload: Callable[[], object] | None = None,
                 clock: Callable[[], float] = time.perf_counter, tolerance: float = TOLERANCE):
        if workload is None:
            import torch

            conv, x = torch.nn.Conv2d(64, 64, 3, padding=1).eval(), torch.randn(1, 64, 28, 28)

            def workload():
                with torch.inference_mode():
                    conv(x)
        self.workload, self.clock, self.tolerance = workload, clock, tolerance
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
        """The probe's quiet time: a low percentile of every reading so far."""
        if not self.readings:
            raise ValueError("the probe has no readings yet")
        return percentile(sorted(self.readings), QUIET_PERCENTILE)

    def is_quiet(self, reading: float, level: float | None = None) -> bool:
        return reading <= (self.level() if level is None else level) * (1 + self.tolerance)


def quiet_samples(samples: list[float], readings: list[float], probe: InterferenceProbe,
                  level: float | None = None) -> list[float]:
    """The samples whose probe reading (see :func:`deploylens.bench.runner.measure`) was
    quiet, against ``level`` (default: the probe's level now)."""
    level = probe.level() if level is None else level
    return [s for s, r in zip(samples, readings) if probe.is_quiet(r, level)]


def quiet_median(quiet: list[float]) -> float | None:
    """The median of quiet samples; None with fewer than :data:`MIN_QUIET`."""
    return percentile(sorted(quiet), 50) if len(quiet) >= MIN_QUIET else None


def pooled_quiet_samples(timings: list[Timing], probe: InterferenceProbe) -> tuple[list[float], int]:
    """The quiet samples of every round of one measurement, and how many samples there were."""
    samples = [s for t in timings for s in t.samples]
    return quiet_samples(samples, [r for t in timings for r in t.probe_readings], probe), len(samples)

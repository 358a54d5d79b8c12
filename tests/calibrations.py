"""A fake calibration profile of round numbers, and fake measurements, shared by the
prediction and calibration tests."""

from __future__ import annotations

import copy
from dataclasses import replace

from deploylens.hardware.calibration_profile import CalibrationPoint, CalibrationProfile, Machine, Overheads
from deploylens.hardware.kernel_classes import CLASSES, COMPUTE_CLASSES, conv_geometry

# two of the synthetic networks (a residual one and one without): the whole-network fit
# needs several; the tests' calibrations time these instead of all eleven
TWO_STYLES = ("residual", "separable")
# every compute class: 100 MFLOP (and 1 MB) in 1 ms, 100 GFLOP/s; every memory-bound
# class: 1 MB in 0.1 ms, 10 GB/s
COMPUTE_POINT = CalibrationPoint("p", 10**8, 10**6, 1e-3, [1, 16, 32, 32], conv_geometry(16, 16, 1, 1, 1, 1024))
MEMORY_POINT = CalibrationPoint("m", 0, 10**6, 1e-4, [1, 16, 32, 32])


def fake_profile(**changes) -> CalibrationProfile:
    """A CPU torch profile with one point per class (its own copy), no overheads and a
    whole-network factor of 1 at batch 1; ``changes``: fields to replace."""
    points = {klass: [copy.deepcopy(COMPUTE_POINT if klass in COMPUTE_CLASSES else MEMORY_POINT)]
              for klass in CLASSES}
    profile = CalibrationProfile(device="cpu", backend="torch", threads=1, dtype="fp32", vector_lanes=16,
                                 machine=Machine("x"), points=points, overhead_s=Overheads(),
                                 context_factor={"1": 1.0})
    return replace(profile, **changes)


def steady(seconds: float):
    """A measurement of five samples of ``seconds`` each, without probe readings."""
    from deploylens.bench.stats import Timing, summarize

    return Timing([seconds] * 5, 1, 5, 2, "stable", summarize([seconds] * 5), [])

"""Real calibrations of both backends, cut to seconds by the time budget, their
profiles stored and read back, and predictions made from them; and one beside a
competing load, which must keep its budget and physics."""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import replace

import pytest
from calibrations import TWO_STYLES

from deploylens.calibration import run
from deploylens.calibration.budget import SETTINGS, slack
from deploylens.hardware.kernel_classes import COMPUTE_CLASSES
from deploylens.calibration.cases import runtime_cases
from deploylens.calibration.networks import BATCHES, label
from deploylens.hardware import calibration_profile as stored
from deploylens.predict import predict



def points_of(profile: stored.CalibrationProfile) -> list[stored.CalibrationPoint]:
    return [p for points in profile.points.values() for p in points]


def test_calibration_runs_and_predicts(tmp_path):
    profile = run.calibrate("torch", threads=1, max_flops=1e6, rounds=1, budget_s=8, styles=TWO_STYLES)
    assert (profile.device, profile.backend, profile.threads, profile.budget_s) == ("cpu", "torch", 1, 8)
    assert all(profile.points[c] for c in ("conv_dense", "conv_depthwise", "elementwise", "copy", "matmul"))
    assert all(p.seconds > 0 for p in points_of(profile))
    assert profile.overhead_s.kernel > 0 and profile.overhead_s.view > 0 and profile.peak_flops > 0
    # the networks of the styles asked for, at both batch sizes, and the overheads: nothing
    # else (a network a busy host left no time for is listed as skipped)
    assert set(profile.fixed_s) == ({label(s, b) for s in TWO_STYLES for b in BATCHES} - set(profile.skipped)) | {
        "overhead call", "overhead chain", "overhead view"}
    assert set(profile.context_factor) == {"1", "8"} and all(f > 0 for f in profile.context_factor.values())
    assert stored.load(stored.save(profile, tmp_path / "p.json")) == profile
    prediction = predict("mobilenet_v2_050", "this", input_shape=(1, 3, 64, 64), calibration=profile)
    assert prediction.totals["latency_ms"] > 0 and prediction.totals["complete"]


def test_onnxruntime_calibration_runs_with_its_reorders():
    profile = run.calibrate("onnxruntime", threads=1, max_flops=1e6, rounds=1, budget_s=8, styles=TWO_STYLES)
    assert profile.backend == "onnxruntime" and profile.overhead_s.view == 0.0 and profile.overhead_s.call > 0
    convs = [p for c in ("conv_dense", "conv_pointwise", "conv_depthwise") for p in profile.points[c]]
    assert convs and all(p.seconds > 0 for p in convs)
    assert profile.points["slice"] and profile.points["transcendental"]  # ONNX Runtime's own cases
    if profile.points["reorder"]:  # a CPU with ONNX Runtime's blocked layout
        reorder_cases = [c for c in runtime_cases(replace(SETTINGS["cpu"], max_flops=1e6))
                         if c.kernel_class == "reorder"]
        # each timed, or skipped when the budget ran out (a busy host)
        untimed = [name for name in profile.skipped if name.startswith("reorder")]
        assert profile.points["reorder"] and len(profile.points["reorder"]) + len(untimed) == len(reorder_cases)
        blocked = [p for p in convs if p.reorder_bytes]
        assert blocked and all(0 < p.boundary_s for p in blocked)
    assert set(profile.context_factor) == {"1", "8"} and all(f > 0 for f in profile.context_factor.values())
    prediction = predict("mobilenet_v2_050", "this", "onnxruntime", input_shape=(1, 3, 64, 64), calibration=profile)
    assert prediction.totals["latency_ms"] > 0 and prediction.totals["complete"]


def _spin() -> None:
    while True:
        pass


@pytest.fixture
def competing_load():
    """Three busy-loop processes competing for this machine's cores while the test runs."""
    processes = [multiprocessing.get_context("fork").Process(target=_spin, daemon=True) for _ in range(3)]
    try:
        for process in processes:
            process.start()
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=5)


def test_a_calibration_beside_a_competing_load_keeps_its_budget_and_physics(competing_load):
    budget_s = 8.0
    began = time.perf_counter()
    profile = run.calibrate("torch", threads=2, budget_s=budget_s, styles=TWO_STYLES)
    wall = time.perf_counter() - began
    assert wall <= budget_s + slack(budget_s), f"{wall:.1f} s against a {budget_s:g} s budget"
    # a partial calibration says so; every kernel class still has a rate
    assert profile.skipped and profile.notes[-1].startswith("partial calibration")
    assert all(profile.points[klass] for klass in ("conv_dense", "conv_depthwise", "matmul", "elementwise", "copy"))
    # no rate above what the cores can physically do: the ISA peak at the boost clock, the
    # bandwidth of L1 (or of L2 into L1 beyond its size)
    bounds = profile.bounds
    for klass, points in profile.points.items():
        for p in points:
            if klass in COMPUTE_CLASSES:
                assert p.flops / p.seconds <= bounds.flops * (1 + 1e-9), p.label
            else:
                assert p.bytes / p.seconds <= bounds.bandwidth(p.bytes) * (1 + 1e-9), p.label
    assert profile.peak_flops <= bounds.flops and profile.isa_peak_flops <= bounds.flops
    # a capped timing is kept and named in the notes
    capped = {klass for klass, points in profile.points.items() if any(p.measured_s for p in points)}
    assert capped == {note.split(":")[0] for note in profile.notes if "physical bound" in note}

"""Real calibrations of both backends, cut to seconds by the time budget, their
profiles stored and read back, and predictions made from them."""

from __future__ import annotations

from dataclasses import replace

from calibrations import TWO_STYLES

from deploylens.calibration import run
from deploylens.calibration.budget import SETTINGS
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
    # the networks of the styles asked for, at both batch sizes, and the overheads: nothing else
    assert set(profile.fixed_s) == {label(s, b) for s in TWO_STYLES for b in BATCHES} | {
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
        assert len(profile.points["reorder"]) == len(reorder_cases)
        blocked = [p for p in convs if p.reorder_bytes]
        assert blocked and all(0 < p.boundary_s for p in blocked)
    assert set(profile.context_factor) == {"1", "8"} and all(f > 0 for f in profile.context_factor.values())
    prediction = predict("mobilenet_v2_050", "this", "onnxruntime", input_shape=(1, 3, 64, 64), calibration=profile)
    assert prediction.totals["latency_ms"] > 0 and prediction.totals["complete"]

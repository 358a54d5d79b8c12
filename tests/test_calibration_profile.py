"""The calibration profile as stored: typed, versioned JSON (never a pickle), migrated
from the version before it, found by machine, backend, threads and dtype."""

from __future__ import annotations

import json

import pytest
import torch
from calibrations import fake_profile

from deploylens import UserError
from deploylens.hardware import calibration_profile as stored
from deploylens.hardware.calibration_profile import (
    FORMAT,
    VERSION,
    Bounds,
    CalibrationProfile,
    Machine,
    Overheads,
    Probe,
)


def full_profile() -> CalibrationProfile:
    """The fake profile with every optional field filled, as a combined calibration has them."""
    profile = fake_profile(machine=Machine("Some CPU", ["avx2", "fma"], 2100.0, "host-1", None),
                           fixed_s={"overhead call": 16e-6, "residual batch 1": 4e-3}, created="2026-01-02T03:04:05",
                           torch="2.5.0", rounds=6, budget_s=105.0, allocator={"library": "glibc"},
                           isa_peak_flops=6.7e10, probe=Probe(2.5e-4, 0.1, 0.8, 0.45),
                           fixed_each={"overhead call": [16e-6, 17e-6]}, seconds_taken=98.2, peak_flops=1e11,
                           overhead_s=Overheads(1e-6, 15e-6, 2e-6, 16e-6), context_factor={"1": 1.2, "8": 0.9},
                           context_kernel_s={"1": 3e-6, "8": 0.0},
                           bounds=Bounds(2.7e11, 8.1e11, 2.7e11, 98304, "2 cores x 4.2 GHz x 32"),
                           skipped=["conv3x3 16->16 g1 s1 @7 b1", "ghost batch 8"],
                           notes=["partial calibration: ..."])
    dense = profile.points["conv_dense"][0]
    dense.seconds_each, dense.reorder_bytes, dense.boundary_s = [1e-3, 1.1e-3], 4096, 2e-6
    profile.points["elementwise"][0].measured_s = 5e-5
    return profile


def as_version_12(profile: CalibrationProfile) -> dict:
    """``profile`` as version 12 wrote it: no bounds, skipped parts, notes or capped timings."""
    data = json.loads(json.dumps(profile.to_json()))
    for key in ("bounds", "skipped", "notes"):
        del data[key]
    for points in data["points"].values():
        for point in points:
            del point["measured_s"]
    return {**data, "version": 12}


def test_a_profile_round_trips_through_json():
    profile = full_profile()
    data = json.loads(json.dumps(profile.to_json()))
    assert (data["format"], data["version"]) == (FORMAT, VERSION) == ("deploylens-calibration", 13)
    assert CalibrationProfile.from_json(data) == profile
    assert CalibrationProfile.from_json(json.loads(json.dumps(fake_profile().to_json()))) == fake_profile()


def test_a_version_11_profile_migrates_with_the_budget_it_ran_under():
    unbounded = full_profile()
    unbounded.bounds, unbounded.skipped, unbounded.notes = None, [], []
    unbounded.points["elementwise"][0].measured_s = None
    data = as_version_12(unbounded)
    del data["budget_s"]  # version 11 had no record of its fixed budget
    data["version"] = 11
    cpu = CalibrationProfile.from_json(json.loads(json.dumps(data)))
    assert cpu.budget_s == 105.0 and cpu == unbounded
    gpu = CalibrationProfile.from_json({**data, "device": "cuda"})
    assert gpu.budget_s is None and gpu.device == "cuda"


def test_a_version_12_profile_migrates_without_bounds_or_skipped_parts():
    # version 12 capped nothing at a physical bound and timed every case's first round
    migrated = CalibrationProfile.from_json(as_version_12(full_profile()))
    assert migrated.bounds is None and migrated.skipped == [] and migrated.notes == []
    assert migrated.points["elementwise"][0].measured_s is None
    assert migrated.points == as_points(full_profile(), measured_s=None) and migrated.probe == full_profile().probe


def as_points(profile: CalibrationProfile, **changes) -> dict:
    from dataclasses import replace

    return {klass: [replace(p, **changes) for p in points] for klass, points in profile.points.items()}


def test_profiles_are_versioned_json(tmp_path):
    path = stored.save(fake_profile(), tmp_path / "p.json")
    assert stored.load(path).points["matmul"][0].flops == 10**8
    for version in (0, 10):
        path.write_text(json.dumps({**fake_profile().to_json(), "version": version}))
        with pytest.raises(UserError, match=f"calibration format version {version}; this deploylens reads version 13"):
            stored.load(path)
    path.write_text(json.dumps({**fake_profile().to_json(), "colour": "blue"}))
    with pytest.raises(UserError, match="damaged calibration profile: unknown keys colour"):
        stored.load(path)
    path.write_text(json.dumps({**fake_profile().to_json(), "format": "something-else"}))
    with pytest.raises(UserError, match="not a deploylens calibration profile"):
        stored.load(path)
    path.write_bytes(b"\x80\x04\x95")  # a pickle is never read
    with pytest.raises(UserError, match="cannot read calibration profile"):
        stored.load(path)


def test_known_probe_level_is_the_quietest_of_the_saved_cpu_profiles(tmp_path):
    def saved(name: str, content) -> None:
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))

    cpu = stored.profile_path("torch", 2, folder=tmp_path).name.split("-torch-")[0]
    profile = {"format": FORMAT, "version": 6, "probe": {"level_s": 3e-4}}
    saved(f"{cpu}-torch-2t-fp32.json", profile)
    saved(f"{cpu}-onnxruntime-2t-fp32.json", {**profile, "probe": {"level_s": 2.8e-4}})
    saved(f"{cpu}-onnxruntime-4t-fp32.json", {**profile, "probe": {"level_s": 1e-4}})  # other threads
    saved(f"{cpu}-torch-2t-fp16.json", "not json")
    saved(f"{cpu}-x-2t-fp32.json", {"format": "other", "probe": {"level_s": 1e-5}})
    saved(f"{cpu}-y-2t-fp32.json", {**profile, "probe": None})
    assert stored.known_probe_level(2, tmp_path) == 2.8e-4
    assert stored.known_probe_level(4, tmp_path) == 1e-4
    assert stored.known_probe_level(8, tmp_path) is None


def test_calibration_identity_and_profile_path(monkeypatch, tmp_path):
    from deploylens.hardware.local import cpu_info

    here = stored.identity("cpu", "torch", 2, "fp32")
    assert here["cpu"] == cpu_info()["model"] and here["gpu"] is None and here["device"] == "cpu"
    assert fake_profile(machine=Machine(here["cpu"]), threads=2, vector_lanes=here["vector_lanes"]).identity() == here
    for args, message in ((("cpu", "torch", 2, "fp16"), "on the CPU the calibration runs fp32"),
                          (("tpu", "torch", 2, "fp32"), "unknown device 'tpu'"),
                          (("cpu", "tensorrt", 2, "fp32"), "calibration backends"),
                          (("cpu", "torch", 2, "int8"), "calibration dtypes")):
        with pytest.raises(UserError, match=message):
            stored.identity(*args)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA GPU is visible"):
        stored.identity("cuda", "torch", 2, "fp16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA H100 80GB HBM3")
    with pytest.raises(UserError, match="on a CUDA GPU the calibration runs the torch backend"):
        stored.identity("cuda", "onnxruntime", 2, "fp32")
    gpu = stored.identity("cuda", "torch", 2, "fp16")
    assert gpu["gpu"] == "NVIDIA H100 80GB HBM3" and gpu["vector_lanes"] == 8
    assert stored.profile_path("torch", 2, "cuda", "fp16", tmp_path).name == "nvidia-h100-80gb-hbm3-torch-2t-fp16.json"




def test_a_profile_written_by_version_11_reads_and_predicts():
    # written by `calibrate("torch", threads=1, max_flops=1e6, rounds=1)` of the format-11
    # code (commit b7b2cd3), two points a class kept
    from pathlib import Path

    import torch.nn as nn

    from deploylens.predict import predict

    profile = stored.load(Path(__file__).parent / "data" / "calibration-v11.json")
    assert (profile.backend, profile.threads, profile.rounds, profile.budget_s) == ("torch", 1, 1, 105.0)
    assert profile.machine.node == "fixture-host" and set(profile.context_factor) == {"1", "8"}
    assert all(len(points) <= 2 for points in profile.points.values()) and profile.points["conv_dense"]
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    latency = predict(model.eval(), "this", input_shape=(1, 3, 32, 32), calibration=profile).totals["latency_ms"]
    assert 0 < latency < 10

"""Hardware catalog schema, roofline arithmetic, calibration profiles, prediction."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from deploylens import UserError, analyze
from deploylens.analysis.profile import KernelCost
from deploylens.calibration import run as calibration
from deploylens.hardware.local import per_cycle
from deploylens.hardware.spec import CatalogError, Figure, HardwareSpec, load_catalog, parse_family
from deploylens.predict.api import kernel_class, predict, predict_profile, roofline_time

TOY = HardwareSpec("toy", "gpu", "test", {"fp32": Figure(1e12, ("by construction",))},
                   bandwidth=Figure(100e9, ("by construction",)))


def kernel(flops: int, nbytes: int) -> KernelCost:
    return KernelCost("k", "conv", ["k"], flops, flops // 2, nbytes // 2, nbytes - nbytes // 2, None, True)


def test_roofline_by_hand():
    # 1 GFLOP and 10 MB on 1 TFLOP/s and 100 GB/s: 1 ms of compute, 0.1 ms of memory
    compute, memory, overhead = roofline_time(kernel(10**9, 10**7), "conv_dense", TOY, "fp32")
    assert (compute, memory, overhead) == pytest.approx((1e-3, 1e-4, 0.0))
    assert TOY.ridge_point("fp32") == pytest.approx(10.0)
    # below the ridge point: 1 MFLOP over 10 MB is memory-bound
    compute, memory, _ = roofline_time(kernel(10**6, 10**7), "conv_dense", TOY, "fp32")
    assert memory > compute and memory == pytest.approx(1e-4)


def test_prediction_sums_kernels_and_labels_bounds():
    model = nn.Sequential(nn.Linear(1000, 1000), nn.ReLU()).eval()
    prediction = predict(model, TOY, batch=1000, input_shape=(1, 1000))
    # one fused kernel: 2 GFLOP; reads 4 MB input + 4 MB weights + 4 kB bias, writes 4 MB
    (k,) = prediction.kernels
    assert k.flops == 2 * 10**9 + 10**6
    assert k.bytes == 4 * (10**6 + 10**6 + 1000 + 10**6)
    assert k.time_ms == pytest.approx(k.flops / 1e12 * 1e3)
    assert k.bound == "compute"
    assert prediction.totals["latency_ms"] == pytest.approx(k.time_ms)
    assert prediction.share_by_kind == {"linear": pytest.approx(1.0)}


def test_efficiency_and_overhead_from_the_catalog_entry():
    spec = HardwareSpec("slow", "gpu", "test", {"fp32": Figure(1e12, ("x",))}, bandwidth=Figure(100e9, ("x",)),
                        efficiency={"conv_dense": Figure(0.5, ("x",))}, overhead=Figure(1e-5, ("x",)))
    compute, memory, overhead = roofline_time(kernel(10**9, 10**7), "conv_dense", spec, "fp32")
    assert (compute, memory, overhead) == pytest.approx((2e-3, 2e-4, 1e-5))


def test_unknown_ops_make_the_prediction_incomplete():
    class Cumulative(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, 1)

    prediction = predict(Cumulative(), TOY, input_shape=(4, 256))
    assert prediction.totals["complete"] is False
    assert any("incomplete" in note and "aten.cumsum" in note for note in prediction.notes)


def test_every_catalog_figure_has_a_source():
    catalog = load_catalog()
    assert {"nvidia_t4", "nvidia_h100_sxm5", "nvidia_rtx_a4000", "horizon_sunrise_x3", "rockchip_rk3588_npu",
            "raspberry_pi_4", "amd_epyc_9654", "jetson_orin_nx_16gb"} <= set(catalog)
    for spec in catalog.values():
        figures = list(spec.peak.values()) + [f for f in (spec.bandwidth, spec.memory) if f]
        assert figures and all(f.sources and all(f.sources) for f in figures), spec.name
    assert catalog["nvidia_rtx_a4000"].bandwidth.value == 448e9
    assert catalog["nvidia_t4"].ridge_point("fp32") == pytest.approx(8.1e12 / 320e9)


@pytest.mark.parametrize("device,message", [
    ({"name": "x", "class": "gpu", "peak_tflops": {"fp32": {"value": 1.0}}}, "has no source"),
    ({"name": "x", "class": "gpu", "peak_tflops": {"fp32": {"value": 1.0, "source": ["S9"]}}}, "unknown source"),
    ({"name": "x", "class": "gpu", "peak_tflops": {"fp32": {"value": 1.0, "source": ["S1"], "status": "U"}}},
     "unverified figures stay out"),
    ({"name": "x", "class": "phone", "peak_tflops": {"fp32": {"value": 1.0, "source": ["S1"]}}}, "class must be"),
    ({"name": "x", "class": "gpu", "peak_tflops": {"fp32": {"value": 1.0, "source": ["S1"]}},
      "bandwidth_gbs": {"value": 10}}, "has no source"),
])
def test_schema_rejects_devices_without_sources(device, message):
    with pytest.raises(CatalogError, match=message):
        parse_family({"sources": {"S1": "a datasheet"}, "devices": [device]}, "test.yaml")


def test_per_cycle_rates_follow_the_reference_table():
    assert per_cycle(["avx2", "fma"], "Intel Xeon")["fp32"] == 32
    assert per_cycle(["avx2", "fma", "avx512f"], "Intel Xeon")["fp32"] == 64
    assert per_cycle(["avx2", "fma", "avx512f"], "AMD EPYC 9654")["fp32"] == 32  # Zen 4 double-pumps
    assert per_cycle(["avx512f", "amx_tile", "amx_bf16", "amx_int8"], "Intel")["int8"] == 2048


def test_the_visible_gpu_is_matched_to_the_catalog(monkeypatch):
    from types import SimpleNamespace

    from deploylens.hardware.local import this_gpu

    catalog = load_catalog()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(name="Tesla T4"))
    assert this_gpu(catalog).name == "nvidia_t4"
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(name="NVIDIA H100 PCIe"))
    assert this_gpu(catalog).name == "nvidia_h100_pcie"
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(name="Some Other GPU"))
    assert this_gpu(catalog) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert this_gpu(catalog) is None


def test_kernel_classes_from_weight_shapes():
    profile = analyze(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                                    nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, padding=1, groups=2)).eval(), (1, 8, 8, 8))
    layers = [layer for layer in profile.layers if layer.kind == "conv"]
    assert [kernel_class(layer) for layer in layers] == ["conv_dense", "conv_depthwise", "conv_pointwise",
                                                        "conv_grouped"]


def fake_profile() -> dict:
    point = {"label": "p", "flops": 10**8, "bytes": 10**6, "seconds": 1e-3,
             "geometry": calibration.conv_geometry(16, 16, 1, 1, 1, 1024), "input_shape": [1, 16, 32, 32]}
    memory = {"label": "m", "flops": 0, "bytes": 10**6, "seconds": 1e-4, "input_shape": [1, 16, 32, 32]}
    return {"format": calibration.FORMAT, "version": calibration.VERSION, "device": "cpu", "backend": "torch",
            "threads": 1, "dtype": "fp32", "vector_lanes": 16,
            "overhead_s": {"kernel": 0.0, "view": 0.0, "in_points": 0.0}, "context_factor": {"1": 1.0},
            "points": {c: [point if c in calibration.COMPUTE_CLASSES else memory] for c in calibration.CLASSES}}


def test_calibrated_prediction_uses_the_measured_rates():
    # one pointwise conv unit: the single calibration point's 100 GFLOP/s applies
    model = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()).eval()
    profile = analyze(model, (1, 16, 32, 32))
    prediction = predict_profile(profile, "this", None, fake_profile(), "torch", 1)
    (k,) = prediction.kernels
    assert k.kernel_class == "conv_pointwise"
    assert k.compute_ms == pytest.approx(k.flops / 1e11 * 1e3)
    assert k.memory_ms == pytest.approx(k.bytes / 1e10 * 1e3)  # the copy class: 10 GB/s


def test_a_profile_calibrated_on_another_host_says_so():
    import platform

    profile = analyze(nn.Sequential(nn.Conv2d(16, 16, 1), nn.ReLU()).eval(), (1, 16, 32, 32))

    def notes(node: str | None) -> list[str]:
        return predict_profile(profile, "this", None, {**fake_profile(), "machine": {"node": node}}, "torch", 1).notes

    (elsewhere,) = [note for note in notes("gpu-host-7") if "calibrated on host" in note]
    assert f"calibrated on host gpu-host-7, predicted on {platform.node()}" in elsewhere
    assert not [note for note in notes(platform.node()) + notes(None) if "calibrated on host" in note]


def test_a_profile_calibrated_in_a_busy_spell_says_so():
    profile = analyze(nn.Sequential(nn.Conv2d(16, 16, 1), nn.ReLU()).eval(), (1, 16, 32, 32))

    def busy_notes(quiet_share: float | None) -> list[str]:
        probe = {"quiet_share": quiet_share} if quiet_share is not None else None
        return [note for note in predict_profile(profile, "this", None, {**fake_profile(), "probe": probe}, "torch",
                                                 1).notes if "host was busy" in note]

    (busy,) = busy_notes(0.03)
    assert "only 3.0% of its cases timed quiet" in busy and "--combine" in busy
    assert not busy_notes(calibration.BUSY_QUIET_SHARE) + busy_notes(0.5) + busy_notes(None)  # quiet, or no probe


def test_conv_geometry_and_channel_alignment_by_hand():
    from deploylens.hardware.local import vector_lanes
    from deploylens.predict.api import conv_geometry_of

    model = nn.Conv2d(32, 64, 3, stride=2, padding=1, groups=2).eval()
    (layer,) = analyze(model, (4, 32, 56, 56)).layers
    assert conv_geometry_of(layer) == {"c_in": 32, "c_out": 64, "groups": 2, "kernel": 3, "stride": 2,
                                       "pixels": 4 * 28 * 28}
    assert conv_geometry_of(analyze(nn.ReLU(), (1, 8)).layers[0]) is None
    alignment = calibration.channel_alignment
    # whole 16-float vectors: 2; multiples of 4 (padded to whole blocks): 1; else 0
    assert [alignment(112, 112, 1, 16), alignment(116, 116, 1, 16), alignment(112, 120, 1, 16)] == [2, 1, 1]
    assert [alignment(58, 58, 1, 16), alignment(112, 58, 1, 16), alignment(3, 24, 1, 16)] == [0, 0, 0]
    # depthwise: the channel count alone; grouped: both per-group counts (80 and 20)
    assert [alignment(144, 144, 144, 16), alignment(116, 116, 116, 16), alignment(58, 58, 58, 16)] == [2, 1, 0]
    assert [alignment(240, 240, 3, 16), alignment(60, 60, 3, 16)] == [2, 1]
    assert alignment(116, 116, 1, 4) == 2 and alignment(3, 17, 1, 1) == 2
    assert [vector_lanes(isa) for isa in (["avx2", "avx512f"], ["avx", "avx2"], ["asimd"], [])] == [16, 8, 4, 1]
    made = calibration.cases(lanes=16)
    levels = {alignment(g["c_in"], g["c_out"], g["groups"], 16) for g in (c.geometry for c in made) if g}
    assert levels == {0, 1, 2}
    assert len(calibration.cases(lanes=1)) < len(made)  # no misaligned grid without SIMD


def test_a_conv_takes_the_rate_of_the_nearest_geometry():
    # two calibrated pointwise convs of equal FLOPs: 112 channels at 100 GFLOP/s, 116 at 50
    def point(c, seconds):
        return {"label": str(c), "flops": 10**8, "bytes": 10**6, "seconds": seconds,
                "geometry": calibration.conv_geometry(c, c, 1, 1, 1, 28 * 28)}

    profile = fake_profile()
    profile["points"]["conv_pointwise"] = [point(112, 1e-3), point(116, 2e-3)]
    for c, rate in ((112, 1e11), (116, 5e10), (120, 5e10)):  # 120: misaligned like 116, not like 112
        model = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()).eval()
        (k,) = predict_profile(analyze(model, (1, c, 28, 28)), "this", None, profile, "torch", 1).kernels
        assert k.compute_ms == pytest.approx(k.flops / rate * 1e3, rel=0.01)


def test_built_conv_case_graph_is_what_the_exporter_makes(tmp_path):
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    from deploylens.bench.backends import export_onnx_for_bench

    geometry = calibration.conv_geometry(8, 16, 2, 3, 2, 5 * 5)
    built = onnx.load_from_string(calibration._conv_relu_onnx(geometry, (2, 8, 10, 10)))  # batch 2
    model = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1, groups=2, bias=False), nn.BatchNorm2d(16), nn.ReLU()).eval()
    export_onnx_for_bench(model, [torch.randn(1, 8, 10, 10)], str(tmp_path / "case.onnx"))
    exported = onnx.load(str(tmp_path / "case.onnx"))
    assert [n.op_type for n in built.graph.node] == [n.op_type for n in exported.graph.node] == ["Conv", "Relu"]

    def attributes(node) -> dict:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute if a.name != "dilations"}

    assert attributes(built.graph.node[0]) == attributes(exported.graph.node[0]) == {
        "group": 2, "kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}
    (out,) = ort.InferenceSession(built.SerializeToString()).run(None, {"input0": np.ones((2, 8, 10, 10), np.float32)})
    assert out.shape == (2, 16, 5, 5) and out.min() >= 0


def test_combine_takes_the_median_of_every_timing_and_derives_again():
    fixed = {"overhead call": 16e-6, "overhead chain": 31e-6, "overhead view": 2e-6,
             **{f"{style} batch {b}": 0.01 for style in calibration._ContextNet.STYLES for b in (1, 8)}}
    first = {**fake_profile(), "machine": {"cpu": "x"}, "rounds": 3, "fixed_s": fixed}
    second, third = json.loads(json.dumps(first)), json.loads(json.dumps(first))
    second["points"]["conv_dense"][0]["seconds"] = 0.5e-3  # first 1 ms
    third["points"]["conv_dense"][0]["seconds"] = 4e-3
    second["fixed_s"]["overhead call"], third["fixed_s"]["overhead call"] = 11e-6, 12e-6
    two = calibration.combine(first, second)
    assert two["points"]["conv_dense"][0]["seconds"] == pytest.approx(0.75e-3)  # the median of two: their mean
    merged = calibration.combine(two, third)
    dense = merged["points"]["conv_dense"][0]
    assert dense["seconds_each"] == [1e-3, 0.5e-3, 4e-3] and dense["seconds"] == 1e-3
    assert merged["points"]["pool"][0]["seconds"] == first["points"]["pool"][0]["seconds"]
    assert merged["rounds"] == 9 and merged["fixed_each"]["overhead call"] == [16e-6, 11e-6, 12e-6]
    # derived again from the median overheads: a chain of 16 at 31 us beside one op at 12 us
    assert merged["fixed_s"]["overhead call"] == 12e-6
    assert merged["overhead_s"]["kernel"] == pytest.approx(19e-6 / 15)
    assert set(merged["context_factor"]) == {"1", "8"} and "seconds_each" not in third["points"]["conv_dense"][0]
    with pytest.raises(UserError, match="differ in threads"):
        calibration.combine(first, {**second, "threads": 2})
    with pytest.raises(UserError, match="differ in device, dtype"):
        calibration.combine(first, {**second, "device": "cuda", "dtype": "fp16"})


def test_onnxruntime_runs_slicing_as_copies():
    import torch

    class Split(nn.Module):
        def forward(self, x):
            a, b = x.chunk(2, dim=1)
            return torch.cat([a[:, :3], b[:, :]], 1)  # b[:, :] spans the whole dimension: aten.alias

    profile = analyze(Split(), (1, 8, 4, 4))
    copies = [k.bytes for k in predict_profile(profile, "this", None, fake_profile(), "onnxruntime", 1).kernels
              if k.kind == "data_movement"]
    # split: two 4x4x4 outputs, read and written; slice: 3x4x4; alias: 4x4x4; cat: 7x4x4 in and out
    assert sorted(copies) == sorted([2 * 128 * 4, 2 * 48 * 4, 2 * 64 * 4, 2 * 112 * 4])
    torch_kernels = predict_profile(profile, "this", None, fake_profile(), "torch", 1).kernels
    assert [k.kind for k in torch_kernels] == ["data_movement"]  # only the cat: slicing is a view in PyTorch


def test_onnxruntime_fuses_what_it_fuses_and_runs_the_rest_as_kernels():
    class Block(nn.Module):  # conv-BN-ReLU + residual add: one blocked conv; conv-BN-SiLU: a conv and a QuickGelu
        def __init__(self):
            super().__init__()
            self.first = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
            self.second = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.SiLU())

        def forward(self, x):
            return self.second(x + self.first(x)).mean((2, 3))

    profile = analyze(Block().eval(), (1, 16, 8, 8))
    ort = predict_profile(profile, "this", None, fake_profile(), "onnxruntime", 1).kernels
    assert [(k.kind, k.kernel_class) for k in ort] == [
        ("conv", "conv_pointwise"), ("conv", "conv_pointwise"), ("activation", "transcendental"), ("reduce", "pool")]
    silu = ort[2]  # reads and writes its 16x8x8 float32 tensor
    assert silu.bytes == 2 * 16 * 64 * 4 and silu.memory_ms == pytest.approx(silu.bytes / 1e10 * 1e3)
    # torch eager: both conv units take their activation; the residual add is a kernel of its own
    eager = predict_profile(profile, "this", None, fake_profile(), "torch", 1).kernels
    assert [k.kernel_class for k in eager] == ["conv_pointwise", "elementwise", "conv_pointwise", "pool"]
    # without transcendental points (a torch calibration) the SiLU takes the element-wise ones
    plain = {**fake_profile(), "points": {**fake_profile()["points"], "transcendental": []}}
    assert predict_profile(profile, "this", None, plain, "onnxruntime", 1).kernels[2].kernel_class == "elementwise"


def test_onnxruntime_slicing_copies_take_the_slice_points_where_calibrated():
    class Halves(nn.Module):
        def forward(self, x):
            a, b = x.chunk(2, dim=1)
            return torch.cat([b, a], 1)

    profile = analyze(Halves(), (1, 8, 4, 4))
    slow = fake_profile()
    slow["points"]["slice"] = [{"label": "s", "flops": 0, "bytes": 10**6, "seconds": 1e-3}]  # 1 GB/s
    kernels = predict_profile(profile, "this", None, slow, "onnxruntime", 1).kernels
    assert sorted(k.kernel_class for k in kernels) == ["copy", "slice"]  # the chunk's two halves: one copy
    for k in kernels:  # the halves at 1 GB/s, the cat at the copy points' 10
        assert k.memory_ms == pytest.approx(k.bytes / (1e9 if k.kernel_class == "slice" else 1e10) * 1e3)
    no_slices = {**slow, "points": {**slow["points"], "slice": []}}
    assert {k.kernel_class for k in predict_profile(profile, "this", None, no_slices, "onnxruntime", 1).kernels} == \
        {"copy"}


def test_runtime_cases_run_the_nodes_they_calibrate(tmp_path):
    import onnx

    made = {case.label: case for case in calibration.runtime_cases()}
    # reorders at both batch sizes, at channel counts padded to whole blocks too
    if calibration.blocked_layout():
        assert {"reorder 24@112 b1", "reorder 24@112 b8", "reorder 512@7 b8"} <= set(made)
        assert made["reorder 24@112 b8"].cost == (0, 16 * 8 * 24 * 112 * 112, 2)
    for label, node, cost in (("slice 8192 b8", "Slice", (0, 8 * 8 * 8192, 1)),
                              ("silu 8192 b1", "QuickGelu", None)):
        case = made[label]
        optimized = str(tmp_path / f"{node}.onnx")
        calibration.case_runner("onnxruntime", case.build().eval(), [torch.randn(s) for s in case.shapes], 1,
                                str(tmp_path), optimized=optimized)
        assert [n.op_type for n in onnx.load(optimized).graph.node] == [node]
        assert case.cost == cost
    assert "slice 8388608 b1" not in made  # its 2**24-element input is past the limit


def test_overheads_split_per_kernel_and_per_call():
    # one op 16 us, sixteen ops 31 us: 1 us per extra kernel, 15 us per call
    seconds = {"overhead call": 16e-6, "overhead chain": 31e-6, "overhead view": 2e-6}
    # a CPU point's time holds a kernel's and a call's overhead; a CUDA graph replay's none
    assert calibration._overheads(seconds, "cpu") == pytest.approx({"kernel": 1e-6, "call": 15e-6, "view": 2e-6,
                                                                    "in_points": 16e-6})
    del seconds["overhead view"]  # a runtime's graph has no view ops
    assert calibration._overheads(seconds, "cuda") == pytest.approx({"kernel": 1e-6, "call": 15e-6, "view": 0.0,
                                                                     "in_points": 0.0})
    # the call overhead is paid once per prediction, the kernel overhead per kernel
    model = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()).eval()
    profile = {**fake_profile(), "overhead_s": {"kernel": 1e-6, "call": 15e-6, "view": 0.0, "in_points": 0.0}}
    prediction = predict_profile(analyze(model, (1, 16, 32, 32)), "this", None, profile, "torch", 1)
    (k,) = prediction.kernels
    assert k.overhead_ms == pytest.approx(1e-3)
    assert prediction.totals["call_overhead_ms"] == pytest.approx(15e-3)
    assert prediction.totals["latency_ms"] == pytest.approx(k.time_ms + 15e-3)


def test_context_factor_interpolates_in_log_batch():
    from deploylens.predict.api import context_factor

    calibration = {"context_factor": {"1": 2.0, "8": 0.5}}
    assert context_factor(calibration, 1) == 2.0 and context_factor(calibration, 8) == 0.5
    assert context_factor(calibration, 32) == 0.5
    # batch 2 is a third of the way from 1 to 8 in log space: 2 * (0.25 ** (1/3))
    assert context_factor(calibration, 2) == pytest.approx(2.0 * 0.25 ** (1 / 3))
    assert context_factor({}, 4) == 1.0


def test_calibrated_rates_never_beat_the_peak():
    model = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()).eval()
    profile = analyze(model, (1, 16, 32, 32))
    capped = {**fake_profile(), "peak_flops": 1e10}  # below the points' 100 GFLOP/s
    (k,) = predict_profile(profile, "this", None, capped, "torch", 1).kernels
    assert k.compute_ms == pytest.approx(k.flops / 1e10 * 1e3)


def test_the_whole_network_factor_fades_near_the_compute_ceiling():
    model = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()).eval()
    profile = analyze(model, (1, 16, 32, 32))
    # the point runs 100 GFLOP/s alone; kernels inside a network run 2x as long
    slow = {**fake_profile(), "context_factor": {"1": 2.0}}
    (at_ceiling,) = predict_profile(profile, "this", None, {**slow, "peak_flops": 1e11}, "torch", 1).kernels
    assert at_ceiling.compute_ms == pytest.approx(at_ceiling.flops / 1e11 * 1e3)  # as fast as alone
    # a quarter of the ceiling alone: three quarters of the factor's effect, 2 ** 0.75
    (below,) = predict_profile(profile, "this", None, {**slow, "peak_flops": 4e11}, "torch", 1).kernels
    assert below.compute_ms == pytest.approx(below.flops / 1e11 * 2 ** 0.75 * 1e3)
    # memory-bound classes take the whole factor: the copy class's 10 GB/s halved
    assert below.memory_ms == pytest.approx(below.bytes / 5e9 * 1e3)


def test_compute_ceiling_is_the_isa_peak_or_the_fastest_case():
    # the fake points run 1e8 FLOPs in 1 ms: 100 GFLOP/s
    assert calibration.compute_ceiling({**fake_profile(), "isa_peak_flops": 8e10}) == 1e11  # turbo beat the ISA
    assert calibration.compute_ceiling({**fake_profile(), "isa_peak_flops": 3e11}) == 3e11
    assert calibration.compute_ceiling({**fake_profile(), "isa_peak_flops": None}) == 1e11
    assert calibration.compute_ceiling({**fake_profile(), "device": "cuda"}) is None


def test_profiles_are_versioned_json(tmp_path):
    path = calibration.save(fake_profile(), tmp_path / "p.json")
    assert calibration.load(path)["points"]["matmul"][0]["flops"] == 10**8
    stale = {**fake_profile(), "version": 0}
    path.write_text(json.dumps(stale))
    with pytest.raises(UserError, match="version 0"):
        calibration.load(path)
    path.write_bytes(b"\x80\x04\x95")  # a pickle is never read
    with pytest.raises(UserError, match="cannot read calibration profile"):
        calibration.load(path)


def test_calibration_runs_and_predicts(tmp_path):
    profile = calibration.calibrate("torch", threads=1, max_flops=1e6)
    assert profile["format"] == calibration.FORMAT and profile["threads"] == 1
    assert all(profile["points"][c] for c in ("conv_dense", "conv_depthwise", "elementwise", "copy", "matmul"))
    assert profile["overhead_s"]["kernel"] > 0 and profile["peak_flops"] > 0
    assert set(profile["context_factor"]) == {"1", "8"} and all(f > 0 for f in profile["context_factor"].values())
    prediction = predict("mobilenet_v2_050", "this", input_shape=(1, 3, 64, 64), calibration=profile)
    assert prediction.totals["latency_ms"] > 0 and prediction.totals["complete"]


def test_onnxruntime_calibration_runs_with_its_reorders():
    profile = calibration.calibrate("onnxruntime", threads=1, max_flops=1e6, rounds=1)
    assert profile["backend"] == "onnxruntime" and profile["overhead_s"]["view"] == 0.0
    convs = [p for c in ("conv_dense", "conv_pointwise", "conv_depthwise") for p in profile["points"][c]]
    assert convs and all(p["seconds"] > 0 for p in convs)
    if profile["points"]["reorder"]:  # a CPU with ONNX Runtime's blocked layout
        reorder_cases = [c for c in calibration.runtime_cases() if c.kernel_class == "reorder"]
        assert len(profile["points"]["reorder"]) == len(reorder_cases)
        blocked = [p for p in convs if p.get("reorder_bytes")]
        assert blocked and all(0 < p["boundary_s"] for p in blocked)
    prediction = predict("mobilenet_v2_050", "this", "onnxruntime", input_shape=(1, 3, 64, 64), calibration=profile)
    assert prediction.totals["latency_ms"] > 0 and prediction.totals["complete"]


def _steady(seconds: float):
    """A measurement of five samples of ``seconds`` each, without probe readings."""
    from deploylens.bench.stats import Timing
    from deploylens.bench.stats import summarize

    return Timing([seconds] * 5, 1, 5, 2, "stable", summarize([seconds] * 5), [])


def _fake_measures(monkeypatch) -> list[tuple]:
    """Makes the calibration's every measurement 1 ms; returns the (run, rule) of each."""
    calls: list[tuple] = []

    def fake_measure(run, rule, sync, probe):
        calls.append((run, rule))
        return _steady(1e-3)

    monkeypatch.setattr(calibration, "measure", fake_measure)
    return calls


def test_onnxruntime_case_runner_writes_into_bound_buffers(tmp_path):
    import numpy as np
    import onnxruntime as ort

    graph = calibration._conv_relu_onnx(calibration.conv_geometry(4, 8, 1, 3, 1, 36), (1, 4, 6, 6))
    run = calibration.case_runner("onnxruntime", None, [torch.randn(1, 4, 6, 6)], 1, str(tmp_path), graph)
    arrays, _ = run()
    arrays[0][:] = np.random.default_rng(1).standard_normal((1, 4, 6, 6))  # a new input in the bound buffer
    run()  # writes its output into the bound output buffer
    (expected,) = ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, {"input0": arrays[0]})
    assert arrays[-1].shape == (1, 8, 6, 6) and np.allclose(arrays[-1], expected, atol=1e-5) and expected.any()


def test_onnxruntime_calibration_runs_each_case_back_to_back(monkeypatch):
    import deploylens.predict

    calls = _fake_measures(monkeypatch)

    def export_again(*args, **kwargs):
        raise AssertionError("the whole-network fit exported a synthetic network again")
    # the fit reads the kernels ONNX Runtime adds from the graphs the networks' sessions saved
    monkeypatch.setattr(deploylens.predict, "onnxruntime_added_kernels", export_again)
    profile = calibration.calibrate("onnxruntime", threads=1, max_flops=1e6, rounds=2)
    seen = [run for run, _ in calls]
    # a session's rounds in a row (the session is dropped after them), one session per case
    assert all(seen[i] is seen[i + 1] for i in range(0, len(seen), 2))
    assert len({id(run) for run in seen}) == len(seen) // 2
    networks = 2 * len(calibration._ContextNet.STYLES) * len(calibration.CONTEXT_BATCHES)
    assert all(rule is calibration.NETWORK for _, rule in calls[:networks])  # first of all
    assert set(profile["context_factor"]) == {"1", "8"}


def test_calibration_keeps_each_case_quietest_round(monkeypatch):
    seen: list = []

    def fake_measure(run, rule, sync, probe):
        # the second of three rounds is the quiet one for every case (no probe readings)
        seconds = (2e-3, 1e-3, 3e-3)[sum(1 for r in seen if r is run)]
        seen.append(run)
        return _steady(seconds)

    monkeypatch.setattr(calibration, "measure", fake_measure)
    profile = calibration.calibrate("torch", threads=1, max_flops=1e6, rounds=3)
    seconds = {p["seconds"] for points in profile["points"].values() for p in points}
    assert seconds == {1e-3} and profile["rounds"] == 3
    # one op and a chain of 16 both took 1 ms: no per-kernel overhead, 1 ms per call
    assert profile["overhead_s"]["kernel"] == 0.0 and profile["overhead_s"]["call"] == 1e-3
    cases = sum(len(points) for points in profile["points"].values())
    networks = len(calibration._ContextNet.STYLES) * 2  # every synthetic network at batch 1 and 8
    assert len(seen) == 3 * (cases + 3 + networks)  # cases, three overheads, the networks
    # round-robin: the first round measures every case before the second begins
    assert len(set(map(id, seen[: len(seen) // 3]))) == len(seen) // 3
    with pytest.raises(UserError, match="at least one round"):
        calibration.calibrate("torch", threads=1, max_flops=1e6, rounds=0)


def test_calibration_adjusts_busy_samples_and_times_networks_longer(monkeypatch):
    from deploylens.bench.stats import Timing
    from deploylens.bench.stats import summarize

    busy_ms = 4 ** 0.45  # a sample slowed as the default exponent says when the probe reads 4x its level
    rules = []

    def fake_measure(run, rule, sync, probe):
        # every round: three samples of 1 ms while the probe read 0.25 ms (quiet) and three
        # of 4^0.45 ms while it read 1 ms (a neighbour busy)
        samples, readings = [1e-3] * 3 + [busy_ms * 1e-3] * 3, [0.25e-3] * 3 + [1e-3] * 3
        probe.readings.extend(readings)
        rules.append(rule)
        return Timing(samples, 1, 6, 2, "max_time", summarize(samples), [], readings)

    monkeypatch.setattr(calibration, "measure", fake_measure)
    profile = calibration.calibrate("torch", threads=1, max_flops=1e6, rounds=2)
    cases = sum(len(points) for points in profile["points"].values())
    assert [p["seconds"] for points in profile["points"].values() for p in points] == pytest.approx([1e-3] * cases)
    assert profile["probe"] == {"level_s": pytest.approx(0.25e-3), "tolerance": 0.1, "quiet_share": 1.0,
                                "exponent": 0.45}
    # the synthetic networks at two batch sizes, in both rounds, with the longer rule
    assert rules.count(calibration.NETWORK) == 2 * len(calibration._ContextNet.STYLES) * 2
    assert calibration.NETWORK.min_time > calibration.QUICK.max_time

    # a calibration in a busy spell throughout, against the level known from an earlier one
    def busy_measure(run, rule, sync, probe):
        samples, readings = [2e-3] * 6, [1e-3] * 6
        probe.readings.extend(readings)
        return Timing(samples, 1, 6, 2, "max_time", summarize(samples), [], readings)

    monkeypatch.setattr(calibration, "measure", busy_measure)
    busy = calibration.calibrate("torch", threads=1, max_flops=1e6, rounds=1, probe_level=0.25e-3)
    # 2 ms x (1/4) ^ 0.45, none of its cases quiet
    assert busy["probe"]["quiet_share"] == 0.0 and busy["probe"]["level_s"] == 0.25e-3
    assert [p["seconds"] for points in busy["points"].values() for p in points] == \
        pytest.approx([2e-3 * 0.25 ** 0.45] * cases)


def test_known_probe_level_is_the_quietest_of_the_saved_cpu_profiles(tmp_path):
    def saved(name: str, content) -> None:
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))

    cpu = calibration.profile_path("torch", 2, directory=tmp_path).name.split("-torch-")[0]
    profile = {"format": calibration.FORMAT, "version": 6, "probe": {"level_s": 3e-4}}
    saved(f"{cpu}-torch-2t-fp32.json", profile)
    saved(f"{cpu}-onnxruntime-2t-fp32.json", {**profile, "probe": {"level_s": 2.8e-4}})
    saved(f"{cpu}-onnxruntime-4t-fp32.json", {**profile, "probe": {"level_s": 1e-4}})  # other threads
    saved(f"{cpu}-torch-2t-fp16.json", "not json")
    saved(f"{cpu}-x-2t-fp32.json", {"format": "other", "probe": {"level_s": 1e-5}})
    saved(f"{cpu}-y-2t-fp32.json", {**profile, "probe": None})
    assert calibration.known_probe_level(2, tmp_path) == 2.8e-4
    assert calibration.known_probe_level(4, tmp_path) == 1e-4
    assert calibration.known_probe_level(8, tmp_path) is None


def test_bad_targets():
    with pytest.raises(UserError, match="unknown target 'nope'; one of: this, amd_epyc_9654"):
        predict("resnet18", "nope")
    with pytest.raises(UserError, match="no sourced memory bandwidth"):
        predict("resnet18", "horizon_sunrise_x3", dtype="int8")
    with pytest.raises(UserError, match="no fp32 peak"):
        predict("resnet18", "horizon_journey3")


def test_timeline_serial_and_overlapped_by_hand():
    from deploylens.predict.api import _Timeline

    # launches of 5 ms each; kernels of 1, 10 and 1 ms
    serial, overlapped = _Timeline(0.0, overlapped=False), _Timeline(0.0, overlapped=True)
    assert [serial.add(body, 5.0) for body in (1.0, 10.0, 1.0)] == [6.0, 15.0, 6.0]
    # the GPU waits for the first launch (5 + 1), runs the second from 10 to 20 while the
    # third is launched at 15, and runs the third at once after it: 21
    assert [overlapped.add(body, 5.0) for body in (1.0, 10.0, 1.0)] == [6.0, 14.0, 1.0]
    assert (serial.finished, overlapped.finished) == (27.0, 21.0)


def test_a_gpu_calibration_overlaps_launches_with_kernels():
    # two conv-BN-ReLU units (3 eager ops each, 10 us per op launch) on a fake GPU profile
    model = nn.Sequential(*(nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
                            for _ in range(2))).eval()
    analysis = analyze(model, (1, 16, 32, 32))
    gpu = {**fake_profile(), "device": "cuda", "vector_lanes": 8,
           "overhead_s": {"kernel": 1e-6, "call": 2e-5, "view": 0.0, "in_points": 0.0}}
    gpu["points"] = {c: [{**p, "launch_per_op_s": 1e-5} for p in points] for c, points in gpu["points"].items()}
    fast = predict_profile(analysis, "this", None, gpu, "torch", 1)
    first, second = fast.kernels
    assert first.overhead_ms == pytest.approx(0.03) and first.compute_ms < 0.03
    # launch-bound: the total is the six launches, the last kernel and the call
    assert fast.totals["latency_ms"] == pytest.approx(0.06 + max(second.compute_ms, second.memory_ms) + 0.02)
    assert [k.bound for k in fast.kernels] == ["overhead", "overhead"]
    # the whole-network factor scales launches and kernels alike: the timeline doubles
    doubled = predict_profile(analysis, "this", None, {**gpu, "context_factor": {"1": 2.0}}, "torch", 1)
    assert doubled.totals["latency_ms"] - 0.02 == pytest.approx(2 * (fast.totals["latency_ms"] - 0.02))
    # kernel-bound (points 1000x slower): the second launch hides behind the first kernel
    slow_points = json.loads(json.dumps(gpu))
    for points in slow_points["points"].values():
        points[0]["seconds"] *= 1000
    slow = predict_profile(analysis, "this", None, slow_points, "torch", 1)
    bodies = [max(k.compute_ms, k.memory_ms) for k in slow.kernels]
    assert slow.totals["latency_ms"] == pytest.approx(0.03 + sum(bodies) + 0.02)
    assert slow.kernels[1].time_ms == pytest.approx(bodies[1])


def test_calibration_identity_and_profile_path(monkeypatch, tmp_path):
    from deploylens.hardware.local import cpu_info

    here = calibration.identity("cpu", "torch", 2, "fp32")
    assert here["cpu"] == cpu_info()["model"] and here["gpu"] is None and here["device"] == "cpu"
    for args, message in ((("cpu", "torch", 2, "fp16"), "on the CPU the calibration runs fp32"),
                          (("tpu", "torch", 2, "fp32"), "unknown device 'tpu'"),
                          (("cpu", "tensorrt", 2, "fp32"), "calibration backends"),
                          (("cpu", "torch", 2, "int8"), "calibration dtypes")):
        with pytest.raises(UserError, match=message):
            calibration.identity(*args)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA GPU is visible"):
        calibration.identity("cuda", "torch", 2, "fp16")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA H100 80GB HBM3")
    with pytest.raises(UserError, match="on a CUDA GPU the calibration runs the torch backend"):
        calibration.identity("cuda", "onnxruntime", 2, "fp32")
    gpu = calibration.identity("cuda", "torch", 2, "fp16")
    assert gpu["gpu"] == "NVIDIA H100 80GB HBM3" and gpu["vector_lanes"] == 8
    assert calibration.profile_path("torch", 2, "cuda", "fp16", tmp_path).name == \
        "nvidia-h100-80gb-hbm3-torch-2t-fp16.json"


def test_calibration_cases_add_batched_convs():
    gpu, cpu = calibration.cases(calibration.SETTINGS["cuda"], 8), calibration.cases(calibration.SETTINGS["cpu"], 16)
    for made in (gpu, cpu):
        assert len({c.label for c in made}) == len(made)  # labels key the timings
    assert {c.shapes[0][0] for c in cpu} == {1, 8} and {c.shapes[0][0] for c in gpu} == {1, 16}
    (big,) = [c for c in gpu if c.label == "conv3x3 128->128 g1 s1 @56 b16"]  # 14.8 GFLOP
    assert big.geometry["pixels"] == 16 * 56 * 56  # the batch is part of the GEMM's M dimension
    labels = {c.label for c in cpu}
    # on a CPU, batch 8 for dense and pointwise convs of outputs 14 wide or more, and 1x1 maps
    assert {"conv3x3 64->64 g1 s1 @56 b8", "conv1x1 64->64 g1 s1 @14 b8", "conv1x1 64->16 g1 s1 @1 b8"} <= labels
    assert "conv3x3 64->64 g1 s1 @7 b1" in labels and "conv3x3 64->64 g1 s1 @7 b8" not in labels
    assert "conv3x3 96->96 g96 s1 @56 b1" in labels and "conv3x3 96->96 g96 s1 @56 b8" not in labels
    # and within the FLOP limit: 3.7 GFLOP at batch 1, 29.6 at batch 8
    assert "conv3x3 128->128 g1 s1 @112 b1" in labels and "conv3x3 128->128 g1 s1 @112 b8" not in labels
    # the strided pointwise and the 1x1 depthwise convs of shortcuts and MobileOne's branches
    assert {"conv1x1 64->128 g1 s2 @56 b1", "conv1x1 96->96 g96 s1 @56 b1"} <= labels


def test_launch_seconds_time_calls_launched_back_to_back(monkeypatch):
    events: list[str] = []
    block_means = iter([0.002, 0.003, 0.001, 0.005, 0.0025])  # the warm-up block is not timed
    clock = [0.0]

    def fake_clock():  # read at a block's start and end: its three calls took 3 x its mean
        if events[-1] == "run":
            clock[0] += 3 * next(block_means)
        return clock[0]

    monkeypatch.setattr(calibration.time, "perf_counter", fake_clock)
    seconds = calibration._launch_seconds(lambda: events.append("run"), lambda: events.append("sync"),
                                          calls=3, blocks=5)
    assert seconds == pytest.approx(0.0025)  # the median of the five timed blocks' means
    # a sync before each block, the block's calls back to back; a last sync leaves the device idle
    assert events == (["sync"] + ["run"] * 3) * 6 + ["sync"]


def test_launch_per_op_takes_out_the_call_and_keeps_an_elementwise_launch():
    overheads = {"call": 12e-6, "kernel": 8e-6}
    # a conv-BN-ReLU case (3 ops) whose call took 72 us: (72 - 12) / 3 = 20 us per op
    assert calibration.launch_per_op(72e-6, 3, overheads) == pytest.approx(20e-6)
    # a call quicker than the call overhead plus its ops' launches: the element-wise floor
    assert calibration.launch_per_op(14e-6, 2, overheads) == pytest.approx(8e-6)


class ShuffledConvs(nn.Module):
    """Two convs with a chunk-and-swap between them: ONNX Runtime's blocked-layout convs meet
    a Split/Slice and a Concat, which have no blocked kernel."""

    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x):
        a, b = self.first(x).chunk(2, dim=1)
        return self.second(torch.cat([b, a], 1))


def test_onnxruntime_reorders_come_from_its_optimized_graph():
    from deploylens.predict.api import onnxruntime_added_kernels

    reorders = [k for k in onnxruntime_added_kernels(ShuffledConvs().eval(), [(2, 3, 8, 8)], threads=1)
                if k.kind == "data_movement"]
    if not reorders:
        pytest.skip("ONNX Runtime runs no channel-blocked (NCHWc) convs on this CPU")
    # out of the first conv (to be sliced), into the second (the concat) and out of it (the
    # graph's output is plain NCHW): 2x16x8x8 float32 elements each, read and written
    assert sorted(k.name.split(":")[0] for k in reorders) == ["ReorderInput", "ReorderOutput", "ReorderOutput"]
    assert all(k.bytes_read == k.bytes_written == 2 * 16 * 8 * 8 * 4 and k.complete for k in reorders)
    # a prediction for ONNX Runtime on this machine costs them as copies; torch eager has none
    profile = fake_profile()
    prediction = predict(ShuffledConvs().eval(), "this", "onnxruntime", 2, input_shape=(1, 3, 8, 8),
                         calibration={**profile, "backend": "onnxruntime"})
    copies = [k for k in prediction.kernels if k.name.startswith("Reorder")]
    assert len(copies) == 3 and all(k.kernel_class == "reorder" and k.time_ms > 0 for k in copies)
    no_reorder_points = {**profile, "backend": "onnxruntime", "points": {**profile["points"], "reorder": []}}
    plain = predict(ShuffledConvs().eval(), "this", "onnxruntime", 2, input_shape=(1, 3, 8, 8),
                    calibration=no_reorder_points)
    assert [k.kernel_class for k in plain.kernels if k.name.startswith("Reorder")] == ["copy"] * 3
    eager = predict(ShuffledConvs().eval(), "this", "torch", 2, input_shape=(1, 3, 8, 8), calibration=profile)
    assert not [k for k in eager.kernels if k.name.startswith("Reorder")]


def shape_chain_onnx(length: int) -> bytes:
    """A graph whose ``length`` middle nodes compute on a tensor's shape, the way a
    dynamic-batch export computes a view's sizes (Shape, Gather, integer Mul and Div,
    Unsqueeze, Concat, then a Reshape of the data): each a dependent step, so that no
    optimizer folds or merges them: ``length + 4`` nodes of shape arithmetic."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    constants = [numpy_helper.from_array(np.array(value, np.int64), name)
                 for name, value in (("zero", 0), ("two", 2), ("axes", [0]), ("rest", [-1]))]
    nodes = [helper.make_node("Shape", ["input0"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["size0"], axis=0)]
    for step in range(length):
        nodes.append(helper.make_node("Mul" if step % 2 == 0 else "Div", [f"size{step}", "two"], [f"size{step + 1}"]))
    nodes += [helper.make_node("Unsqueeze", [f"size{length}", "axes"], ["batch"]),
              helper.make_node("Concat", ["batch", "rest"], ["target"], axis=0),
              helper.make_node("Reshape", ["input0", "target"], ["output"])]
    graph = helper.make_graph(nodes, "shape_chain",
                              [helper.make_tensor_value_info("input0", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], constants)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


class ChannelShuffle(nn.Module):
    """A conv, then its channels shuffled by the zoo's views of sizes read from the tensor."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        from deploylens.zoo.blocks import channel_shuffle

        return channel_shuffle(self.conv(x), 2)


def test_shape_arithmetic_nodes_are_found_in_the_optimized_graph(tmp_path):
    optimized = str(tmp_path / "optimized.onnx")
    for length in (2, 10):
        calibration.case_runner("onnxruntime", None, [torch.randn(3, 4)], 1, str(tmp_path), shape_chain_onnx(length),
                                optimized=optimized)
        kinds = calibration.shape_arithmetic_nodes(optimized)
        # Shape, Gather, the chain of Mul and Div, Unsqueeze, Concat; the Reshape works on data
        assert sorted(kinds) == sorted(["Shape", "Gather", "Unsqueeze", "Concat"] + ["Mul", "Div"] * (length // 2))


def test_onnxruntime_shape_arithmetic_costs_a_kernel_overhead_each():
    from deploylens.predict.api import SHAPE_KIND, kernel_overhead, onnxruntime_added_kernels

    added = onnxruntime_added_kernels(ChannelShuffle().eval(), [(2, 3, 8, 8)], threads=1)
    shape_kernels = [k for k in added if k.kind == SHAPE_KIND]
    # a dynamic-batch export computes the batch size of both views at run time
    assert shape_kernels and all(k.bytes == 0 and k.flops == 0 and k.complete for k in shape_kernels)
    # with the batch fixed in the model (a plain conv), nothing computes on shapes
    assert not [k for k in onnxruntime_added_kernels(nn.Conv2d(3, 8, 1).eval(), [(2, 3, 8, 8)], threads=1)
                if k.kind == SHAPE_KIND]
    # each costs the per-kernel overhead inside a network: 2 us x factor 1.5 + 3 us = 6 us
    profile = {**fake_profile(), "backend": "onnxruntime", "context_factor": {"1": 1.5},
               "context_kernel_s": {"1": 3e-6}, "overhead_s": {"kernel": 2e-6, "view": 0.0, "in_points": 0.0}}
    assert kernel_overhead(profile, 1) == pytest.approx(6e-6)
    prediction = predict(ChannelShuffle().eval(), "this", "onnxruntime", 1, input_shape=(1, 3, 8, 8),
                         calibration=profile)
    costed = [k for k in prediction.kernels if k.kernel_class == SHAPE_KIND]
    assert len(costed) == len(shape_kernels)
    assert all(k.compute_ms == k.memory_ms == 0 and k.time_ms == pytest.approx(6e-3) for k in costed)
    # torch eager computes view sizes in Python: no such kernels
    eager = predict(ChannelShuffle().eval(), "this", "torch", 1, input_shape=(1, 3, 8, 8), calibration=fake_profile())
    assert not [k for k in eager.kernels if k.kernel_class == SHAPE_KIND]


def test_conv_cases_lose_the_reorders_onnxruntime_ran_around_them(tmp_path):
    import onnxruntime as ort

    if not calibration.blocked_layout():
        pytest.skip("ONNX Runtime runs no channel-blocked (NCHWc) layout on this CPU")
    geometry = calibration.conv_geometry(16, 16, 1, 1, 1, 8 * 8)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(calibration._conv_relu_onnx(geometry, (1, 16, 8, 8)), options,
                         providers=["CPUExecutionProvider"])
    # into the blocked layout and out of it: 16x8x8 float32 elements each, read and written
    assert calibration.boundary_reorder_bytes(options.optimized_model_filepath,
                                              {"input0": 1024, "output": 1024, "conv": 1024}) == 2 * (2 * 4 * 1024)
    # a point's boundary time is taken out of its time: 1 ms with 0.5 ms of reorders is a 2x rate
    profile = fake_profile()
    model = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()).eval()
    analysis = analyze(model, (1, 16, 32, 32))
    (plain,) = predict_profile(analysis, "this", None, profile, "onnxruntime", 1).kernels
    profile["points"]["conv_pointwise"][0]["boundary_s"] = 0.5e-3
    (freed,) = predict_profile(analysis, "this", None, profile, "onnxruntime", 1).kernels
    assert freed.compute_ms == pytest.approx(plain.compute_ms / 2)
    # and the calibration derives it from the batch-1 reorder points of its channel alignment:
    # 4096 bytes at their rate (not at the 8x slower rate of the batch-8 point or the 4x
    # slower one of 24 channels, of the same size), for a batch-8 case too
    profile["points"]["conv_pointwise"][0].update(reorder_bytes=4096, boundary_s=0.0, input_shape=[8, 16, 4, 4])
    profile["points"]["reorder"] = [
        {"label": f"r{i}", "flops": 0, "bytes": 4096, "seconds": seconds, "input_shape": shape}
        for i, (seconds, shape) in enumerate(((2e-6, [1, 32, 2, 2]), (16e-6, [8, 16, 4, 4]), (8e-6, [1, 24, 4, 4])))]
    profile["overhead_s"]["in_points"] = 0.0
    calibration._boundary_times(profile)
    assert profile["points"]["conv_pointwise"][0]["boundary_s"] == pytest.approx(2e-6)


def test_whole_network_fit_by_hand():
    from deploylens.predict.api import context_kernel_seconds

    # measured = 2 x predicted + 10 us per kernel, exactly: both recovered
    networks = [(2 * p + 10e-6 * n, p, n) for p, n in ((5e-3, 30), (3e-3, 50), (8e-3, 15), (4e-3, 40))]
    factor, per_kernel = calibration.fit_context(networks)
    assert factor == pytest.approx(2.0) and per_kernel == pytest.approx(10e-6)
    # the factor alone: when asked, or when the per-kernel term would be negative
    assert calibration.fit_context(networks, per_kernel=False)[1] == 0.0
    shrinking = [(2 * p - 1e-6 * n, p, n) for p, n in ((5e-3, 30), (3e-3, 50), (8e-3, 15))]
    assert calibration.fit_context(shrinking)[1] == 0.0
    assert calibration.fit_context([(2 * p, p, n) for p, n in ((5e-3, 30), (3e-3, 50))]) == pytest.approx((2.0, 0.0))
    # the per-kernel cost fades linearly in log batch: a third of the way from 1 to 8 at batch 2
    profile = {"context_kernel_s": {"1": 30e-6, "8": 0.0}}
    assert context_kernel_seconds(profile, 1) == 30e-6 and context_kernel_seconds(profile, 8) == 0.0
    assert context_kernel_seconds(profile, 2) == pytest.approx(20e-6)
    # and is paid by every kernel of a prediction
    model = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()).eval()
    analysis = analyze(model, (1, 16, 32, 32))
    (bare,) = predict_profile(analysis, "this", None, fake_profile(), "torch", 1).kernels
    (paid,) = predict_profile(analysis, "this", None, {**fake_profile(), **profile}, "torch", 1).kernels
    assert paid.overhead_ms == pytest.approx(bare.overhead_ms + 0.03)


def test_synthetic_networks_hold_the_block_types_they_stand_for():
    """Concatenation where the field's networks concatenate (SqueezeNet's fire, GhostNet,
    VoVNet, DenseNet, ShuffleNet), residual adds only in the residual styles."""
    concatenating = {"split_shuffle", "fire", "ghost", "aggregation", "dense_growth"}
    for style in calibration._ContextNet.STYLES:
        network = calibration._ContextNet(style).eval()
        ops = {layer.native for layer in analyze(network, (1, 3, 64, 64)).layers}
        assert ("aten.cat" in ops) == (style in concatenating), style
        assert ("aten.add" in ops) == (style in calibration._ContextNet.RESIDUAL), style
        assert network(torch.randn(1, 3, 64, 64)).shape == (1, 100)
    with pytest.raises(ValueError, match="unknown synthetic network style"):
        calibration._ContextNet("transformer")


def test_the_whole_network_fit_takes_the_networks_a_profile_timed():
    # a profile lacking some networks' timings (as one edited by hand) fits on the others:
    # here the prediction is linear in the factor, so the first round's fit is the result
    measured = {"plain": 5e-3, "residual": 4e-3}
    profile = {**fake_profile(), "fixed_s": {f"{style} batch 1": seconds for style, seconds in measured.items()}}
    totals = {style: predict_profile(analyze(calibration._ContextNet(style).eval(), (1, 3, 224, 224)), "this", None,
                                     {**profile, "context_factor": {}}, "torch", 1).totals for style in measured}
    expected = calibration.fit_context([(seconds, totals[style]["latency_ms"] / 1e3, totals[style]["kernels"])
                                        for style, seconds in measured.items()])
    assert calibration._context_fit(profile, 1) == pytest.approx(expected, rel=1e-6)


def test_the_whole_network_fit_takes_the_added_kernels_it_is_given(monkeypatch):
    import deploylens.predict

    def export_again(*args, **kwargs):
        raise AssertionError("exported a synthetic network again")
    monkeypatch.setattr(deploylens.predict, "onnxruntime_added_kernels", export_again)
    # ONNX Runtime on a CPU without the blocked layout adds no kernel to a network: an empty
    # list read at timing is an answer, not a reason to export the network again
    measured = {"plain": 5e-3, "residual": 4e-3}
    profile = {**fake_profile(), "backend": "onnxruntime",
               "fixed_s": {f"{style} batch 1": seconds for style, seconds in measured.items()}}
    totals = {style: predict_profile(analyze(calibration._ContextNet(style).eval(), (1, 3, 224, 224)), "this", None,
                                     {**profile, "context_factor": {}}, "onnxruntime", 1, []).totals
              for style in measured}
    expected = calibration.fit_context([(seconds, totals[style]["latency_ms"] / 1e3, totals[style]["kernels"])
                                        for style, seconds in measured.items()])
    none_added = {label: [] for label in profile["fixed_s"]}
    assert calibration._context_fit(profile, 1, added=none_added) == pytest.approx(expected, rel=1e-6)


def test_budgeted_rounds_share_the_seconds_left():
    rule = calibration.QUICK  # 20 ms to 100 ms per case
    assert calibration.budgeted(rule, 100.0, 500) is rule  # 200 ms each: the usual cap
    tight = calibration.budgeted(rule, 20.0, 500)  # 40 ms each
    assert (tight.min_time, tight.max_time) == (pytest.approx(0.02), pytest.approx(0.04))
    late = calibration.budgeted(rule, -3.0, 10)  # past the deadline: the 10 ms floor
    assert (late.min_time, late.max_time) == (0.01, 0.01) and late.ci_target == rule.ci_target


def test_the_budget_leaves_time_for_the_networks_to_come_and_each_rounds_fixed_cost():
    # 100 s left, 2 network rounds and 10 case rounds in all
    budget = calibration.Budget(deadline=100.0, case_rounds=10, network_rounds=2)
    budget.spent(network=True, seconds=20.0, cap=calibration.NETWORK.max_time)  # one network: 20 s, one to come
    rule = budget.case_rule(first_round=True, now=20.0)  # 80 s - 20 s (a network) = 60 s for 10 cases
    assert rule is calibration.QUICK  # 6 s each: the usual 100 ms cap
    budget.spent(network=False, seconds=5.1, cap=rule.max_time)  # 5 s beyond its cap: building a session
    # 100 - 25.1 - 20 (a network) - 9 x 5 (beyond the cap) = 9.9 s for 9 rounds: 1.1 s each
    assert budget.case_rule(first_round=False, now=25.1) is calibration.QUICK
    budget.spent(network=False, seconds=5.0, cap=0.1)  # 2 rounds, 9.9 s beyond their caps: 4.95 each
    # 100 - 90 - 20 - 8 x 4.95 < 0: out of time, a later round is skipped and a first runs at the floor
    assert budget.case_rule(first_round=False, now=90.0) is None
    assert budget.case_rule(first_round=True, now=90.0).max_time == 0.01


def test_a_calibration_past_its_budget_skips_later_rounds(monkeypatch):
    from dataclasses import replace

    calls = _fake_measures(monkeypatch)
    monkeypatch.setitem(calibration.SETTINGS, "cpu", replace(calibration.SETTINGS["cpu"], budget_s=0.0))
    profile = calibration.calibrate("torch", threads=1, max_flops=1e6, rounds=3)
    rules = [rule for _, rule in calls]
    cases = sum(len(points) for points in profile["points"].values())
    # every case and overhead once (the first round), each at the 10 ms floor, none after;
    # the synthetic networks, which come first: every round, with their own rule
    quick = [r for r in rules if r is not calibration.NETWORK]
    assert len(quick) == cases + 3 and {r.max_time for r in quick} == {0.01}
    assert len(rules) - len(quick) == 3 * len(calibration._ContextNet.STYLES) * 2

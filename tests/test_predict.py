"""Hardware catalog schema, roofline arithmetic, kernel classes, the kernels each runtime
runs, and prediction from a device model (a catalogued device or a calibration profile)."""

from __future__ import annotations

import copy
import platform
from dataclasses import replace

import pytest
import torch
import torch.nn as nn
from calibrations import fake_profile

from deploylens import UserError, analyze
from deploylens.cost.records import KernelCost
from deploylens.hardware.calibration_profile import BUSY_QUIET_SHARE, CalibrationPoint, Machine, Overheads, Probe
from deploylens.hardware.kernel_classes import channel_alignment, conv_geometry, conv_geometry_of, kernel_class
from deploylens.hardware.local import per_cycle
from deploylens.hardware.spec import CatalogError, Figure, HardwareSpec, load_catalog, parse_family
from deploylens.kernels.onnxruntime_graph import added_kernels, shape_arithmetic_nodes
from deploylens.kernels.runtimes import SHAPE_KIND
from deploylens.predict import predict, predict_profile
from deploylens.predict.calibrated import context_factor, context_kernel_seconds, kernel_overhead
from deploylens.predict.roofline import roofline_time
from deploylens.predict.timeline import Timeline

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


def conv_unit(c: int = 16) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()).eval()


def test_calibrated_prediction_uses_the_measured_rates():
    # one pointwise conv unit: the single calibration point's 100 GFLOP/s applies
    prediction = predict_profile(analyze(conv_unit(), (1, 16, 32, 32)), fake_profile())
    (k,) = prediction.kernels
    assert k.kernel_class == "conv_pointwise" and prediction.target == "this"
    assert k.compute_ms == pytest.approx(k.flops / 1e11 * 1e3)
    assert k.memory_ms == pytest.approx(k.bytes / 1e10 * 1e3)  # the copy class: 10 GB/s


def test_a_profile_calibrated_on_another_host_says_so():
    profile = analyze(nn.Sequential(nn.Conv2d(16, 16, 1), nn.ReLU()).eval(), (1, 16, 32, 32))

    def notes(node: str | None) -> list[str]:
        return predict_profile(profile, fake_profile(machine=Machine("x", node=node))).notes

    (elsewhere,) = [note for note in notes("gpu-host-7") if "calibrated on host" in note]
    assert f"calibrated on host gpu-host-7, predicted on {platform.node()}" in elsewhere
    assert not [note for note in notes(platform.node()) + notes(None) if "calibrated on host" in note]


def test_a_profile_calibrated_in_a_busy_spell_says_so():
    profile = analyze(nn.Sequential(nn.Conv2d(16, 16, 1), nn.ReLU()).eval(), (1, 16, 32, 32))

    def busy_notes(quiet_share: float | None) -> list[str]:
        probe = Probe(1e-4, 0.1, quiet_share, 0.45) if quiet_share is not None else None
        return [note for note in predict_profile(profile, fake_profile(probe=probe)).notes if "host was busy" in note]

    (busy,) = busy_notes(0.03)
    assert "only 3.0% of its cases timed quiet" in busy and "--combine" in busy
    assert not busy_notes(BUSY_QUIET_SHARE) + busy_notes(0.5) + busy_notes(None)  # quiet, or no probe


def test_conv_geometry_and_channel_alignment_by_hand():
    from deploylens.hardware.local import vector_lanes

    model = nn.Conv2d(32, 64, 3, stride=2, padding=1, groups=2).eval()
    (layer,) = analyze(model, (4, 32, 56, 56)).layers
    assert conv_geometry_of(layer) == {"c_in": 32, "c_out": 64, "groups": 2, "kernel": 3, "stride": 2,
                                       "pixels": 4 * 28 * 28}
    assert conv_geometry_of(analyze(nn.ReLU(), (1, 8)).layers[0]) is None
    alignment = channel_alignment
    # whole 16-float vectors: 2; multiples of 4 (padded to whole blocks): 1; else 0
    assert [alignment(112, 112, 1, 16), alignment(116, 116, 1, 16), alignment(112, 120, 1, 16)] == [2, 1, 1]
    assert [alignment(58, 58, 1, 16), alignment(112, 58, 1, 16), alignment(3, 24, 1, 16)] == [0, 0, 0]
    # depthwise: the channel count alone; grouped: both per-group counts (80 and 20)
    assert [alignment(144, 144, 144, 16), alignment(116, 116, 116, 16), alignment(58, 58, 58, 16)] == [2, 1, 0]
    assert [alignment(240, 240, 3, 16), alignment(60, 60, 3, 16)] == [2, 1]
    assert alignment(116, 116, 1, 4) == 2 and alignment(3, 17, 1, 1) == 2
    assert [vector_lanes(isa) for isa in (["avx2", "avx512f"], ["avx", "avx2"], ["asimd"], [])] == [16, 8, 4, 1]


def test_a_conv_takes_the_rate_of_the_nearest_geometry():
    # two calibrated pointwise convs of equal FLOPs: 112 channels at 100 GFLOP/s, 116 at 50
    def point(c, seconds):
        return CalibrationPoint(str(c), 10**8, 10**6, seconds, [1, c, 28, 28], conv_geometry(c, c, 1, 1, 1, 28 * 28))

    profile = fake_profile()
    profile.points["conv_pointwise"] = [point(112, 1e-3), point(116, 2e-3)]
    for c, rate in ((112, 1e11), (116, 5e10), (120, 5e10)):  # 120: misaligned like 116, not like 112
        (k,) = predict_profile(analyze(conv_unit(c), (1, c, 28, 28)), profile).kernels
        assert k.compute_ms == pytest.approx(k.flops / rate * 1e3, rel=0.01)


def test_onnxruntime_runs_slicing_as_copies():
    class Split(nn.Module):
        def forward(self, x):
            a, b = x.chunk(2, dim=1)
            return torch.cat([a[:, :3], b[:, :]], 1)  # b[:, :] spans the whole dimension: aten.alias

    profile = analyze(Split(), (1, 8, 4, 4))
    copies = [k.bytes for k in predict_profile(profile, fake_profile(), "onnxruntime").kernels
              if k.kind == "data_movement"]
    # split: a Slice per 4x4x4 half, each read and written; slice: 3x4x4; alias: 4x4x4; cat: 7x4x4 in and out
    assert sorted(copies) == sorted([2 * 64 * 4, 2 * 64 * 4, 2 * 48 * 4, 2 * 64 * 4, 2 * 112 * 4])
    torch_kernels = predict_profile(profile, fake_profile(), "torch").kernels
    assert [k.kind for k in torch_kernels] == ["data_movement"]  # only the cat: slicing is a view in PyTorch


def test_onnxruntime_fuses_what_it_fuses_and_runs_the_rest_as_kernels():
    class Block(nn.Module):  # conv-BN-ReLU + residual add: one blocked conv; conv-BN-SiLU: a conv and a QuickGelu
        def __init__(self):
            super().__init__()
            self.first = conv_unit()
            self.second = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16), nn.SiLU())

        def forward(self, x):
            return self.second(x + self.first(x)).mean((2, 3))

    profile = analyze(Block().eval(), (1, 16, 8, 8))
    ort = predict_profile(profile, fake_profile(), "onnxruntime").kernels
    assert [(k.kind, k.kernel_class) for k in ort] == [
        ("conv", "conv_pointwise"), ("conv", "conv_pointwise"), ("activation", "transcendental"), ("reduce", "pool")]
    silu = ort[2]  # reads and writes its 16x8x8 float32 tensor
    assert silu.bytes == 2 * 16 * 64 * 4 and silu.memory_ms == pytest.approx(silu.bytes / 1e10 * 1e3)
    # torch eager: both conv units take their activation; the residual add is a kernel of its own
    eager = predict_profile(profile, fake_profile(), "torch").kernels
    assert [k.kernel_class for k in eager] == ["conv_pointwise", "elementwise", "conv_pointwise", "pool"]
    # without transcendental points (a torch calibration) the SiLU takes the element-wise ones
    plain = fake_profile()
    plain.points["transcendental"] = []
    assert predict_profile(profile, plain, "onnxruntime").kernels[2].kernel_class == "elementwise"


def test_onnxruntime_slicing_copies_take_the_slice_points_where_calibrated():
    class Halves(nn.Module):
        def forward(self, x):
            a, b = x.chunk(2, dim=1)
            return torch.cat([b, a], 1)

    profile = analyze(Halves(), (1, 8, 4, 4))
    slow = fake_profile()
    slow.points["slice"] = [CalibrationPoint("s", 0, 10**6, 1e-3, [1, 32, 8192])]  # 1 GB/s
    kernels = predict_profile(profile, slow, "onnxruntime").kernels
    assert sorted(k.kernel_class for k in kernels) == ["copy", "slice", "slice"]  # the chunk's two halves: a Slice each
    for k in kernels:  # the halves at 1 GB/s, the cat at the copy points' 10
        assert k.memory_ms == pytest.approx(k.bytes / (1e9 if k.kernel_class == "slice" else 1e10) * 1e3)
    no_slices = replace(slow, points={**slow.points, "slice": []})
    assert {k.kernel_class for k in predict_profile(profile, no_slices, "onnxruntime").kernels} == {"copy"}


def test_the_call_overhead_is_paid_once_and_the_kernel_overhead_per_kernel():
    profile = fake_profile(overhead_s=Overheads(kernel=1e-6, call=15e-6))
    prediction = predict_profile(analyze(conv_unit(), (1, 16, 32, 32)), profile)
    (k,) = prediction.kernels
    assert k.overhead_ms == pytest.approx(1e-3)
    assert prediction.totals["call_overhead_ms"] == pytest.approx(15e-3)
    assert prediction.totals["latency_ms"] == pytest.approx(k.time_ms + 15e-3)


def test_context_factor_interpolates_in_log_batch():
    calibration = fake_profile(context_factor={"1": 2.0, "8": 0.5})
    assert context_factor(calibration, 1) == 2.0 and context_factor(calibration, 8) == 0.5
    assert context_factor(calibration, 32) == 0.5
    # batch 2 is a third of the way from 1 to 8 in log space: 2 * (0.25 ** (1/3))
    assert context_factor(calibration, 2) == pytest.approx(2.0 * 0.25 ** (1 / 3))
    assert context_factor(fake_profile(context_factor={}), 4) == 1.0


def test_the_per_kernel_cost_fades_in_log_batch_and_every_kernel_pays_it():
    # the per-kernel cost fades linearly in log batch: a third of the way from 1 to 8 at batch 2
    profile = fake_profile(context_kernel_s={"1": 30e-6, "8": 0.0})
    assert context_kernel_seconds(profile, 1) == 30e-6 and context_kernel_seconds(profile, 8) == 0.0
    assert context_kernel_seconds(profile, 2) == pytest.approx(20e-6)
    analysis = analyze(conv_unit(), (1, 16, 32, 32))
    (bare,) = predict_profile(analysis, fake_profile()).kernels
    (paid,) = predict_profile(analysis, profile).kernels
    assert paid.overhead_ms == pytest.approx(bare.overhead_ms + 0.03)


def test_calibrated_rates_never_beat_the_peak():
    capped = fake_profile(peak_flops=1e10)  # below the points' 100 GFLOP/s
    (k,) = predict_profile(analyze(conv_unit(), (1, 16, 32, 32)), capped).kernels
    assert k.compute_ms == pytest.approx(k.flops / 1e10 * 1e3)


def test_the_whole_network_factor_fades_near_the_compute_ceiling():
    profile = analyze(conv_unit(), (1, 16, 32, 32))
    # the point runs 100 GFLOP/s alone; kernels inside a network run 2x as long
    slow = fake_profile(context_factor={"1": 2.0})
    (at_ceiling,) = predict_profile(profile, replace(slow, peak_flops=1e11)).kernels
    assert at_ceiling.compute_ms == pytest.approx(at_ceiling.flops / 1e11 * 1e3)  # as fast as alone
    # a quarter of the ceiling alone: three quarters of the factor's effect, 2 ** 0.75
    (below,) = predict_profile(profile, replace(slow, peak_flops=4e11)).kernels
    assert below.compute_ms == pytest.approx(below.flops / 1e11 * 2 ** 0.75 * 1e3)
    # memory-bound classes take the whole factor: the copy class's 10 GB/s halved
    assert below.memory_ms == pytest.approx(below.bytes / 5e9 * 1e3)


def test_a_class_without_points_is_one_error_line():
    profile = fake_profile()
    profile.points["conv_pointwise"] = []
    with pytest.raises(UserError, match="no conv_pointwise points"):
        predict_profile(analyze(conv_unit(), (1, 16, 8, 8)), profile)


def test_bad_targets():
    with pytest.raises(UserError, match="unknown target 'nope'; one of: mobile-cpu, npu, nvidia-gpu, this, "
                                        "amd_epyc_9654"):
        predict("resnet18", "nope")
    with pytest.raises(UserError, match="no sourced memory bandwidth"):
        predict("resnet18", "horizon_sunrise_x3", dtype="int8")
    with pytest.raises(UserError, match=r"horizon_journey3 has no fp32 peak in the catalog \(has: int8\)"):
        predict("resnet18", "horizon_journey3", dtype="float32")


def test_predict_takes_every_target_lint_takes_in_the_same_precision():
    from deploylens.lint import lint

    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 64, 1)).eval()
    for target, dtype, device in (("npu", "int8", "rockchip_rk3588_npu"), ("nvidia-gpu", "fp16", "nvidia_t4"),
                                  ("mobile-cpu", "fp32", "snapdragon_855"), ("nvidia_t4", "fp16", None),
                                  ("horizon_journey3", "int8", None)):
        prediction = predict(model, target, input_shape=(1, 3, 32, 32))
        assert (prediction.target, prediction.dtype) == (target, dtype)
        assert prediction.totals["latency_ms"] == pytest.approx(
            lint(model, target, (1, 3, 32, 32)).summary["predicted_ms"], rel=1e-12)
        assert (f"{target}: numbers from {device} (catalog)" in prediction.notes) is (device is not None)
    # asked for, a precision is the one costed: INT8 on the T4 is the lint --int8 target
    assert predict(model, "nvidia-gpu", dtype="int8", input_shape=(1, 3, 32, 32)).totals["latency_ms"] == \
        pytest.approx(lint(model, "nvidia-gpu", (1, 3, 32, 32), int8=True).summary["predicted_ms"], rel=1e-12)


def test_predict_never_calibrates(monkeypatch, tmp_path):
    monkeypatch.setenv("DEPLOYLENS_CALIBRATION_DIR", str(tmp_path))
    with pytest.raises(UserError, match="no calibration of this machine.*run `deploylens hw calibrate --backend "
                                        "onnxruntime --threads 3 --device cpu --dtype fp32`"):
        predict("resnet18", "this", "onnxruntime", threads=3)
    with pytest.raises(UserError, match="deploylens hw calibrate"):
        predict("resnet18", "this")
    assert not list(tmp_path.iterdir())  # nothing written


def test_timeline_serial_and_overlapped_by_hand():
    # launches of 5 ms each; kernels of 1, 10 and 1 ms
    serial, overlapped = Timeline(0.0, overlapped=False), Timeline(0.0, overlapped=True)
    assert [serial.add(body, 5.0) for body in (1.0, 10.0, 1.0)] == [6.0, 15.0, 6.0]
    # the GPU waits for the first launch (5 + 1), runs the second from 10 to 20 while the
    # third is launched at 15, and runs the third at once after it: 21
    assert [overlapped.add(body, 5.0) for body in (1.0, 10.0, 1.0)] == [6.0, 14.0, 1.0]
    assert (serial.finished, overlapped.finished) == (27.0, 21.0)


def test_a_gpu_calibration_overlaps_launches_with_kernels():
    # two conv-BN-ReLU units (3 eager ops each, 10 us per op launch) on a fake GPU profile
    analysis = analyze(nn.Sequential(conv_unit(), conv_unit()).eval(), (1, 16, 32, 32))
    gpu = fake_profile(device="cuda", vector_lanes=8, overhead_s=Overheads(kernel=1e-6, call=2e-5))
    for points in gpu.points.values():
        for p in points:
            p.launch_per_op_s = 1e-5
    fast = predict_profile(analysis, gpu)
    first, second = fast.kernels
    assert first.overhead_ms == pytest.approx(0.03) and first.compute_ms < 0.03
    # launch-bound: the total is the six launches, the last kernel and the call
    assert fast.totals["latency_ms"] == pytest.approx(0.06 + max(second.compute_ms, second.memory_ms) + 0.02)
    assert [k.bound for k in fast.kernels] == ["overhead", "overhead"]
    # the whole-network factor scales launches and kernels alike: the timeline doubles
    doubled = predict_profile(analysis, replace(gpu, context_factor={"1": 2.0}))
    assert doubled.totals["latency_ms"] - 0.02 == pytest.approx(2 * (fast.totals["latency_ms"] - 0.02))
    # kernel-bound (points 1000x slower): the second launch hides behind the first kernel
    slow_points = copy.deepcopy(gpu)
    for points in slow_points.points.values():
        points[0].seconds *= 1000
    slow = predict_profile(analysis, slow_points)
    bodies = [max(k.compute_ms, k.memory_ms) for k in slow.kernels]
    assert slow.totals["latency_ms"] == pytest.approx(0.03 + sum(bodies) + 0.02)
    assert slow.kernels[1].time_ms == pytest.approx(bodies[1])


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
    reorders = [k for k in added_kernels(ShuffledConvs().eval(), [(2, 3, 8, 8)], threads=1)
                if k.kind == "data_movement"]
    if not reorders:
        pytest.skip("ONNX Runtime runs no channel-blocked (NCHWc) convs on this CPU")
    # out of the first conv (to be sliced), into the second (the concat) and out of it (the
    # graph's output is plain NCHW): 2x16x8x8 float32 elements each, read and written
    assert sorted(k.name.split(":")[0] for k in reorders) == ["ReorderInput", "ReorderOutput", "ReorderOutput"]
    assert all(k.bytes_read == k.bytes_written == 2 * 16 * 8 * 8 * 4 and k.complete for k in reorders)
    # a prediction for ONNX Runtime on this machine costs them as copies; torch eager has none
    profile = fake_profile(backend="onnxruntime")
    prediction = predict(ShuffledConvs().eval(), "this", "onnxruntime", 2, input_shape=(1, 3, 8, 8),
                         calibration=profile)
    copies = [k for k in prediction.kernels if k.name.startswith("Reorder")]
    assert len(copies) == 3 and all(k.kernel_class == "reorder" and k.time_ms > 0 for k in copies)
    no_reorder_points = replace(profile, points={**profile.points, "reorder": []})
    plain = predict(ShuffledConvs().eval(), "this", "onnxruntime", 2, input_shape=(1, 3, 8, 8),
                    calibration=no_reorder_points)
    assert [k.kernel_class for k in plain.kernels if k.name.startswith("Reorder")] == ["copy"] * 3
    eager = predict(ShuffledConvs().eval(), "this", "torch", 2, input_shape=(1, 3, 8, 8), calibration=fake_profile())
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
    from deploylens.calibration.sessions import case_runner

    optimized = str(tmp_path / "optimized.onnx")
    for length in (2, 10):
        case_runner("onnxruntime", None, [torch.randn(3, 4)], 1, str(tmp_path), shape_chain_onnx(length),
                    optimized=optimized)
        kinds = shape_arithmetic_nodes(optimized)
        # Shape, Gather, the chain of Mul and Div, Unsqueeze, Concat; the Reshape works on data
        assert sorted(kinds) == sorted(["Shape", "Gather", "Unsqueeze", "Concat"] + ["Mul", "Div"] * (length // 2))


def test_onnxruntime_shape_arithmetic_costs_a_kernel_overhead_each():
    added = added_kernels(ChannelShuffle().eval(), [(2, 3, 8, 8)], threads=1)
    shape_kernels = [k for k in added if k.kind == SHAPE_KIND]
    # a dynamic-batch export computes the batch size of both views at run time
    assert shape_kernels and all(k.bytes == 0 and k.flops == 0 and k.complete for k in shape_kernels)
    # with the batch fixed in the model (a plain conv), nothing computes on shapes
    assert not [k for k in added_kernels(nn.Conv2d(3, 8, 1).eval(), [(2, 3, 8, 8)], threads=1)
                if k.kind == SHAPE_KIND]
    # each costs the per-kernel overhead inside a network: 2 us x factor 1.5 + 3 us = 6 us
    profile = fake_profile(backend="onnxruntime", context_factor={"1": 1.5}, context_kernel_s={"1": 3e-6},
                           overhead_s=Overheads(kernel=2e-6))
    assert kernel_overhead(profile, 1) == pytest.approx(6e-6)
    prediction = predict(ChannelShuffle().eval(), "this", "onnxruntime", 1, input_shape=(1, 3, 8, 8),
                         calibration=profile)
    costed = [k for k in prediction.kernels if k.kernel_class == SHAPE_KIND]
    assert len(costed) == len(shape_kernels)
    assert all(k.compute_ms == k.memory_ms == 0 and k.time_ms == pytest.approx(6e-3) for k in costed)
    # torch eager computes view sizes in Python: no such kernels
    eager = predict(ChannelShuffle().eval(), "this", "torch", 1, input_shape=(1, 3, 8, 8), calibration=fake_profile())
    assert not [k for k in eager.kernels if k.kernel_class == SHAPE_KIND]

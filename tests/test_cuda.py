"""The CUDA paths on a real GPU: CUDA events, NVML, the catalog match of this GPU and the
GPU calibration. They skip where no GPU is visible (CI); run them where one is."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from deploylens import analyze
from deploylens.bench.harness import bench
from deploylens.bench.runner import StopRule
from deploylens.calibration import calibrate
from deploylens.bench.backends import BACKENDS
from deploylens.dtypes import analysis_name
from deploylens.hardware.local import this_gpu
from deploylens.hardware.spec import load_catalog
from deploylens.predict import predict, predict_profile

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")
QUICK = StopRule(warmup_iters=2, warmup_time=0.01, min_iters=5, min_time=0.05, max_time=0.3)


def conv_unit(c: int = 32) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()).eval()


def test_bench_on_cuda_times_with_events_and_samples_nvml():
    (b1, b8) = bench(conv_unit(), ["torch"], [1, 8], device="cuda", input_shape=(1, 32, 56, 56), rule=QUICK)
    for result in (b1, b8):
        assert result.device == "cuda" and result.device_p50_ms > 0
        # CUDA events and the host clock time the same blocks: they agree within 2x
        assert 0.5 < result.device_p50_ms / result.p50_ms < 2.0
        gpu = result.gpu
        assert gpu["achieved_tflops"] > 0 and gpu["achieved_gbs"] > 0
        if this_gpu(load_catalog()) is not None:
            assert 0 < gpu["fraction_of_peak_bandwidth"] < 1.5 and gpu["catalog_entry"].startswith("nvidia_")
        if "gpu_util_mean" in gpu:  # NVML present
            assert 0 <= gpu["gpu_util_mean"] <= 100 and gpu["samples"] >= 1 and gpu["sm_clock_mhz_mean"] > 0
    assert b8.p50_ms < 8 * b1.p50_ms  # a batch of 8 is not 8 times a batch of 1 on a GPU


class Recorder(nn.Module):
    """A conv unit that copies its result into a buffer, where a graph replay leaves it."""

    def __init__(self):
        super().__init__()
        self.unit = conv_unit()
        self.register_buffer("out", torch.zeros(2, 32, 16, 16))

    def forward(self, x):
        self.out.copy_(self.unit(x))
        return self.out


def test_a_cuda_graph_replays_the_model():
    model, x = Recorder().cuda().eval(), torch.randn(2, 32, 16, 16, device="cuda")
    replay = BACKENDS["torch-cudagraph"].prepare(model, [x], 1, "cuda", "fp32").run  # the inputs it captured: x
    for _ in range(2):  # a new input in the captured buffer: the replay computes it again
        x.copy_(torch.randn_like(x))
        with torch.no_grad():
            expected = model.unit(x)
        model.out.zero_()
        replay()
        torch.cuda.synchronize()
        assert torch.allclose(model.out, expected, atol=1e-2)  # TF32 convs: both runs round alike, not bit-equal


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_gpu_calibration_runs_and_predicts(dtype):
    profile = calibrate("torch", threads=1, max_flops=2e7, device="cuda", dtype=dtype, budget_s=20,
                        styles=("residual", "separable"))
    assert (profile.device, profile.dtype, profile.vector_lanes, profile.budget_s) == ("cuda", dtype, 8, 20)
    assert profile.machine.gpu == torch.cuda.get_device_name(0) and profile.probe is None
    assert profile.overhead_s.in_points == 0.0 and profile.overhead_s.kernel > 0
    assert profile.peak_flops is None  # TF32 and fp16 tensor cores run above the fp32 peak: no ceiling
    # every point: the GPU's time of a graph replay, and the CPU's launch cost per eager op
    points = [p for points in profile.points.values() for p in points]
    assert points and all(p.seconds > 0 and p.launch_per_op_s > 0 for p in points)
    # batched cases, unless the budget left them untimed (the profile lists what it skipped)
    assert {p.geometry["pixels"] for p in profile.points["conv_pointwise"]} & {16 * 7 * 7} or profile.skipped
    assert set(profile.context_factor) == {"1", "8"}
    prediction = predict("mobilenet_v2_050", "this", batch=4, dtype=analysis_name(dtype),
                         input_shape=(1, 3, 96, 96), calibration=profile)
    assert prediction.totals["latency_ms"] > 0 and prediction.totals["complete"]
    # overlapped: the total is below the serial sum of launches and kernels
    serial = sum(k.overhead_ms + max(k.compute_ms, k.memory_ms) for k in prediction.kernels)
    assert prediction.totals["latency_ms"] - prediction.totals["call_overhead_ms"] <= serial + 1e-9
    one = predict_profile(analyze(conv_unit(), (1, 32, 56, 56), analysis_name(dtype)), profile)
    assert one.kernels[0].kernel_class == "conv_dense"

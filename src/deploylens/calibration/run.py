"""Calibration: micro-benchmarks of each kernel class at several sizes on this machine,
stored as a versioned JSON profile that ``predict --target this`` reads.

Each case is a small PyTorch module; the onnxruntime backend runs the same case
exported to ONNX, so both backends are calibrated by one set of definitions. The
analyzer costs each case exactly as it costs a model's kernels (fused view), so a
calibration point and a model kernel are described by the same numbers.

On a CUDA GPU (torch backend) a case is replayed as a CUDA graph, so that its time is
the GPU's alone; what launching its ops eagerly costs the CPU is measured apart (the host
time of eager calls launched back to back, per op), and the predictor overlaps the two, as
the GPU runs behind the CPU that launches.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from deploylens.bench import malloc
from deploylens.hardware.local import cpu_info
from deploylens.bench.interference import (
    InterferenceProbe,
    adjusted_median,
    pooled,
    quiet_median,
    quiet_samples,
)
from deploylens.bench.runner import StopRule, measure, quietest
from deploylens.errors import UserError
from deploylens.hardware.local import this_cpu, vector_lanes

FORMAT, VERSION = "deploylens-calibration", 11
CLASSES = ("conv_dense", "conv_pointwise", "conv_depthwise", "conv_grouped", "matmul", "elementwise", "pool", "copy",
           "reorder", "slice", "transcendental")
# classes whose rate is FLOP/s; the others are memory-bound and their rate is bytes/s
COMPUTE_CLASSES = frozenset({"conv_dense", "conv_pointwise", "conv_depthwise", "conv_grouped", "matmul"})
# one round of one case: short, until its samples adjusted to the probe's quiet level are
# stable; the rounds spread it in time
QUICK = StopRule(warmup_iters=2, warmup_time=0.01, min_iters=5, min_time=0.02, max_time=0.1, ci_target=0.05)
# a synthetic network's round (see _ContextNet): longer, exempt from the budget's shrinking,
# since each batch's whole-network factor rests on eleven of them. Measured here: quick
# rounds of one network between the cases scattered by up to 2.8x (ONNX Runtime, 1.6 to
# 5.5 ms), and a calibration's network timings differed from `bench`'s by -14% to +150%.
# 0.15-0.3 s (0.25-0.5 s with five networks): the 66 rounds take ~29 s of the budget.
NETWORK = StopRule(warmup_iters=3, warmup_time=0.05, min_iters=5, min_time=0.15, max_time=0.3, ci_target=0.02)
ROUNDS = 3
# a calibration with fewer of its cases timed quiet ran in a busy spell: measured here,
# quiet calibrations had 16-56% of their cases quiet, one with 3% predicted every model +82%
BUSY_QUIET_SHARE = 0.10
DEVICES = ("cpu", "cuda")
# tensor cores take channel counts in multiples of 8 (NVIDIA's deep learning performance guide)
GPU_CHANNEL_MULTIPLE = 8
_TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class DeviceSetting:
    """How a device is calibrated: case sizes up to ``max_flops`` and ``max_elements`` of
    activations, at ``batches``, in ``rounds`` passes, within ``budget_s`` seconds in all
    (None: no bound). Beyond the first batch size only the classes in ``batched_classes``
    (None: all), their convs only with outputs ``batched_min_hw`` wide or more, or 1x1 (a
    squeeze-excite's convs, whose time is the unit's fixed cost)."""
    max_flops: float
    batches: tuple[int, ...]
    max_elements: int
    rounds: int
    budget_s: float | None = None
    batched_classes: frozenset[str] | None = None
    batched_min_hw: int = 0


# activations beyond 2**23 elements are larger than any zoo layer's at batch 1 and would
# only spend a CPU calibration's time. On a CPU, batch 8 for the convs whose speed per
# FLOP changes with the batch: measured here on the zoo's conv units timed alone, dense and
# pointwise convs at batch 8 ran 10-25% faster per FLOP than batch-1 cases of as many
# output pixels (the zoo's batch-8 conv time per model predicted from batch-1 cases: median
# +15.5%; with these cases +3.6%), depthwise and grouped ones and small outputs did not
# gain from theirs (depthwise batch-8 cases again on session 10's sweep: torch 57.3% of
# rows within 10% with or without them, ONNX Runtime 57.3% with, 59.8% without).
# A GPU approaches its peak only on batched work, and is not shared the way this VM's
# cores are: one round. A CPU calibration ends within two minutes however busy the host
# is: the budget holds the whole run (costing the cases, the synthetic networks, the
# derived figures); a busy spell makes every case run to its time cap, and the cap shrinks
# to fit what is left (see Budget); past it, later rounds stop (every case has its first).
# Measured here (`time deploylens hw calibrate`): 108 s for torch, 107-109 s for ONNX Runtime;
# with a budget for the cases alone, ONNX Runtime's run had taken 130-136 s in busy spells.
SETTINGS = {"cpu": DeviceSetting(4e9, (1, 8), 2**23, ROUNDS, budget_s=105.0,
                                 batched_classes=frozenset({"conv_dense", "conv_pointwise", "matmul", "elementwise",
                                                            "pool", "copy", "reorder", "slice", "transcendental"}),
                                 batched_min_hw=14),
            "cuda": DeviceSetting(4e10, (1, 16), 64_000_000, 1)}
# what the budget keeps for the derived figures after the rounds (the whole-network fits;
# measured here: 2.3-3.0 s)
DERIVE_S = 3.0


@dataclass(frozen=True)
class Case:
    kernel_class: str
    label: str
    build: Callable[[], nn.Module]
    shapes: tuple[tuple[int, ...], ...]
    geometry: dict | None = None  # a conv's c_in, c_out, groups, kernel, stride, pixels (see conv_geometry)
    onnx: Callable[[], bytes] | None = None  # the graph ONNX Runtime runs, when it is not the module's export
    cost: tuple[int, int, int] | None = None  # FLOPs, bytes, ops, when the analyzer cannot see them


class _Add(nn.Module):
    def forward(self, a, b):
        return a + b


class _Cat(nn.Module):
    def forward(self, a, b):
        return torch.cat([a, b], dim=1)


def _conv_bn_relu(c_in: int, c_out: int, k: int, stride: int, groups: int) -> Callable[[], nn.Module]:
    # conv + BN + ReLU: one kernel after fusion (ONNX Runtime), three ops in torch eager
    return lambda: conv_unit(c_in, c_out, k, stride, groups)


def _conv_flops(c_in: int, c_out: int, k: int, hw: int, stride: int, groups: int) -> int:
    return 2 * c_out * (c_in // groups) * k * k * (hw // stride) ** 2


def conv_geometry(c_in: int, c_out: int, groups: int, kernel: int, stride: int, pixels: int) -> dict:
    """What a conv's speed depends on beyond its FLOPs: channels, groups, kernel size,
    stride and output pixels (batch x height x width: the GEMM's M dimension)."""
    return {"c_in": c_in, "c_out": c_out, "groups": groups, "kernel": kernel, "stride": stride, "pixels": pixels}


def channel_alignment(c_in: int, c_out: int, groups: int, lanes: int) -> int:
    """How well a conv's channels fit the SIMD vectors (``lanes`` fp32 each), counting the
    depthwise channel count or both per-group counts of any other conv: 2 when they fill
    whole vectors; 1 when they are multiples of 4, which a channel-blocked runtime pads to
    whole vectors; 0 otherwise. Measured here (AVX-512): 1.2-2.4x the time per FLOP at 1
    (e.g. 116 vs 112 channels), and ONNX Runtime keeps a depthwise conv at 0 out of its
    blocked layout: 58 channels ran at 11-12 GFLOP/s, 64 or 92 at 30-32."""
    counts = (c_in,) if groups > 1 and groups == c_in else (c_in // groups, c_out // groups)
    if all(c % lanes == 0 for c in counts):
        return 2
    return 1 if all(c % 4 == 0 for c in counts) else 0


def _at_batches(setting: DeviceSetting, kernel_class: str, label: str, build: Callable[[], nn.Module],
                shapes: tuple[tuple[int, ...], ...], flops: int = 0, geometry: Callable[[int], dict] | None = None,
                activations: int = 0, output_hw: int | None = None,
                onnx: Callable[[int], Callable[[], bytes]] | None = None,
                cost: Callable[[int], tuple[int, int, int]] | None = None) -> list[Case]:
    """A case at every batch size of ``setting`` its limits allow: ``shapes`` at batch 1;
    ``flops`` and ``activations`` (elements of the input, and of a conv's output, checked
    against the setting's limit) per batch item; a conv's ``output_hw`` (see
    DeviceSetting); ``geometry``, ``onnx`` and ``cost`` (see Case) made for a batch size."""
    batched = ((setting.batched_classes is None or kernel_class in setting.batched_classes)
               and (output_hw is None or output_hw >= setting.batched_min_hw or output_hw == 1))
    return [Case(kernel_class, f"{label} b{batch}", build, tuple((batch * s[0], *s[1:]) for s in shapes),
                 geometry(batch) if geometry else None, onnx(batch) if onnx else None, cost(batch) if cost else None)
            for batch in (setting.batches if batched else setting.batches[:1])
            if flops * batch <= setting.max_flops and activations * batch <= setting.max_elements]


def cases(setting: DeviceSetting = SETTINGS["cpu"], lanes: int = 16) -> list[Case]:
    """The calibration set: sizes that span the zoo's layers, with channel counts that are
    multiples of ``lanes`` and, for a sparser grid, counts that are not (about 400 cases
    on a CPU), each case at every batch size of ``setting`` its limits allow."""
    made: list[Case] = []

    def add(*args, **kwargs) -> None:
        made.extend(_at_batches(setting, *args, **kwargs))

    def conv(kernel_class: str, c_in: int, c_out: int, k: int, hw: int, stride: int = 1, groups: int = 1):
        flops = _conv_flops(c_in, c_out, k, hw, stride, groups)
        # smaller convs are all overhead, whatever their shape: the 1x1 maps below time it
        if flops >= 2e5 or hw == 1:
            add(kernel_class, f"conv{k}x{k} {c_in}->{c_out} g{groups} s{stride} @{hw}",
                _conv_bn_relu(c_in, c_out, k, stride, groups), ((1, c_in, hw, hw),), flops,
                lambda batch: conv_geometry(c_in, c_out, groups, k, stride, batch * (hw // stride) ** 2),
                c_in * hw * hw + c_out * (hw // stride) ** 2, hw // stride)

    def misaligned(channels: tuple[int, ...]) -> tuple[int, ...]:
        # every other count, moved off the vector width: by half of it (still a multiple of
        # 4, alignment 1) or by 6 (alignment 0): the counts width multipliers produce (24,
        # 40, 58, 116, ...)
        return tuple(c + (lanes // 2 if i % 4 == 0 else -6) for i, c in enumerate(channels) if i % 2 == 0)

    dense, pointwise, depthwise = (16, 32, 64, 128, 256, 512), (16, 32, 64, 96, 160, 256, 512), \
        (16, 32, 96, 144, 384, 960)
    for hw in (7, 14, 28, 56, 112):
        for c in dense + (misaligned(dense) if lanes > 1 else ()):
            conv("conv_dense", c, c, 3, hw)
            conv("conv_dense", c, 2 * c, 3, hw, stride=2)
        for c in pointwise + (misaligned(pointwise) if lanes > 1 else ()):
            conv("conv_pointwise", c, c, 1, hw)
            conv("conv_pointwise", c, 6 * c, 1, hw)
            conv("conv_pointwise", 6 * c, c, 1, hw)
        for c in pointwise:  # a shortcut's downsampling (ResNet, RepVGG): measured 15-30% slower than stride 1
            conv("conv_pointwise", c, 2 * c, 1, hw, stride=2)
        for c in depthwise + (misaligned(depthwise) if lanes > 1 else ()):
            conv("conv_depthwise", c, c, 3, hw, groups=c)
            conv("conv_depthwise", c, c, 5, hw, groups=c)
            conv("conv_depthwise", c, c, 3, hw, stride=2, groups=c)
        for c in depthwise:  # a per-channel scale (MobileOne's 1x1 branch): 1/9 of a 3x3's FLOPs, memory-bound
            conv("conv_depthwise", c, c, 1, hw, groups=c)
        for c, g in ((60, 3), (120, 3), (240, 3), (128, 2), (256, 4), (512, 4)):
            conv("conv_grouped", c, c, 1, hw, groups=g)
            conv("conv_grouped", c, c, 3, hw, groups=g)
        for c in (60, 120, 240):  # a grouped bottleneck's expand and reduce (ShuffleNet's 1x1s)
            conv("conv_grouped", c, 4 * c, 1, hw, groups=3)
            conv("conv_grouped", 4 * c, c, 1, hw, groups=3)
    for c in (16, 64, 240, 960):  # a squeeze-excite block's convs on 1x1 maps: a conv unit's fixed cost
        conv("conv_pointwise", c, c // 4, 1, 1)
        conv("conv_pointwise", c // 4, c, 1, 1)
    for c_out, k in ((32, 3), (64, 7), (24, 3), (16, 3), (48, 3)):  # stems on 3 channels, every batch size
        add("conv_dense", f"stem conv{k}x{k} 3->{c_out} s2 @224", _conv_bn_relu(3, c_out, k, 2, 1),
            ((1, 3, 224, 224),), 0, lambda batch, c=c_out, k=k: conv_geometry(3, c, 1, k, 2, batch * 112 * 112),
            3 * 224 * 224 + c_out * 112 * 112)
    for n_in, n_out in ((512, 1000), (1024, 1000), (1280, 1000), (2048, 1000), (4096, 4096), (25088, 4096)):
        add("matmul", f"linear {n_in}->{n_out}", lambda a=n_in, b=n_out: nn.Linear(a, b), ((1, n_in),),
            activations=n_in + n_out)
    for numel in (2**10, 2**13, 2**15, 2**17, 2**19, 2**21, 2**23):
        shape = (1, 16, numel // 16)
        add("elementwise", f"relu {numel}", nn.ReLU, (shape,), activations=numel)
        add("elementwise", f"add {numel}", _Add, (shape, shape), activations=numel)
        add("copy", f"cat {2 * numel}", _Cat, (shape, shape), activations=numel)
    for c, hw in ((64, 112), (64, 56), (128, 28), (256, 14), (24, 112)):
        add("pool", f"maxpool3x3s2 {c}@{hw}", lambda: nn.MaxPool2d(3, 2, 1), ((1, c, hw, hw),),
            activations=c * hw * hw)
    # a head's pool, and a squeeze-excite's on early, larger maps
    for c, hw in ((1280, 7), (2048, 7), (512, 7), (1024, 14), (960, 7), (32, 112), (96, 56), (240, 28)):
        add("pool", f"global avgpool {c}@{hw}", lambda: nn.AdaptiveAvgPool2d(1), ((1, c, hw, hw),),
            activations=c * hw * hw)
    return made


def budgeted(rule: StopRule, seconds_left: float, measurements_left: int) -> StopRule:
    """``rule`` with its time cap cut to an equal share of the seconds left (never under
    10 ms: a case still gets its minimum samples)."""
    share = seconds_left / max(measurements_left, 1)
    return rule if share >= rule.max_time else replace(rule, min_time=min(rule.min_time, max(share, 0.01)),
                                                       max_time=max(share, 0.01))


class Budget:
    """How long each round of a case may run for a calibration to end by ``deadline``: an
    equal share of the time left after the synthetic networks' rounds still to come (each
    as long as theirs so far: they come first in each round, or first of all) and after
    what each case round costs beyond its cap (building its session, warm-up, the minimum
    samples: as much as the case rounds so far; measured here, ONNX Runtime's cases went 26 s
    past a budget that left this out)."""

    def __init__(self, deadline: float, case_rounds: int, network_rounds: int):
        self.deadline, self.cases_left, self.networks_left = deadline, case_rounds, network_rounds
        self.network_s, self.networks_done = 0.0, 0
        self.beyond_cap_s, self.cases_done = 0.0, 0

    def case_rule(self, first_round: bool, now: float) -> StopRule | None:
        """The rule of the next case round, None when out of time (a case's first round
        always runs)."""
        self.cases_left -= 1
        networks_s = self.networks_left * self.network_s / max(self.networks_done, 1)
        left_s = self.deadline - now - networks_s - (self.cases_left + 1) * self.beyond_cap_s / max(self.cases_done, 1)
        if left_s <= 0 and not first_round:
            return None
        return budgeted(QUICK, left_s, self.cases_left + 1)

    def spent(self, network: bool, seconds: float, cap: float) -> None:
        """A round took ``seconds`` under a time cap of ``cap``."""
        if network:
            self.networks_left, self.networks_done = self.networks_left - 1, self.networks_done + 1
            self.network_s += seconds
        else:
            self.cases_done += 1
            self.beyond_cap_s += max(seconds - cap, 0.0)


def _case_cost(case: Case, dtype: str) -> tuple[int, int, int]:
    """FLOPs, bytes (fused view) and the number of ops an eager call of ``case`` runs."""
    from deploylens.analysis.api import analyze

    if case.cost:
        return case.cost

    profile = analyze(case.build().eval(), list(case.shapes), dtype)
    return profile.totals.flops, profile.totals.bytes_fused, sum(1 for layer in profile.layers if layer.op != "view")


def _launch_seconds(run: Callable[[], object], sync: Callable[[], None], calls: int = 10, blocks: int = 5) -> float:
    """Host time of one eager call among calls launched back to back, as a network's ops
    are: what launching its ops costs the CPU while the GPU runs them asynchronously (the
    median over ``blocks`` blocks of ``calls`` calls, after one warm-up block)."""
    means = []
    for index in range(blocks + 1):
        sync()
        start = time.perf_counter()
        for _ in range(calls):
            run()
        if index:
            means.append((time.perf_counter() - start) / calls)
    sync()
    return statistics.median(means)


def launch_per_op(call_seconds: float, ops: int, overheads: dict[str, float]) -> float:
    """A case's launch cost per eager op, from the host time of one call of its ``ops`` ops:
    the call's own cost (``overheads["call"]``) is paid once per inference, not per op, and
    no op launches for less than an element-wise op in a chain (``overheads["kernel"]``)."""
    return max((call_seconds - overheads["call"]) / max(ops, 1), overheads["kernel"])


def _conv_relu_onnx(geometry: dict, input_shape: tuple[int, ...]) -> bytes:
    """The graph the exporter makes of an eval-mode conv-BN-ReLU (Conv with the BN folded
    into its weights and bias, then Relu), built directly: exporting ~350 conv cases one by
    one would take most of a minute of the calibration's time."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    c_in, c_out, groups, k, stride = (geometry[key] for key in ("c_in", "c_out", "groups", "kernel", "stride"))
    weight = np.random.default_rng(0).standard_normal((c_out, c_in // groups, k, k)).astype(np.float32)
    initializers = [numpy_helper.from_array(weight, "weight"),
                    numpy_helper.from_array(np.zeros(c_out, np.float32), "bias")]
    nodes = [helper.make_node("Conv", ["input0", "weight", "bias"], ["conv"], kernel_shape=[k, k], strides=[stride] * 2,
                              pads=[k // 2] * 4, group=groups),
             helper.make_node("Relu", ["conv"], ["output"])]
    graph = helper.make_graph(nodes, "case",
                              [helper.make_tensor_value_info("input0", TensorProto.FLOAT, list(input_shape))],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def shape_arithmetic_nodes(optimized: str) -> list[str]:
    """Op types of the nodes of an optimized ONNX Runtime graph (saved at ``optimized``)
    that compute on tensor shapes, not on data: Shape nodes and whatever takes only their
    results and constants. A dynamic-batch export computes a view's sizes so (ShuffleNet's
    channel shuffles: 208-273 such nodes), and each runs as a kernel of its own (measured
    here: a chain of 20 alone cost 0.33 us per node beyond a session run, the float ops of
    the per-kernel overhead's chain 0.30 us)."""
    import onnx

    graph = onnx.load(optimized).graph
    data, shapes, kinds = {port.name for port in graph.input}, set(), []
    for node in graph.node:  # topologically sorted, as ONNX requires
        inputs = [name for name in node.input if name]
        if node.op_type == "Shape" or (any(n in shapes for n in inputs) and not any(n in data for n in inputs)):
            shapes.update(node.output)
            kinds.append(node.op_type)
        else:
            data.update(node.output)
    return kinds


def _cuda_graph(model: nn.Module, inputs: list[torch.Tensor]) -> Callable[[], None]:
    """``model`` captured as a CUDA graph: its replay runs the kernels without the eager
    launch cost, so the time is the GPU's alone."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.no_grad():
        with torch.cuda.stream(stream):  # warm-up off the default stream, as capture requires
            for _ in range(3):
                model(*inputs)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(*inputs)
    return graph.replay


_NCHWC = "com.microsoft.nchwc"


def _reorders_onnx(channels: int, hw: int, batch: int) -> bytes:
    """A plain NCHW tensor into ONNX Runtime's channel-blocked layout and back: the two
    copies it puts around blocked convs wherever they meet other ops."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReorderInput", ["input0"], ["blocked"], domain=_NCHWC, channels_last=0),
             helper.make_node("ReorderOutput", ["blocked"], ["output"], domain=_NCHWC, channels=channels,
                              channels_last=0)]
    graph = helper.make_graph(nodes, "reorders",
                              [helper.make_tensor_value_info("input0", TensorProto.FLOAT, [batch, channels, hw, hw])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(_NCHWC, 1)]
                             ).SerializeToString()


class _HalfChannels(nn.Module):
    """The first 16 of 32 channels: a constant bound, so the export has no shape arithmetic."""

    def forward(self, x):
        return x[:, :16]


def blocked_layout() -> bool:
    """Whether this CPU's ONNX Runtime has the channel-blocked layout (its SIMD is wide enough)."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(_reorders_onnx(16, 4, 1), providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - the kernels are not registered: no blocked layout here
        return False
    return True


def runtime_cases(setting: DeviceSetting = SETTINGS["cpu"]) -> list[Case]:
    """Cases of what ONNX Runtime runs beyond the model's own kernels, or runs slower than
    PyTorch does: its layout copies (none where it has no blocked layout), at the zoo's
    activation sizes and at channel counts it pads to whole blocks (measured in networks
    at batch 8: 13-36 GB/s against 32-90 for batch-1 round trips of multiples of 16); a
    Slice, which copies (GhostNet's: 20-26 GB/s against mostly 38-44 for its Concats); and
    a transcendental activation it leaves unfused (SiLU: 18-33 GB/s against 37-68 for ReLU)."""
    made = []
    for c, hw in ((16, 112), (32, 112), (24, 112), (64, 56), (40, 56), (128, 28), (120, 28), (256, 14), (92, 14),
                  (512, 7), (960, 7), (64, 14)) if blocked_layout() else ():
        made += _at_batches(setting, "reorder", f"reorder {c}@{hw}", nn.Identity, ((1, c, hw, hw),),
                            activations=c * hw * hw,
                            onnx=lambda batch, c=c, hw=hw: lambda: _reorders_onnx(c, hw, batch),
                            cost=lambda batch, c=c, hw=hw: (0, 16 * batch * c * hw * hw, 2))
    for numel in (2**13, 2**15, 2**17, 2**19, 2**21, 2**23):
        made += _at_batches(setting, "slice", f"slice {numel}", _HalfChannels, ((1, 32, numel // 16),),
                            activations=2 * numel, cost=lambda batch, n=numel: (0, 8 * batch * n, 1))
        made += _at_batches(setting, "transcendental", f"silu {numel}", nn.SiLU, ((1, 16, numel // 16),),
                            activations=numel)
    return made


def nchwc_reorders(optimized: str) -> list[tuple[str, str]]:
    """(op type, the plain NCHW tensor's name) of every reorder in an optimized graph ONNX
    Runtime saved at ``optimized``."""
    import onnx

    return [(node.op_type, node.input[0] if node.op_type == "ReorderInput" else node.output[0])
            for node in onnx.load(optimized).graph.node
            if node.domain == _NCHWC and node.op_type in ("ReorderInput", "ReorderOutput")]


def boundary_reorder_bytes(optimized: str, numels: dict[str, int]) -> int:
    """Bytes of the reorders ONNX Runtime put at the boundary of a calibration case (its
    optimized graph saved at ``optimized``): each reads and writes its float32 tensor."""
    return sum(2 * 4 * numels.get(plain, 0) for _, plain in nchwc_reorders(optimized))


def case_runner(backend: str, model: nn.Module | None, inputs: list[torch.Tensor], threads: int, workdir: str,
                onnx_model: bytes | None = None, device: str = "cpu", dtype: str = "fp32", graph: bool = False,
                optimized: str | None = None):
    """A callable running ``model`` once on ``backend`` (ONNX Runtime: ``onnx_model`` when
    given, else the model's export, its optimized graph saved at ``optimized`` if given);
    on a CUDA device as eager ops or, with ``graph``, as one CUDA graph replay."""
    if backend == "torch":
        model = model.to(device=device, dtype=_TORCH_DTYPES[dtype])
        inputs = [x.to(device=device, dtype=_TORCH_DTYPES[dtype]) for x in inputs]
        if graph:
            return _cuda_graph(model, inputs)

        def run():
            with torch.inference_mode():
                model(*inputs)
        return run
    import onnxruntime as ort

    from deploylens.bench.backends import export_onnx_for_bench

    if onnx_model is None:
        path = os.path.join(workdir, "case.onnx")
        export_onnx_for_bench(model, inputs, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if optimized:
        options.optimized_model_filepath = optimized
        options.log_severity_level = 3  # the warning that a saved optimized graph fits this CPU only
    session = ort.InferenceSession(onnx_model or path, options, providers=["CPUExecutionProvider"])
    # inputs and outputs bound to buffers made once: a run returning its outputs as new
    # arrays copies them, which a kernel inside a network does not (measured here: a
    # 3x3 conv 32->32 at 112x112, 1.09 ms returning its output, 0.87-0.93 ms bound)
    names = [port.name for port in session.get_inputs()]
    arrays = [x.numpy() for x in inputs]
    arrays += session.run(None, dict(zip(names, arrays)))
    binding = session.io_binding()
    # an OrtValue made from an array does not own its memory: the closure keeps both
    values = [ort.OrtValue.ortvalue_from_numpy(array) for array in arrays]
    for name, value in zip(names, values):
        binding.bind_ortvalue_input(name, value)
    for port, value in zip(session.get_outputs(), values[len(names):]):
        binding.bind_ortvalue_output(port.name, value)

    def run():
        session.run_with_iobinding(binding)
        return arrays, values
    return run


def conv_unit(c_in: int, c_out: int, k: int = 3, s: int = 1, g: int = 1,
              act: Callable[[], nn.Module] = nn.ReLU) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + activation: the unit every conv case times, the way
    networks build their convs."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(c_out), act())


class _SqueezeExcite(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce, self.expand = nn.Conv2d(channels, channels // 4, 1), nn.Conv2d(channels // 4, channels, 1)

    def forward(self, x):
        return x * nn.functional.hardsigmoid(self.expand(nn.functional.relu(self.reduce(self.pool(x)))))


class _Concatenating(nn.Module):
    """Branches run on the same input (``chained``: each on the one before's output) and
    concatenated along the channels, with the input first when ``keep_input``: SqueezeNet's
    fire expand, GhostNet's ghost module, VoVNet's one-shot aggregation."""

    def __init__(self, *branches: nn.Module, chained: bool = False, keep_input: bool = False,
                 after: nn.Module | None = None):
        super().__init__()
        self.branches, self.chained, self.keep_input = nn.ModuleList(branches), chained, keep_input
        self.after = after or nn.Identity()

    def forward(self, x):
        outputs, y = [x] if self.keep_input else [], x
        for branch in self.branches:
            out = branch(y if self.chained else x)
            outputs.append(out)
            y = out
        return self.after(torch.cat(outputs, 1))


class _SplitShuffle(nn.Module):
    """Half the channels through pointwise-depthwise-pointwise, concatenated with the
    other half, then the channels shuffled: slicing, concatenation and a transpose copy."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(conv_unit(half, half, 1), nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False),
                                    nn.BatchNorm2d(half), conv_unit(half, half, 1))

    def forward(self, x):
        kept, worked = x.chunk(2, dim=1)
        y = torch.cat([kept, self.branch(worked)], 1)
        n, c, h, w = y.shape
        return y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class _ContextNet(nn.Module):
    """Synthetic networks (not from the zoo) mixing the calibrated kernel classes the way
    networks do, one per block type the field uses. Timed whole, they measure how much
    slower (or faster) kernels run inside a network (cache state, dispatch, layout changes
    at the boundaries) than alone."""

    STYLES = ("inverted_residual", "residual", "plain", "squeeze_excite", "split_shuffle", "bottleneck", "separable",
              "fire", "ghost", "aggregation", "dense_growth")
    # styles whose blocks add their input back where the shapes allow
    RESIDUAL = frozenset({"inverted_residual", "residual", "squeeze_excite", "bottleneck", "ghost"})

    def __init__(self, style: str):
        super().__init__()
        blocks: list[nn.Module] = []
        if style == "inverted_residual":
            self.stem, width = conv_unit(3, 24, 3, 2), 24
            for c_out, stride in ((40, 2), (40, 1), (80, 2), (80, 1), (112, 2), (112, 1), (192, 2), (192, 1)):
                hidden = 4 * width
                blocks.append(nn.Sequential(conv_unit(width, hidden, 1), conv_unit(hidden, hidden, 3, stride, hidden),
                                            nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)))
                width = c_out
        elif style == "residual":
            self.stem, width = nn.Sequential(conv_unit(3, 32, 7, 2), nn.MaxPool2d(3, 2, 1)), 32
            for c_out, stride in ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1)):
                blocks.append(nn.Sequential(conv_unit(width, c_out, 3, stride),
                                            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out)))
                width = c_out
        elif style == "plain":
            self.stem, width = conv_unit(3, 16, 3, 2), 16
            for c_out in (32, 64, 128, 256):
                blocks.append(nn.Sequential(conv_unit(width, c_out), conv_unit(c_out, c_out), nn.MaxPool2d(2)))
                width = c_out
        elif style == "squeeze_excite":  # hard-swish, 5x5 depthwise and squeeze-excite, as MobileNetV3
            self.stem, width = conv_unit(3, 16, 3, 2, act=nn.Hardswish), 16
            for c_out, stride, k in ((24, 2, 3), (24, 1, 3), (40, 2, 5), (40, 1, 5), (96, 2, 5), (96, 1, 5)):
                hidden = 4 * width
                blocks.append(nn.Sequential(conv_unit(width, hidden, 1, act=nn.Hardswish),
                                            conv_unit(hidden, hidden, k, stride, hidden, act=nn.Hardswish),
                                            _SqueezeExcite(hidden), nn.Conv2d(hidden, c_out, 1, bias=False),
                                            nn.BatchNorm2d(c_out)))
                width = c_out
        elif style == "split_shuffle":  # as ShuffleNetV2: no residual adds
            self.stem, width = nn.Sequential(conv_unit(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1)), 24
            for c_out in (116, 232):
                blocks += [conv_unit(width, c_out, 3, 2)] + [_SplitShuffle(c_out) for _ in range(3)]
                width = c_out
        elif style == "bottleneck":  # 1x1 reduce, 3x3, 1x1 expand, as ResNet-50
            self.stem, width = nn.Sequential(conv_unit(3, 32, 7, 2), nn.MaxPool2d(3, 2, 1)), 32
            for middle, c_out, stride in ((32, 128, 1), (32, 128, 1), (64, 256, 2), (64, 256, 1), (128, 512, 2),
                                          (128, 512, 1)):
                blocks.append(nn.Sequential(conv_unit(width, middle, 1), conv_unit(middle, middle, 3, stride),
                                            nn.Conv2d(middle, c_out, 1, bias=False), nn.BatchNorm2d(c_out)))
                width = c_out
        elif style == "separable":  # depthwise then pointwise, no residual, as MobileNetV1
            self.stem, width = conv_unit(3, 32, 3, 2), 32
            for c_out, stride in ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)):
                blocks.append(nn.Sequential(conv_unit(width, width, 3, stride, width), conv_unit(width, c_out, 1)))
                width = c_out
        elif style == "fire":  # 1x1 squeeze, then 1x1 and 3x3 expands concatenated, as SqueezeNet
            self.stem, width = nn.Sequential(conv_unit(3, 64, 3, 2), nn.MaxPool2d(3, 2, 1)), 64
            for squeeze, expand in ((16, 64), (16, 64), (0, 0), (32, 128), (32, 128), (0, 0), (48, 192), (64, 256)):
                if not squeeze:
                    blocks.append(nn.MaxPool2d(3, 2, 1))
                    continue
                expands = conv_unit(squeeze, expand, 1), conv_unit(squeeze, expand, 3)
                blocks.append(nn.Sequential(conv_unit(width, squeeze, 1), _Concatenating(*expands)))
                width = 2 * expand
        elif style == "ghost":  # half the channels by a 1x1 conv, half by a depthwise conv on it, as GhostNet
            self.stem, width = conv_unit(3, 16, 3, 2), 16

            def ghost(c_in: int, c_out: int) -> nn.Module:
                half = c_out // 2
                return _Concatenating(conv_unit(c_in, half, 1), conv_unit(half, half, 3, 1, half), chained=True)
            for hidden, c_out, stride in ((48, 24, 2), (72, 24, 1), (72, 40, 2), (120, 40, 1), (240, 80, 2),
                                          (184, 80, 1)):
                down = [nn.Conv2d(hidden, hidden, 3, 2, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden)]
                blocks.append(nn.Sequential(ghost(width, hidden), *(down if stride > 1 else []), ghost(hidden, c_out)))
                width = c_out
        elif style == "aggregation":  # 3x3 convs in a chain, all outputs concatenated once, as VoVNet
            self.stem, width = nn.Sequential(conv_unit(3, 32, 3, 2), conv_unit(32, 64, 3, 2)), 64
            for growth, c_out in ((32, 128), (48, 192), (64, 256)):
                blocks.append(nn.Sequential(_Concatenating(
                    conv_unit(width, growth), conv_unit(growth, growth), conv_unit(growth, growth), chained=True,
                    keep_input=True, after=conv_unit(width + 3 * growth, c_out, 1)), nn.MaxPool2d(2)))
                width = c_out
        elif style == "dense_growth":  # each layer's output concatenated to its input, as DenseNet
            self.stem, width = nn.Sequential(conv_unit(3, 32, 3, 2), nn.MaxPool2d(3, 2, 1)), 32
            for layers, growth in ((4, 16), (6, 32)):
                for _ in range(layers):
                    blocks.append(_Concatenating(nn.Sequential(conv_unit(width, 4 * growth, 1),
                                                               conv_unit(4 * growth, growth)), keep_input=True))
                    width += growth
                blocks += [conv_unit(width, width // 2, 1), nn.AvgPool2d(2)]
                width //= 2
        else:
            raise ValueError(f"unknown synthetic network style {style!r}")
        self.residual = style in self.RESIDUAL
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 100))

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            y = block(x)
            x = x + y if self.residual and y.shape == x.shape else y
        return self.head(x)


CONTEXT_BATCHES = (1, 8)
_CHAIN = 16


class _Neg(nn.Module):
    def forward(self, x):
        return torch.neg(x)


def _chain(length: int) -> nn.Sequential:
    """``length`` element-wise modules in a row, alternating so that no runtime folds two;
    modules, because a network's ops are module calls in torch eager."""
    return nn.Sequential(*(nn.ReLU() if index % 2 else _Neg() for index in range(length)))


def _overheads(seconds: dict[str, float], device: str) -> dict[str, float]:
    """Per-kernel overhead (each extra op of the chain), per-call overhead (a model call or
    session run, paid once per inference), in torch eager a view op's, and what a
    calibration point's time holds beyond its kernel (a CUDA graph replay: nothing)."""
    kernel = max((seconds["overhead chain"] - seconds["overhead call"]) / (_CHAIN - 1), 0.0)
    call = max(seconds["overhead call"] - kernel, 0.0)
    return {"kernel": kernel, "call": call, "view": seconds.get("overhead view", 0.0),
            "in_points": 0.0 if device == "cuda" else kernel + call}


def analysis_dtype(dtype: str) -> str:
    """The analyzer's name of a calibration dtype (fp16 -> float16)."""
    return str(_TORCH_DTYPES[dtype]).removeprefix("torch.")


def fit_context(networks: list[tuple[float, float, int]], per_kernel: bool = True) -> tuple[float, float]:
    """(factor, seconds per kernel) with measured = factor x predicted + kernels x seconds,
    fitted to (measured s, predicted s, kernels) of whole networks in relative least
    squares; the factor alone without ``per_kernel`` or when that term comes out negative."""
    a = [predicted / measured for measured, predicted, _ in networks]
    b = [kernels / measured for measured, _, kernels in networks]
    aa, ab, bb = sum(x * x for x in a), sum(x * y for x, y in zip(a, b)), sum(y * y for y in b)
    determinant = aa * bb - ab * ab
    if per_kernel and determinant > 0:
        factor, per_kernel = (bb * sum(a) - ab * sum(b)) / determinant, (aa * sum(b) - ab * sum(a)) / determinant
        if per_kernel >= 0 and factor > 0:
            return factor, per_kernel
    return sum(a) / aa, 0.0


def _context_fit(profile: dict, batch: int, rounds: int = 4, added: dict[str, list] | None = None
                 ) -> tuple[float, float]:
    """How the synthetic networks at ``batch`` run against their prediction from the
    profile's points: a factor on every kernel and, at the smallest batch, a cost per
    kernel (see :func:`fit_context`). Measured here: at batch 1 an op inside a network costs
    ~30 us (torch) more than alone; at batch 8 a per-kernel term fitted the same way grows
    to ~100 us and overshoots small networks by up to 2x, so larger batches take the factor
    alone (and the per-kernel cost fades to zero in log batch). The factor fades for kernels
    near the compute ceiling (see ``calibrated_time``), so it is fitted in ``rounds``: each
    round predicts with the factor so far and corrects it by the factor fitted on that.
    ``added``: ONNX Runtime's added kernels per network label, read from the graphs its
    timing sessions saved (otherwise each network is exported and optimized again here)."""
    from deploylens.analysis.api import analyze
    from deploylens.predict.api import onnxruntime_added_kernels, predict_profile

    shape = (batch, 3, 224, 224)
    networks = []  # analysed once: only the factor changes between rounds
    for label in (f"{s} batch {batch}" for s in _ContextNet.STYLES):
        if label not in profile["fixed_s"]:
            continue
        model = _ContextNet(label.split()[0]).eval()
        runtime = ([] if profile["backend"] != "onnxruntime" else added[label] if added and label in added
                   else onnxruntime_added_kernels(model, [shape], profile["threads"]))
        networks.append((profile["fixed_s"][label], analyze(model, [(shape, "float")],
                                                            analysis_dtype(profile["dtype"])), runtime))
    factor, per_kernel = 1.0, 0.0
    for _ in range(rounds):
        profile["context_factor"], profile["context_kernel_s"] = {str(batch): factor}, {}
        predicted = [predict_profile(analysis, "this", None, profile, profile["backend"], batch, runtime).totals
                     for _, analysis, runtime in networks]
        correction, per_kernel = fit_context([(measured, p["latency_ms"] / 1e3, p["kernels"])
                                              for (measured, _, _), p in zip(networks, predicted)],
                                             per_kernel=batch == min(CONTEXT_BATCHES))
        factor *= correction
    return factor, per_kernel


def _boundary_times(profile: dict) -> None:
    """The time of the reorders ONNX Runtime ran around each conv case, at the rate of the
    batch-1 reorder cases of its input channel alignment, nearest in size: a conv inside a
    network keeps the blocked layout and runs none of them. A case's reorders touch the
    tensors its conv reads or writes next, in cache, as a batch-1 round trip does.
    Measured here against ONNX Runtime's per-node profiles at batch 8: at the batch-8
    cases' rates (28-58 GB/s against 43-112 at batch 1) the pointwise convs of four of five
    networks came out 14-28% fast (with batch-1 rates before, MobileNetV2's within 1%), and
    at the rates of reorders of padded channels too (30-65 GB/s) the reorders took more than
    the whole time of some small depthwise cases."""
    from deploylens.predict.api import nearest_rate, size_distance

    lanes = profile["vector_lanes"]

    def alignment(shape: list[int]) -> int:
        return channel_alignment(shape[1], shape[1], 1, lanes)

    round_trips = [r for r in profile["points"].get("reorder", []) if r["input_shape"][0] == 1]
    for points in profile["points"].values():
        for p in points:
            if not (p.get("reorder_bytes") and round_trips):
                continue
            # a stem's 3 input channels have no reorder case of their alignment: all round trips
            like = [r for r in round_trips if alignment(r["input_shape"]) == alignment(p["input_shape"])] or round_trips
            nbytes = p["reorder_bytes"]
            p["boundary_s"] = nbytes / nearest_rate(like, size_distance(0, nbytes, False), False,
                                                    profile["overhead_s"]["in_points"])


def compute_ceiling(profile: dict) -> float | None:
    """The fastest a kernel may be predicted on a CPU: the ISA's peak at the nominal clock
    or, when the cores ran faster than that (turbo, which a VM's /proc/cpuinfo does not
    show), the fastest rate a calibration case reached. Measured here: ONNX Runtime's dense
    3x3 cases reached 383 GFLOP/s against 269 at the nominal 2.1 GHz, and capping them at
    269 made every dense model 4-40% slow at batch 8. None on a GPU (see calibrate)."""
    if profile["device"] != "cpu":
        return None
    rates = [p["flops"] / p["seconds"] for klass in COMPUTE_CLASSES for p in profile["points"].get(klass, [])
             if p["flops"] and p["seconds"] > 0]
    return max([profile.get("isa_peak_flops") or 0.0, *rates]) or None


def _derive(profile: dict, added: dict[str, list] | None = None) -> None:
    """The compute ceiling and overheads, then per batch size the whole-network factor and
    per-kernel cost (dispatch, cache behaviour and layout change with the batch), from the
    profile's timings (``added``: see :func:`_context_fit`)."""
    profile["peak_flops"] = compute_ceiling(profile)
    profile["overhead_s"] = _overheads(profile["fixed_s"], profile["device"])
    _boundary_times(profile)
    fits = {str(b): _context_fit(profile, b, added=added) for b in CONTEXT_BATCHES}
    profile["context_factor"] = {b: factor for b, (factor, _) in fits.items()}
    profile["context_kernel_s"] = {b: per_kernel for b, (_, per_kernel) in fits.items()}


def identity(device: str, backend: str, threads: int, dtype: str) -> dict:
    """What a calibration is valid for: this CPU (and GPU), backend, threads, dtype and
    the channel multiple that runs the fast path (SIMD lanes; tensor-core multiple)."""
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}: cpu or cuda")
    if backend not in ("torch", "onnxruntime"):
        raise UserError(f"calibration backends: torch or onnxruntime, not {backend!r}")
    if dtype not in _TORCH_DTYPES:
        raise UserError(f"calibration dtypes: {', '.join(_TORCH_DTYPES)}, not {dtype!r}")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA GPU is visible here")
        if backend != "torch":
            raise UserError("on a CUDA GPU the calibration runs the torch backend")
    elif dtype != "fp32":
        raise UserError("on the CPU the calibration runs fp32")
    info = cpu_info()
    return {"device": device, "backend": backend, "threads": threads, "dtype": dtype,
            "vector_lanes": GPU_CHANNEL_MULTIPLE if device == "cuda" else vector_lanes(info["isa"]),
            "cpu": info["model"], "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None}


def identity_of(profile: dict) -> dict:
    machine = profile.get("machine", {})
    return {"device": profile.get("device"), "backend": profile.get("backend"), "threads": profile.get("threads"),
            "dtype": profile.get("dtype"), "vector_lanes": profile.get("vector_lanes"), "cpu": machine.get("cpu"),
            "gpu": machine.get("gpu")}


def check_combinable(profile: dict, expected: dict) -> None:
    """Refuses to combine ``profile`` with a calibration of another machine, backend,
    threads or dtype (``expected``: see :func:`identity`)."""
    differ = [key for key, value in expected.items() if identity_of(profile).get(key) != value]
    if differ:
        raise UserError(f"the calibrations to combine differ in {', '.join(differ)}")


def combine(earlier: dict, later: dict) -> dict:
    """One profile from calibrations of the same machine, backend and threads: every
    timing the median of those of all the calibrations combined (kept per point in
    ``seconds_each``, per fixed timing in ``fixed_each``), the derived figures computed
    again. Calibrations minutes apart meet different spells of a shared host. Measured
    here on three calibrations of each backend, re-predicting three saved sweeps of the zoo:
    their median put 53.7 / 45.1 / 42.7% of the rows within 10%, one calibration alone
    51.2 / 41.5 / 40.8%, their minimum (each timing the quietest) 49.4 / 41.5 / 34.8%: a
    minimum of adjusted times is biased low. Three calibrations made in a busy spell, whose
    adjusted times stay slow, did better by their minimum (45.1% against 36.0%)."""
    check_combinable(earlier, identity_of(later))
    before = {(klass, p["label"]): p.get("seconds_each", [p["seconds"]])
              for klass, points in earlier["points"].items() for p in points}
    merged = copy.deepcopy(later)
    for klass, points in merged["points"].items():
        for p in points:
            p["seconds_each"] = before.get((klass, p["label"]), []) + p.get("seconds_each", [p["seconds"]])
            p["seconds"] = statistics.median(p["seconds_each"])
    def fixed_each(profile: dict) -> dict[str, list[float]]:
        return profile.get("fixed_each") or {label: [value] for label, value in profile["fixed_s"].items()}
    fixed_before = fixed_each(earlier)
    merged["fixed_each"] = {label: fixed_before.get(label, []) + values for label, values in fixed_each(later).items()}
    merged["fixed_s"] = {label: statistics.median(values) for label, values in merged["fixed_each"].items()}
    merged["rounds"] = earlier["rounds"] + later["rounds"]
    _derive(merged)
    return merged


def calibrate(backend: str = "torch", threads: int | None = None, max_flops: float | None = None,
              rounds: int | None = None, device: str = "cpu", dtype: str = "fp32",
              progress: Callable[[int, int, str], None] = lambda done, total, label: None,
              probe_level: float | None = None) -> dict:
    """Run the calibration set ``rounds`` times (default: the device's), round-robin; on a
    CPU with an interference probe between samples (see
    :mod:`deploylens.bench.interference`): a case's time is the median of its samples over
    all rounds adjusted to the probe's quiet level (with the probe's exponent: one fitted
    on the cases themselves comes out low, 0.2-0.35 against 0.45 on long measurements,
    since a case of ~70 ms spans one or two probe readings and a sample next to a busy
    reading counts as busy even when it ran quiet); without a probe
    (a GPU), its quietest round's median (see :func:`deploylens.bench.runner.quietest`).
    ``probe_level``: the machine's quiet probe level known from earlier runs (see
    :func:`known_probe_level`). Returns the profile (see :func:`save`)."""
    threads = threads or torch.get_num_threads()
    who = identity(device, backend, threads, dtype)
    setting = SETTINGS[device]
    if max_flops is not None:
        setting = replace(setting, max_flops=max_flops)
    rounds = setting.rounds if rounds is None else rounds
    if rounds < 1:
        raise UserError("calibration needs at least one round")
    torch.set_num_threads(threads)
    allocator = malloc.tune()  # the same allocator state as `deploylens bench`
    started = time.perf_counter()
    chosen = cases(setting, who["vector_lanes"]) + (runtime_cases(setting) if backend == "onnxruntime" else [])
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    # a GPU case is timed as a CUDA graph on a device nobody shares: no probe there
    probe = InterferenceProbe(known_level=probe_level) if device == "cpu" else None
    with tempfile.TemporaryDirectory(prefix="deploylens-calibrate-") as workdir:
        boundary: dict[str, int] = {}  # ONNX Runtime: bytes of the reorders around a conv case
        launch_s: dict[str, float] = {}  # CUDA: the CPU's time to launch a case's eager ops

        def session(case: Case) -> Callable[[], Callable[[], object]]:
            def build():
                torch.manual_seed(0)
                model, inputs = case.build().eval(), [torch.randn(s) for s in case.shapes]
                onnx_model, optimized = None, None
                if backend == "onnxruntime" and case.onnx:
                    onnx_model = case.onnx()
                elif backend == "onnxruntime" and case.geometry:
                    onnx_model = _conv_relu_onnx(case.geometry, case.shapes[0])
                    optimized = os.path.join(workdir, "optimized.onnx")
                if device == "cuda":  # eager on an idle GPU first, then the same module as a graph
                    eager_run = case_runner(backend, model, inputs, threads, workdir, device=device, dtype=dtype)
                    launch_s[case.label] = _launch_seconds(eager_run, sync)
                run = case_runner(backend, model, inputs, threads, workdir, onnx_model, device, dtype,
                                  graph=device == "cuda", optimized=optimized)
                if optimized:
                    out = case.geometry["c_out"] * case.geometry["pixels"]
                    boundary[case.label] = boundary_reorder_bytes(
                        optimized, {"input0": math.prod(case.shapes[0]), "conv": out, "output": out})
                return run
            return build

        def eager(model: nn.Module, inputs: list[torch.Tensor]) -> Callable[[], Callable[[], object]]:
            return lambda: case_runner(backend, model, inputs, threads, workdir, device=device, dtype=dtype)

        added: dict[str, list] = {}  # ONNX Runtime: the kernels it adds to each synthetic network

        def network(label: str, model: nn.Module, inputs: list[torch.Tensor]) -> Callable[[], Callable[[], object]]:
            """A synthetic network's session; on ONNX Runtime its optimized graph read for the
            kernels it adds (the derived figures need them: one export and optimization)."""
            if backend != "onnxruntime":
                return eager(model, inputs)

            def build():
                from deploylens.predict.api import onnxruntime_run_and_added

                run, added[label] = onnxruntime_run_and_added(model, inputs, threads, workdir)
                return run
            return build

        # the synthetic networks first (see Budget)
        networks = {f"{style} batch {batch}": (style, batch)
                    for batch in CONTEXT_BATCHES for style in _ContextNet.STYLES}
        sessions = {label: network(label, _ContextNet(style).eval(), [torch.randn(batch, 3, 224, 224)])
                    for label, (style, batch) in networks.items()}
        sessions.update({case.label: session(case) for case in chosen})
        # costs that do not depend on size: a call of one op and of a chain of ops on a
        # 1-element tensor; the slope is the per-kernel overhead, the rest the per-call one
        one = torch.randn(1)
        sessions["overhead call"] = eager(_chain(1), [one])
        sessions["overhead chain"] = eager(_chain(_CHAIN), [one])
        if backend == "torch":  # views cost nothing in a runtime's graph
            sessions["overhead view"] = lambda: (lambda: one.view(1, 1))
        # ONNX Runtime gives each session a thread pool whose threads spin for 10-100 ms
        # after a run: beside the sessions of the cases run just before, still spinning, a
        # case ran up to 2x slower (measured here: a 1x1 conv 96->96 at 56x56, 0.44 ms
        # alone, 0.99 ms after 50 other sessions had run, 0.49 ms after a 0.1 s pause). There
        # each case runs its rounds back to back on a session that is dropped after them;
        # torch's cases share one OpenMP pool and run in round-robin rounds spread in time.
        case_major = backend == "onnxruntime"
        # round-robin rounds need every session built first; otherwise each is built just
        # before its first round and dropped after its last (a GPU would not hold every case)
        prebuilt = rounds > 1 and not case_major
        total = len(chosen) + (len(sessions) if prebuilt else 0) + rounds * len(sessions)
        steps = iter(range(total))
        costs = {}
        for case in chosen:
            progress(next(steps), total, f"costing {case.label}")
            costs[case.label] = _case_cost(case, analysis_dtype(dtype))
        held = {}
        for label, build in sessions.items() if prebuilt else ():
            progress(next(steps), total, f"preparing {label}")
            held[label] = build()
        rounds_of: dict[str, list] = {label: [] for label in sessions}
        # the derived figures come after the rounds
        budget = Budget(started + setting.budget_s - DERIVE_S if setting.budget_s is not None else math.inf,
                        rounds * (len(sessions) - len(networks)), rounds * len(networks))
        order = ([(index, label) for label in sessions for index in range(rounds)] if case_major
                 else [(index, label) for index in range(rounds) for label in sessions])
        for round_index, label in order:
            progress(next(steps), total, f"round {round_index + 1}/{rounds}: {label}")
            began = time.perf_counter()
            rule = NETWORK if label in networks else budget.case_rule(round_index == 0, began)
            if rule:  # None: out of time, the case keeps the rounds it had
                if label not in held:
                    held[label] = sessions[label]()
                rounds_of[label].append(measure(held[label], rule, sync=sync, probe=probe))
                budget.spent(label in networks, time.perf_counter() - began, rule.max_time)
            if not prebuilt and round_index == rounds - 1:
                held.pop(label, None)
    read = probe if probe and probe.readings else None
    if read:
        level = read.level()
        measured = {label: pooled(timings) for label, timings in rounds_of.items()}
        seconds = {label: adjusted_median(samples, readings, level, read.exponent)
                   for label, (samples, readings) in measured.items()}
        quiet_cases = sum(quiet_median(quiet_samples(samples, readings, read, level)) is not None
                          for samples, readings in measured.values())
    else:
        seconds = {label: quietest(timings).summary.p50 for label, timings in rounds_of.items()}
    points: dict[str, list[dict]] = {c: [] for c in CLASSES}
    overheads = _overheads(seconds, device)
    for case in chosen:
        flops, nbytes, ops = costs[case.label]
        point = {"label": case.label, "flops": flops, "bytes": nbytes, "geometry": case.geometry,
                 "input_shape": list(case.shapes[0]), "seconds": seconds[case.label]}
        if case.label in launch_s:
            point["launch_per_op_s"] = launch_per_op(launch_s[case.label], ops, overheads)
        if boundary.get(case.label):
            point["reorder_bytes"] = boundary[case.label]
        points[case.kernel_class].append(point)
    info = cpu_info()
    profile = {
        "format": FORMAT, "version": VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **{key: who[key] for key in ("device", "backend", "threads", "dtype", "vector_lanes")},
        "torch": torch.__version__, "rounds": rounds,
        "machine": {"cpu": info["model"], "isa": info["isa"], "mhz": info["mhz"], "node": platform.node(),
                    "gpu": who["gpu"]},
        "allocator": allocator, "points": points,
        # the overhead and whole-network timings the derived figures below come from
        "fixed_s": {label: value for label, value in seconds.items() if label not in costs},
        # the ISA's peak at the nominal clock; predictions are capped at it or at the fastest
        # case (compute_ceiling). None on a GPU, whose fp32 convs run on TF32 tensor cores
        # by default, above its fp32 peak.
        "isa_peak_flops": this_cpu(threads).peak_flops("fp32") if device == "cpu" else None,
        "probe": {"level_s": level, "tolerance": read.tolerance, "quiet_share": quiet_cases / len(measured),
                  "exponent": read.exponent} if read else None,
    }
    _derive(profile, added)
    progress(total, total, "done")
    profile["seconds_taken"] = round(time.perf_counter() - started, 1)
    return profile


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _directory() -> Path:
    return Path(os.environ.get("DEPLOYLENS_CALIBRATION_DIR",
                               Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
                               / "deploylens" / "calibration"))


def profile_path(backend: str, threads: int, device: str = "cpu", dtype: str = "fp32",
                 directory: Path | None = None) -> Path:
    """Where the profile of this CPU (or its CUDA GPU), backend, threads and dtype lives."""
    machine = torch.cuda.get_device_name(0) if device == "cuda" else cpu_info()["model"]
    return (directory or _directory()) / f"{_slug(machine)}-{backend}-{threads}t-{dtype}.json"


def known_probe_level(threads: int, directory: Path | None = None) -> float | None:
    """The quietest interference-probe level (seconds) of the CPU profiles saved for this
    CPU with ``threads`` (any backend, dtype or format version: the probe is the same
    torch conv), or None. A calibration made in a busy spell measures against it."""
    levels = []
    for path in (directory or _directory()).glob(f"{_slug(cpu_info()['model'])}-*-{threads}t-*.json"):
        try:
            profile = json.loads(path.read_text())
            level = profile["probe"]["level_s"] if profile.get("format") == FORMAT else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            continue  # not a profile of ours, or one without a probe: nothing to learn from it
        if isinstance(level, (int, float)) and level > 0:
            levels.append(float(level))
    return min(levels, default=None)


def save(profile: dict, path: Path) -> Path:
    from deploylens.output import write_atomically

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(profile, indent=1))
    return path


def load(path: Path) -> dict:
    """Read a calibration profile: JSON only, its format and version checked."""
    try:
        profile = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read calibration profile {path}: {error}") from error
    if not isinstance(profile, dict) or profile.get("format") != FORMAT:
        raise UserError(f"{path} is not a deploylens calibration profile")
    if profile.get("version") != VERSION:
        raise UserError(f"{path} is calibration format version {profile.get('version')}; this deploylens reads "
                        f"version {VERSION}: run `deploylens hw calibrate` again")
    return profile

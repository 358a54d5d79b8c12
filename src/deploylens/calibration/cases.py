"""The calibration set: small modules (built from the zoo's blocks) that span the zoo's
layers, one per kernel class and size, and the cases of what ONNX Runtime runs beyond a
model's own kernels. The analyzer costs each case exactly as it costs a model's kernels
(fused view), so a calibration point and a model kernel are described by the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from deploylens.calibration.budget import SETTINGS, DeviceSetting
from deploylens.errors import UserError
from deploylens.hardware.kernel_classes import conv_geometry
from deploylens.kernels.onnxruntime_graph import NCHWC
from deploylens.onnx_runtime import EXPORT_OPSET, session
from deploylens.zoo.blocks import ConvBnAct


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
    return lambda: ConvBnAct(c_in, c_out, k, stride, groups)


def _conv_flops(c_in: int, c_out: int, k: int, hw: int, stride: int, groups: int) -> int:
    return 2 * c_out * (c_in // groups) * k * k * (hw // stride) ** 2


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
        for c in pointwise:  # a shortcut's downsampling (ResNet, RepVGG): slower than stride 1 (docs/device-models.md)
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
            ((1, 3, 224, 224),), _conv_flops(3, c_out, k, 224, 2, 1),
            lambda batch, c=c_out, k=k: conv_geometry(3, c, 1, k, 2, batch * 112 * 112),
            3 * 224 * 224 + c_out * 112 * 112)
    linears = ((512, 1000), (1024, 1000), (1280, 1000), (2048, 1000), (4096, 4096), (25088, 4096))
    for index, (n_in, n_out) in enumerate(linears):  # the smallest whatever max_flops: every profile rates a linear
        add("matmul", f"linear {n_in}->{n_out}", lambda a=n_in, b=n_out: nn.Linear(a, b), ((1, n_in),),
            2 * n_in * n_out if index else 0, activations=n_in + n_out)
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


def conv_relu_onnx(geometry: dict, input_shape: tuple[int, ...]) -> bytes:
    """The graph the exporter makes of an eval-mode conv-BN-ReLU (Conv with the BN folded
    into its weights and bias, then Relu), built directly: exporting every conv case one by
    one would spend much of the calibration's time."""
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
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", EXPORT_OPSET)]).SerializeToString()


def _reorders_onnx(channels: int, hw: int, batch: int) -> bytes:
    """A plain NCHW tensor into ONNX Runtime's channel-blocked layout and back: the two
    copies it puts around blocked convs wherever they meet other ops."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReorderInput", ["input0"], ["blocked"], domain=NCHWC, channels_last=0),
             helper.make_node("ReorderOutput", ["blocked"], ["output"], domain=NCHWC, channels=channels,
                              channels_last=0)]
    graph = helper.make_graph(nodes, "reorders",
                              [helper.make_tensor_value_info("input0", TensorProto.FLOAT, [batch, channels, hw, hw])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", EXPORT_OPSET), helper.make_opsetid(NCHWC, 1)]
                             ).SerializeToString()


class _HalfChannels(nn.Module):
    """The first 16 of 32 channels: a constant bound, so the export has no shape arithmetic."""

    def forward(self, x):
        return x[:, :16]


def blocked_layout() -> bool:
    """Whether this CPU's ONNX Runtime has the channel-blocked layout (its SIMD is wide enough)."""
    try:
        session(_reorders_onnx(16, 4, 1), quiet=True)
    except UserError:  # the kernels are not registered: no blocked layout here
        return False
    return True


def runtime_cases(setting: DeviceSetting = SETTINGS["cpu"]) -> list[Case]:
    """Cases of what ONNX Runtime runs beyond the model's own kernels, or runs slower than
    PyTorch does, each at rates of its own (docs/device-models.md): its layout copies (none
    where it has no blocked layout), at the zoo's activation sizes and at channel counts it
    pads to whole blocks; a Slice, which copies; and a transcendental activation it leaves
    unfused (SiLU)."""
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


# the per-kernel and per-call overheads come from a call of one op and of a chain of
# CHAIN ops on a 1-element tensor: the slope is the per-kernel overhead, the rest the per-call one
CHAIN = 16


class _Neg(nn.Module):
    def forward(self, x):
        return torch.neg(x)


def chain(length: int) -> nn.Sequential:
    """``length`` element-wise modules in a row, alternating so that no runtime folds two;
    modules, because a network's ops are module calls in torch eager."""
    return nn.Sequential(*(nn.ReLU() if index % 2 else _Neg() for index in range(length)))

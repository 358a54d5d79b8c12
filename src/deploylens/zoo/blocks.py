"""Building blocks shared across zoo families (conv-bn-act, squeeze-excite, inverted
residual, ghost module, channel shuffle)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

_INPLACE = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.LeakyReLU)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without dropping more than 10%
    (the rule MobileNetV2/V3, GhostNet and EfficientNet share)."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def activation(act: type[nn.Module] | None) -> nn.Module:
    if act is None:
        return nn.Identity()
    if act is nn.LeakyReLU:
        return nn.LeakyReLU(0.1, inplace=True)
    return act(inplace=True) if act in _INPLACE else act()


class ConvBnAct(nn.Sequential):
    """Conv -> BatchNorm -> activation, the unit nearly every CNN is made of."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.ReLU, padding: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2 if padding is None else padding,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        if act is not None:
            self.act = activation(act)


class SqueezeExcite(nn.Module):
    """Global pool -> 1x1 reduce -> act -> 1x1 expand -> gate, scaling the channels."""

    def __init__(self, channels: int, reduced: int, act: type[nn.Module] = nn.ReLU,
                 gate: type[nn.Module] = nn.Sigmoid):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = activation(act)
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 and EfficientNet's MBConv: 1x1 expand -> depthwise kxk -> (SE) ->
    1x1 linear projection, with a residual when shapes allow."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expanded: int,
                 act: type[nn.Module] = nn.ReLU6, se: nn.Module | None = None):
        super().__init__()
        self.expand = ConvBnAct(c_in, expanded, 1, act=act) if expanded != c_in else nn.Identity()
        self.depthwise = ConvBnAct(expanded, expanded, kernel, stride, groups=expanded, act=act)
        self.se = se or nn.Identity()
        self.project = ConvBnAct(expanded, c_out, 1, act=None)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class ClassifierNet(nn.Module):
    """The skeleton every zoo family shares: stem -> stages -> head."""

    def __init__(self, stem: nn.Module, stages: nn.Module, head: nn.Module):
        super().__init__()
        self.stem = stem
        self.stages = stages
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def pooled_classifier(*layers: nn.Module) -> nn.Sequential:
    """Global average pool and flatten, then ``layers`` (ending in the classifier)."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), *layers)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


class GhostModule(nn.Module):
    """GhostNet: a thin 1x1 conv makes half the channels, a cheap depthwise conv the rest."""

    def __init__(self, c_in: int, c_out: int, relu: bool = True, ratio: int = 2, dw_kernel: int = 3):
        super().__init__()
        self.c_out = c_out
        primary = math.ceil(c_out / ratio)
        act = nn.ReLU if relu else None
        self.primary = ConvBnAct(c_in, primary, 1, act=act)
        self.cheap = ConvBnAct(primary, primary * (ratio - 1), dw_kernel, groups=primary, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        return torch.cat([y, self.cheap(y)], dim=1)[:, : self.c_out]

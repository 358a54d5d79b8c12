"""GhostNet (Han et al., CVPR 2020): ghost modules make half the features with cheap
depthwise convs."""

from __future__ import annotations

import torch
import torch.nn as nn

from deploylens.zoo.blocks import ClassifierNet, ConvBnAct, GhostModule, SqueezeExcite, make_divisible
from deploylens.zoo.registry import Published, register


class GhostBottleneck(nn.Module):
    def __init__(self, c_in: int, mid: int, c_out: int, kernel: int, stride: int, se_ratio: float):
        super().__init__()
        self.ghost1 = GhostModule(c_in, mid, relu=True)
        self.depthwise = ConvBnAct(mid, mid, kernel, stride, groups=mid, act=None) if stride > 1 else nn.Identity()
        self.se = SqueezeExcite(mid, make_divisible(mid * se_ratio, 4), gate=nn.Hardsigmoid) \
            if se_ratio else nn.Identity()
        self.ghost2 = GhostModule(mid, c_out, relu=False)
        self.shortcut = nn.Identity() if c_in == c_out and stride == 1 else nn.Sequential(
            ConvBnAct(c_in, c_in, kernel, stride, groups=c_in, act=None), ConvBnAct(c_in, c_out, 1, act=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ghost2(self.se(self.depthwise(self.ghost1(x)))) + self.shortcut(x)


# kernel, expanded, out, SE ratio, stride
_CONFIG = [(3, 16, 16, 0, 1), (3, 48, 24, 0, 2), (3, 72, 24, 0, 1), (5, 72, 40, 0.25, 2), (5, 120, 40, 0.25, 1),
           (3, 240, 80, 0, 2), (3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1), (3, 480, 112, 0.25, 1),
           (3, 672, 112, 0.25, 1), (5, 672, 160, 0.25, 2), (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1),
           (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1)]


class GhostNet(ClassifierNet):
    def __init__(self, width: float = 1.0, num_classes: int = 1000):
        c_in = make_divisible(16 * width, 4)
        stem = ConvBnAct(3, c_in, 3, 2)
        blocks = []
        for kernel, expanded, c, se_ratio, stride in _CONFIG:
            c_out = make_divisible(c * width, 4)
            blocks.append(GhostBottleneck(c_in, make_divisible(expanded * width, 4), c_out, kernel, stride, se_ratio))
            c_in = c_out
        head = make_divisible(960 * width, 4)
        blocks.append(ConvBnAct(c_in, head, 1))
        # the head conv runs after pooling, on 1x1 features
        head_layers = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(head, 1280, 1), nn.ReLU(inplace=True),
                                    nn.Flatten(1), nn.Linear(1280, num_classes))
        super().__init__(stem, nn.Sequential(*blocks), head_layers)


register("ghostnet_100", family="ghostnet",
         published=Published("5.18M", "142M", "FLOPs (MAdds)", 73.98,
                             "params: timm results CSV; "
                             "MACs, top-1: huawei-noah/Efficient-AI-Backbones ghostnet_pytorch"))(
    lambda: GhostNet(1.0))

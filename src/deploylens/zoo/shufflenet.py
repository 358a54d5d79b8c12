"""ShuffleNet V1 (Zhang et al., CVPR 2018) and V2 (Ma et al., ECCV 2018)."""

from __future__ import annotations

import torch
import torch.nn as nn

from deploylens.zoo.blocks import ClassifierNet, ConvBnAct, channel_shuffle, pooled_classifier
from deploylens.zoo.registry import Published, register


class ShuffleNet(ClassifierNet):
    def __init__(self, stem: nn.Module, stages: list[nn.Module], last_conv: nn.Module, c_out: int, num_classes: int,
                 fc_bias: bool = True):
        super().__init__(stem, nn.Sequential(*stages, last_conv),
                         pooled_classifier(nn.Linear(c_out, num_classes, bias=fc_bias)))


def _stem(c_out: int) -> nn.Sequential:
    return nn.Sequential(ConvBnAct(3, c_out, 3, 2), nn.MaxPool2d(3, 2, 1))


# --- V1: grouped 1x1 convs and a channel shuffle -----------------------------------


class ShuffleV1Unit(nn.Module):
    def __init__(self, c_in: int, c_out: int, groups: int, stride: int, first_group: bool):
        super().__init__()
        self.stride, self.groups = stride, groups
        branch_out = c_out - c_in if stride == 2 else c_out
        mid = c_out // 4
        self.reduce = ConvBnAct(c_in, mid, 1, groups=1 if first_group else groups)
        self.depthwise = ConvBnAct(mid, mid, 3, stride, groups=mid, act=None)
        self.expand = ConvBnAct(mid, branch_out, 1, groups=groups, act=None)
        self.pool = nn.AvgPool2d(3, 2, 1) if stride == 2 else None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(self.depthwise(channel_shuffle(self.reduce(x), self.groups)))
        if self.pool is not None:
            return torch.cat([self.pool(x), self.act(y)], dim=1)
        return self.act(x + y)


def shufflenet_v1(groups: int, width: float, num_classes: int = 1000) -> ShuffleNet:
    widths = {3: (240, 480, 960)}[groups]
    c_in = 24
    stages = []
    for index, (repeats, c) in enumerate(zip((4, 8, 4), widths)):
        c_out = int(c * width)
        units = [ShuffleV1Unit(c_in if u == 0 else c_out, c_out, groups, 2 if u == 0 else 1, index == 0 and u == 0)
                 for u in range(repeats)]
        stages.append(nn.Sequential(*units))
        c_in = c_out
    return ShuffleNet(_stem(24), stages, nn.Identity(), c_in, num_classes, fc_bias=False)


register("shufflenet_v1_g3_100", family="shufflenet_v1",
         published=Published("1.9M", "138M", "FLOPs (MACs)", 67.8,
                             "megvii-model/ShuffleNet-Series README (ShuffleNetV1 1.0x g=3)"))(
    lambda: shufflenet_v1(3, 1.0))


# --- V2: channel split, equal widths, shuffle after concat ---------------------------


class ShuffleV2Unit(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        branch = c_out // 2
        self.stride = stride
        self.left = nn.Sequential(ConvBnAct(c_in, c_in, 3, stride, groups=c_in, act=None),
                                  ConvBnAct(c_in, branch, 1)) if stride > 1 else None
        self.right = nn.Sequential(ConvBnAct(c_in if stride > 1 else branch, branch, 1),
                                   ConvBnAct(branch, branch, 3, stride, groups=branch, act=None),
                                   ConvBnAct(branch, branch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.left is None:
            kept, processed = x.chunk(2, dim=1)
            out = torch.cat([kept, self.right(processed)], dim=1)
        else:
            out = torch.cat([self.left(x), self.right(x)], dim=1)
        return channel_shuffle(out, 2)


def shufflenet_v2(widths: tuple[int, ...], last: int, num_classes: int = 1000) -> ShuffleNet:
    c_in = 24
    stages = []
    for repeats, c_out in zip((4, 8, 4), widths):
        stages.append(nn.Sequential(*[ShuffleV2Unit(c_in if u == 0 else c_out, c_out, 2 if u == 0 else 1)
                                      for u in range(repeats)]))
        c_in = c_out
    return ShuffleNet(_stem(24), stages, ConvBnAct(c_in, last, 1), last, num_classes)


_SNV2 = "ShuffleNetV2 paper Tables 5 and 8 (ECCV 2018)"
for _name, _widths, _last, _params, _macs, _top1 in [
        ("x0_5", (48, 96, 192), 1024, "1.4M", "41M", 60.3), ("x1_0", (116, 232, 464), 1024, "2.3M", "146M", 69.4),
        ("x1_5", (176, 352, 704), 1024, "3.5M", "299M", 72.6), ("x2_0", (244, 488, 976), 2048, "7.4M", "591M", 74.9)]:
    register(f"shufflenet_v2_{_name}", family="shufflenet_v2",
             published=Published(_params, _macs, "FLOPs (MACs)", _top1, _SNV2))(
        lambda widths=_widths, last=_last: shufflenet_v2(widths, last))

"""CSPNet (Wang et al., CVPRW 2020): cross-stage partial stages split the features, run
blocks on one part only and merge them through transitions. Layout as timm's
``cspresnet50`` / ``cspdarknet53``."""

from __future__ import annotations

import torch
import torch.nn as nn

from deploylens.zoo.blocks import ClassifierNet, ConvBnAct, pooled_classifier
from deploylens.zoo.registry import Published, register


class ResBottleneck(nn.Module):
    def __init__(self, channels: int, bottle_ratio: float, act: type[nn.Module]):
        super().__init__()
        mid = int(round(channels * bottle_ratio))
        self.convs = nn.Sequential(ConvBnAct(channels, mid, 1, act=act), ConvBnAct(mid, mid, 3, act=act),
                                   ConvBnAct(mid, channels, 1, act=None))
        self.act = act(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + x)


class DarkBlock(nn.Module):
    def __init__(self, channels: int, bottle_ratio: float, act: type[nn.Module]):
        super().__init__()
        mid = int(round(channels * bottle_ratio))
        self.convs = nn.Sequential(ConvBnAct(channels, mid, 1, act=act), ConvBnAct(mid, channels, 3, act=act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x) + x


class CrossStage(nn.Module):
    """Downsample, expand, split in two; blocks on one half; transition; concat; merge."""

    def __init__(self, c_in: int, c_out: int, stride: int, depth: int, block: type[nn.Module], act: type[nn.Module],
                 expand_ratio: float, bottle_ratio: float, block_ratio: float, down_growth: bool,
                 cross_linear: bool):
        super().__init__()
        down = c_out if down_growth else c_in
        self.down = ConvBnAct(c_in, down, 3, stride, act=act) if stride != 1 else nn.Identity()
        expanded = int(round(c_out * expand_ratio))
        self.half = expanded // 2
        self.expand = ConvBnAct(down if stride != 1 else c_in, expanded, 1, act=None if cross_linear else act)
        block_out = int(round(c_out * block_ratio))
        self.blocks = nn.Sequential(*[block(block_out, bottle_ratio, act) for _ in range(depth)])
        self.transition_b = ConvBnAct(block_out, self.half, 1, act=act)
        self.transition = ConvBnAct(expanded, c_out, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, processed = self.expand(self.down(x)).split(self.half, dim=1)
        processed = self.transition_b(self.blocks(processed))
        return self.transition(torch.cat([kept, processed], dim=1))


class CSPNet(ClassifierNet):
    def __init__(self, stem: nn.Module, c_in: int, stages: list[dict], num_classes: int = 1000):
        modules = []
        for stage in stages:
            modules.append(CrossStage(c_in, **stage))
            c_in = stage["c_out"]
        super().__init__(stem, nn.Sequential(*modules), pooled_classifier(nn.Linear(c_in, num_classes)))


def cspresnet50() -> CSPNet:
    stem = nn.Sequential(ConvBnAct(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1))
    stages = [dict(c_out=c, stride=s, depth=d, block=ResBottleneck, act=nn.ReLU, expand_ratio=2.0, bottle_ratio=0.5,
                   block_ratio=1.0, down_growth=False, cross_linear=True)
              for c, s, d in zip((128, 256, 512, 1024), (1, 2, 2, 2), (3, 3, 5, 2))]
    return CSPNet(stem, 64, stages)


def cspdarknet53() -> CSPNet:
    stem = ConvBnAct(3, 32, 3, 1, act=nn.LeakyReLU)
    stages = [dict(c_out=c, stride=2, depth=d, block=DarkBlock, act=nn.LeakyReLU,
                   expand_ratio=2.0 if first else 1.0, bottle_ratio=0.5 if first else 1.0,
                   block_ratio=1.0 if first else 0.5, down_growth=True, cross_linear=False)
              for first, c, d in zip((True, False, False, False, False), (64, 128, 256, 512, 1024), (1, 2, 8, 8, 4))]
    return CSPNet(stem, 32, stages)


_TIMM = "timm results CSV at 256x256 (paper: Darknet BFLOPs = 2 x MACs, WongKinYiu/CrossStagePartialNetworks)"
register("cspresnet50", family="cspnet", resolution=256,
         published=Published("21.62M", "4.54G", "GMACs", 79.578, _TIMM))(cspresnet50)
register("cspdarknet53", family="cspnet", resolution=256,
         published=Published("27.64M", "6.57G", "GMACs", 80.078, _TIMM))(cspdarknet53)

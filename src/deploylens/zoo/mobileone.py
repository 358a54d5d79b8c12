"""MobileOne (Vasu et al., CVPR 2023): depthwise + pointwise blocks with k
over-parameterized branches at train time, one conv each at deploy time."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deploylens.zoo.blocks import ClassifierNet, pooled_classifier
from deploylens.zoo.registry import Published, register
from deploylens.zoo.reparam import RepBranches


class MobileOneSE(nn.Module):
    """The official SE: global average pool, 1/16 reduction, sigmoid gate."""

    def __init__(self, channels: int, ratio: float = 0.0625):
        super().__init__()
        self.reduce = nn.Conv2d(channels, int(channels * ratio), 1)
        self.expand = nn.Conv2d(int(channels * ratio), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)  # the official full-window avg_pool2d, export-friendly
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(scale))))


class MobileOneBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, groups: int, branches: int,
                 se: bool = False):
        super().__init__()
        self.branches = RepBranches(c_in, c_out, kernel, stride, groups, kxk_branches=branches)
        self.se = MobileOneSE(c_out) if se else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self.branches(x)))


class MobileOne(ClassifierNet):
    def __init__(self, widths: tuple[float, ...], branches: int = 1, use_se: bool = False,
                 depths: tuple[int, ...] = (2, 8, 10, 1), num_classes: int = 1000):
        c_in = min(64, int(64 * widths[0]))
        stem = MobileOneBlock(3, c_in, 3, 2, 1, branches=1)
        stages = []
        for index, (depth, base) in enumerate(zip(depths, (64, 128, 256, 512))):
            c_out = int(base * widths[index])
            # SE in the last half of stage 3 and all of stage 4 (S4 only)
            se_blocks = (depth // 2 if index == 2 else depth if index == 3 else 0) if use_se else 0
            blocks = []
            for b in range(depth):
                se = b >= depth - se_blocks
                blocks.append(MobileOneBlock(c_in, c_in, 3, 2 if b == 0 else 1, c_in, branches, se))
                blocks.append(MobileOneBlock(c_in, c_out, 1, 1, 1, branches, se))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        super().__init__(stem, nn.Sequential(*stages), pooled_classifier(nn.Linear(c_in, num_classes)))


_SOURCE = "mmpretrain configs/mobileone deploy counts; top-1 apple/ml-mobileone README"
# name: widths, branches, SE, deploy params, deploy MACs, top-1
_VARIANTS = {
    "s0": ((0.75, 1.0, 1.0, 2.0), 4, False, "2.08M", "0.27G", 71.4),
    "s1": ((1.5, 1.5, 2.0, 2.5), 1, False, "4.76M", "0.82G", 75.9),
    "s2": ((1.5, 2.0, 2.5, 4.0), 1, False, "7.81M", "1.30G", 77.4),
    "s3": ((2.0, 2.5, 3.0, 4.0), 1, False, "10.08M", "1.89G", 78.1),
    "s4": ((3.0, 3.5, 3.5, 4.0), 1, True, "14.84M", "2.98G", 79.4),
}


for _name, (_widths, _branches, _se, _params, _macs, _top1) in _VARIANTS.items():
    register(f"mobileone_{_name}", family="mobileone", deploy_counts=True,
             published=Published(_params, _macs, "FLOPs (MACs), deploy form", _top1, _SOURCE))(
        lambda widths=_widths, branches=_branches, use_se=_se: MobileOne(widths, branches, use_se))

"""RepVGG (Ding et al., CVPR 2021): a plain stack of 3x3 convs at deploy time, trained
with parallel 3x3 + 1x1 + identity branches."""

from __future__ import annotations

import torch
import torch.nn as nn

from deploylens.zoo.blocks import ClassifierNet, pooled_classifier
from deploylens.zoo.registry import Published, register
from deploylens.zoo.reparam import RepBranches

# official code: every even layer index in this list is groupwise when groups > 1
_GROUPWISE_LAYERS = frozenset(range(2, 27, 2))


class RepVGGBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, groups: int = 1):
        super().__init__()
        self.branches = RepBranches(c_in, c_out, 3, stride, groups)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.branches(x))


class RepVGG(ClassifierNet):
    def __init__(self, depths: tuple[int, ...], widths: tuple[float, ...], groups: int = 1,
                 num_classes: int = 1000):
        c_in = min(64, int(64 * widths[0]))
        stem = RepVGGBlock(3, c_in, 2)
        layer = 1
        stages = []
        for index, (depth, base) in enumerate(zip(depths, (64, 128, 256, 512))):
            c_out = int(base * widths[index])
            blocks = []
            for b in range(depth):
                g = groups if layer in _GROUPWISE_LAYERS else 1
                blocks.append(RepVGGBlock(c_in, c_out, 2 if b == 0 else 1, g))
                c_in = c_out
                layer += 1
            stages.append(nn.Sequential(*blocks))
        super().__init__(stem, nn.Sequential(*stages), pooled_classifier(nn.Linear(c_in, num_classes)))


_A, _B = (2, 4, 14, 1), (4, 6, 16, 1)
_MMPRE = "mmpretrain configs/repvgg deploy counts; top-1 from the RepVGG paper"
# name: depths, widths (a, a, a, b), groups, deploy params, deploy MACs, top-1
_VARIANTS = {
    "a0": (_A, (0.75, 0.75, 0.75, 2.5), 1, "8.31M", "1.36G", 72.41),
    "a1": (_A, (1, 1, 1, 2.5), 1, "12.79M", "2.37G", 74.46),
    "a2": (_A, (1.5, 1.5, 1.5, 2.75), 1, "25.5M", "5.12G", 76.48),
    "b0": (_B, (1, 1, 1, 2.5), 1, "14.34M", "3.06G", 75.14),
    "b1": (_B, (2, 2, 2, 4), 1, "51.83M", "11.82G", 78.37),
    "b1g2": (_B, (2, 2, 2, 4), 2, "41.36M", "8.82G", 77.78),
    "b1g4": (_B, (2, 2, 2, 4), 4, "36.13M", "7.32G", 77.58),
    "b2": (_B, (2.5, 2.5, 2.5, 5), 1, "80.32M", "18.39G", 78.78),
    "b3": (_B, (3, 3, 3, 5), 1, "110.96M", "26.22G", 80.52),
}


for _name, (_depths, _widths, _groups, _params, _macs, _top1) in _VARIANTS.items():
    register(f"repvgg_{_name}", family="repvgg", deploy_counts=True,
             published=Published(_params, _macs, "Theo FLOPs (MACs), deploy form", _top1, _MMPRE))(
        lambda depths=_depths, widths=_widths, groups=_groups: RepVGG(depths, widths, groups))

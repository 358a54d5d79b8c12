"""Building blocks shared across zoo families."""

from __future__ import annotations

import torch.nn as nn


class ConvBnAct(nn.Sequential):
    """Conv -> BatchNorm -> activation, the unit nearly every CNN is made of."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.ReLU):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        if act is not None:
            self.act = act(inplace=True) if act in (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU) else act()

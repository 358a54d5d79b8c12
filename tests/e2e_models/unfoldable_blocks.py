"""Branch sums that re-parameterization must fold, and ones it must leave alone and
report, written the way third-party code writes them (``nn.Sequential`` conv-BNs named
``conv`` / ``bn``, sums starting from ``0``). Input 1x8x16x16.

``build`` stacks, in order (the report names them by these module paths):

* ``folds``: 3x3 + 1x1 conv-BN + BN identity summed from ``0``: one 3x3 conv.
* ``groups``: a grouped 3x3 conv-BN beside a dense 1x1 conv-BN: groups differ.
* ``strides``: a 9x9 stride-1 conv-BN (no padding) beside a 3x3 stride-2 one: both give
  8x8, but strides differ (the block's output is brought back to 16x16 by upsampling).
* ``relu_branch``: the 1x1 branch ends in a ReLU: not linear.
* ``gated``: an SE gate on the 3x3 branch: the 1x1 and identity branches fold beside it.
* ``untraceable``: Python control flow on a tensor (``if x.dim() == 4``): torch.fx cannot
  trace it (the rest of the model is folded around it).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn(c_in, c_out, kernel, stride=1, padding=None, groups=1):
    result = nn.Sequential()
    result.add_module("conv", nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2 if padding is None else padding,
                                        groups=groups, bias=False))
    result.add_module("bn", nn.BatchNorm2d(c_out))
    return result


class Folds(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense, self.one, self.identity = conv_bn(c, c, 3), conv_bn(c, c, 1), nn.BatchNorm2d(c)

    def forward(self, x):
        out = 0
        for branch in (self.identity, self.one, self.dense):
            out += branch(x)
        return F.relu(out)


class Groups(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense, self.one = conv_bn(c, c, 3, groups=2), conv_bn(c, c, 1)

    def forward(self, x):
        return F.relu(self.dense(x) + self.one(x) + 0)


class Strides(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wide, self.down = conv_bn(c, c, 9, padding=0), conv_bn(c, c, 3, stride=2)

    def forward(self, x):
        return F.interpolate(F.relu(self.wide(x) + self.down(x)), scale_factor=2.0)


class ReluBranch(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense, self.one = conv_bn(c, c, 3), conv_bn(c, c, 1)

    def forward(self, x):
        return F.relu(self.dense(x) + F.relu(self.one(x)))


class Gated(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense, self.one, self.identity = conv_bn(c, c, 3), conv_bn(c, c, 1), nn.BatchNorm2d(c)
        self.reduce, self.expand = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        y = self.dense(x)
        gate = torch.sigmoid(self.expand(F.relu(self.reduce(F.adaptive_avg_pool2d(y, 1)))))
        return F.relu(y * gate + self.one(x) + self.identity(x))


class Untraceable(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.dense, self.one = conv_bn(c, c, 3), conv_bn(c, c, 1)

    def forward(self, x):
        if x.dim() == 4:
            return F.relu(self.dense(x) + self.one(x))
        return x


class Net(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.folds, self.groups, self.strides = Folds(c), Groups(c), Strides(c)
        self.relu_branch, self.gated, self.untraceable = ReluBranch(c), Gated(c), Untraceable(c)

    def forward(self, x):
        for block in (self.folds, self.groups, self.strides, self.relu_branch, self.gated, self.untraceable):
            x = block(x)
        return x


def build():
    torch.manual_seed(0)
    model = Net()
    with torch.no_grad():  # BN statistics a trained model would have, so no fold is trivially exact
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()

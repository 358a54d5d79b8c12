"""Structural re-parameterization: parallel conv-BN branches that are summed fold into
one conv at deploy time (RepVGG, MobileOne, ACNet-style), exactly in eval mode.

The mechanism is one module, :class:`RepBranches`, parameterized by which branches it
has, and one transform, :func:`reparameterize`, that folds every such module in a model.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deploylens.zoo.blocks import ConvBnAct


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of ``conv`` followed by inference ``bn`` as one conv."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    bias = shift if bias is None else shift + bias * scale
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), bias


class RepBranches(nn.Module):
    """Sum of parallel branches over one input: ``kxk_branches`` kxk conv-BNs, an
    optional 1x1 conv-BN (``scale_branch``) and an optional identity BN.

    ``reparameterize()`` replaces them with one kxk conv with bias.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
                 kxk_branches: int = 1, scale_branch: bool = True, identity: bool = True):
        super().__init__()
        self.c_in, self.c_out, self.kernel, self.stride, self.groups = c_in, c_out, kernel, stride, groups
        self.kxk = nn.ModuleList(ConvBnAct(c_in, c_out, kernel, stride, groups, act=None)
                                 for _ in range(kxk_branches))
        self.scale = ConvBnAct(c_in, c_out, 1, stride, groups, act=None, padding=0) \
            if scale_branch and kernel > 1 else None
        self.identity = nn.BatchNorm2d(c_out) if identity and c_in == c_out and stride == 1 else None
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.fused(x)
        out = self.kxk[0](x)
        for branch in self.kxk[1:]:
            out = out + branch(x)
        if self.scale is not None:
            out = out + self.scale(x)
        if self.identity is not None:
            out = out + self.identity(x)
        return out

    def _identity_kernel(self, like: torch.Tensor) -> torch.Tensor:
        per_group = self.c_in // self.groups
        kernel = like.new_zeros(self.c_out, per_group, self.kernel, self.kernel)
        centre = self.kernel // 2
        for channel in range(self.c_out):
            kernel[channel, channel % per_group, centre, centre] = 1.0
        return kernel

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold every branch into one kxk conv (the deploy form). Exact in eval mode."""
        if self.fused is not None:
            return
        like = self.kxk[0].conv.weight  # same device and dtype (meta included)
        weight = like.new_zeros(self.c_out, self.c_in // self.groups, self.kernel, self.kernel)
        bias = like.new_zeros(self.c_out)
        terms = [fold_bn(b.conv.weight, None, b.bn) for b in self.kxk]
        if self.scale is not None:
            w, b = fold_bn(self.scale.conv.weight, None, self.scale.bn)
            pad = self.kernel // 2
            terms.append((F.pad(w, (pad, pad, pad, pad)), b))
        if self.identity is not None:
            terms.append(fold_bn(self._identity_kernel(like), None, self.identity))
        for w, b in terms:
            weight += w
            bias += b
        self.fused = nn.Conv2d(self.c_in, self.c_out, self.kernel, self.stride, self.kernel // 2,
                               groups=self.groups, bias=True, device=like.device, dtype=like.dtype)
        self.fused.weight.copy_(weight)
        self.fused.bias.copy_(bias)
        self.kxk, self.scale, self.identity = nn.ModuleList(), None, None


def reparameterize(model: nn.Module) -> nn.Module:
    """Fold every re-parameterizable block of ``model`` (in place) and return it."""
    for module in list(model.modules()):
        if isinstance(module, RepBranches):
            module.reparameterize()
    return model

"""Structural re-parameterization: parallel linear branches over one input that are
summed (conv-BN of any kernel size, a 1x1 conv-BN, a BN-only identity, an identity) fold
into one conv with bias at deploy time (RepVGG, MobileOne, ACNet-style), exactly in eval
mode.

The algebra is one function, :func:`merge_branches`, over :class:`Branch` terms (``scale *
conv(x) + shift``, or ``scale * x + shift`` for an identity); it either returns the merged
conv or says why the branches cannot be one conv. The zoo's own blocks are one module,
:class:`RepBranches`, folded by :func:`reparameterize`; any other model's branch sums are
found in its traced graph by ``deploylens.deploy.transforms``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from deploylens.zoo.blocks import ConvBnAct

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel of an inference BatchNorm: ``bn(x) = scale * x + shift``."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    return scale, shift if bn.bias is None else shift + bn.bias


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of ``conv`` followed by inference ``bn`` as one conv."""
    scale, shift = bn_affine(bn)
    bias = shift if bias is None else shift + bias * scale
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), bias


@dataclass
class Branch:
    """One addend of a branch sum: ``scale * conv(x) + shift`` (``conv`` None: ``scale * x
    + shift``, an identity or a BN-only branch); ``scale`` and ``shift`` are per output
    channel (a tensor) or one number; ``name`` says which module it is, for reasons."""

    conv: nn.Module | None
    scale: torch.Tensor | float = 1.0
    shift: torch.Tensor | float = 0.0
    name: str = "identity"

    def then(self, scale: torch.Tensor | float, shift: torch.Tensor | float = 0.0) -> "Branch":
        """This branch followed by ``scale * y + shift``."""
        return Branch(self.conv, self.scale * scale, self.shift * scale + shift, self.name)


def _padding(conv: nn.Module) -> tuple[int, ...] | None:
    """The conv's symmetric zero padding per spatial dim (None: asymmetric 'same')."""
    if conv.padding == "valid":
        return (0,) * len(conv.kernel_size)
    if conv.padding == "same":
        reach = [(k - 1) * d for k, d in zip(conv.kernel_size, conv.dilation)]
        return None if any(r % 2 for r in reach) else tuple(r // 2 for r in reach)
    return tuple(conv.padding)


def _per_channel(value: torch.Tensor | float, like: torch.Tensor, channels: int) -> torch.Tensor:
    return value.to(like) if isinstance(value, torch.Tensor) else like.new_full((channels,), float(value))


def _incompatible(branches: list[Branch]) -> str | None:
    """Why ``branches`` cannot be one conv, or None."""
    convs = [b for b in branches if b.conv is not None]
    first = convs[0].conv
    for b in convs:
        c = b.conv
        if type(c) not in CONVS:
            return f"{b.name} is a {type(c).__name__}, not a plain convolution"
        if type(c) is not type(first):
            return f"branches of different dimensionality: {convs[0].name} and {b.name}"
        if c.padding_mode != "zeros":
            return f"{b.name} pads with {c.padding_mode!r}, not zeros"
        if any(d != 1 for d in c.dilation):
            return f"{b.name} is dilated ({c.dilation})"
        if _padding(c) is None:
            return f"{b.name} pads asymmetrically ('same' with an even kernel)"
        for what in ("stride", "groups", "in_channels", "out_channels"):
            if getattr(c, what) != getattr(first, what):
                return (f"branches with different {what.replace('_', ' ')}: {convs[0].name} has "
                        f"{getattr(first, what)}, {b.name} has {getattr(c, what)}")
    # each conv reads positions o*stride - p + i, i < k: all align when 2p - k is the same
    alignment = {tuple(2 * p - k for p, k in zip(_padding(b.conv), b.conv.kernel_size)) for b in convs}
    if len(alignment) > 1:
        return "branch kernels are not centred alike (padding against kernel size differs)"
    identities = [b for b in branches if b.conv is None]
    if identities:
        if any(s != 1 for s in first.stride) or first.in_channels != first.out_channels:
            return (f"{identities[0].name} is an identity but the convs have stride {first.stride} and "
                    f"{first.in_channels} -> {first.out_channels} channels")
        if alignment != {(-1,) * len(first.kernel_size)}:
            return f"{identities[0].name} is an identity but the convs do not keep the spatial size"
    return None


@torch.no_grad()
def merge_branches(branches: list[Branch], constant: float = 0.0) -> nn.Module | str:
    """One conv with bias equal to the sum of ``branches`` (at least one with a conv) plus
    ``constant``, or the reason they cannot be one conv."""
    reason = _incompatible(branches)
    if reason:
        return reason
    first = next(b.conv for b in branches if b.conv is not None)
    like = first.weight
    convs = [b.conv for b in branches if b.conv is not None]
    padding = tuple(max(_padding(c)[d] for c in convs) for d in range(len(first.kernel_size)))
    # the merged kernel keeps the common alignment 2p - k at the largest padding
    kernel = tuple(2 * p - (2 * q - k) for p, q, k in zip(padding, _padding(first), first.kernel_size))
    c_out, per_group = first.out_channels, first.in_channels // first.groups
    weight = like.new_zeros(c_out, per_group, *kernel)
    bias = like.new_full((c_out,), float(constant))
    for b in branches:
        scale = _per_channel(b.scale, like, c_out)
        if b.conv is None:
            w = like.new_zeros(c_out, per_group, *([1] * len(kernel)))
            channels = torch.arange(c_out, device=like.device)
            w[(channels, channels % per_group) + (0,) * len(kernel)] = 1.0
            p = (0,) * len(kernel)
        else:
            w, p = b.conv.weight, _padding(b.conv)
            if b.conv.bias is not None:
                bias += scale * b.conv.bias
        w = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
        at = tuple(slice(q - pb, q - pb + k) for q, pb, k in zip(padding, p, w.shape[2:]))
        weight[(slice(None), slice(None)) + at] += w
        bias += _per_channel(b.shift, like, c_out)
    fused = nn.utils.skip_init(type(first), first.in_channels, c_out, kernel, first.stride, padding,
                               groups=first.groups, bias=True, device=like.device, dtype=like.dtype)
    fused.weight.copy_(weight)
    fused.bias.copy_(bias)
    return fused


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

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold every branch into one kxk conv (the deploy form). Exact in eval mode."""
        if self.fused is not None:
            return
        convs = list(self.kxk) + ([self.scale] if self.scale is not None else [])
        branches = [Branch(b.conv, *bn_affine(b.bn)) for b in convs]
        if self.identity is not None:
            branches.append(Branch(None, *bn_affine(self.identity)))
        fused = merge_branches(branches)
        assert not isinstance(fused, str), fused  # the block builds compatible branches only
        self.fused = fused
        self.kxk, self.scale, self.identity = nn.ModuleList(), None, None


def reparameterize(model: nn.Module) -> nn.Module:
    """Fold every re-parameterizable block of ``model`` (in place) and return it."""
    for module in list(model.modules()):
        if isinstance(module, RepBranches):
            module.reparameterize()
    return model

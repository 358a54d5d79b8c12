"""Small networks with different op mixes, shared by the tests."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Distinct random values in every parameter and BN statistic, so no exporter can
    deduplicate equal-valued tensors (zero biases, unit norms) into one initializer."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2's stride-1 unit: split, 1x1 -> depthwise 3x3 -> 1x1, concat, shuffle."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([left, self.branch(right)], dim=1), 2)


class TinyShuffleNet(nn.Module):
    def __init__(self, channels: int = 32, units: int = 3, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        self.units = nn.Sequential(*[ShuffleUnit(channels) for _ in range(units)])
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.units(self.stem(x)).mean((2, 3)))


class TinyResNet(nn.Module):
    """Residual blocks written with functional calls only (F.conv2d, F.batch_norm)."""

    def __init__(self, channels: int = 16, classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.w1 = nn.Parameter(torch.randn(channels, channels, 3, 3) * 0.1)
        self.w2 = nn.Parameter(torch.randn(channels, channels, 3, 3) * 0.1)
        self.bn = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        y = F.relu(self.bn(F.conv2d(x, self.w1, padding=1)))
        x = F.relu(F.conv2d(y, self.w2, padding=1) + x)
        return F.linear(F.adaptive_avg_pool2d(x, 1).flatten(1), self.fc.weight, self.fc.bias)


class Attention(nn.Module):
    """timm-style multi-head self-attention on F.scaled_dot_product_attention."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class _MultiheadSelfAttention(nn.MultiheadAttention):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x, x, x, need_weights=False)[0]


class TinyViT(nn.Module):
    """Patch embedding + pre-norm transformer blocks, attention from SDPA (timm's
    layout) or from nn.MultiheadAttention."""

    def __init__(self, dim: int = 64, depth: int = 2, heads: int = 4, patch: int = 8, classes: int = 10,
                 torch_mha: bool = False):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            attention = _MultiheadSelfAttention(dim, heads, batch_first=True) if torch_mha else Attention(dim, heads)
            self.blocks.append(nn.ModuleDict({
                "norm1": nn.LayerNorm(dim), "attn": attention,
                "norm2": nn.LayerNorm(dim),
                "mlp": nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))}))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        for block in self.blocks:
            x = x + block["attn"](block["norm1"](x))
            x = x + block["mlp"](block["norm2"](x))
        return self.head(self.norm(x).mean(1))

"""Synthetic networks, one per block type the field uses, built from the zoo's own
blocks. Timed whole, they measure how much slower (or faster) kernels run inside a
network (cache state, dispatch, layout changes at the boundaries) than alone; the fit
(:mod:`deploylens.calibration.fit`) turns that into the whole-network factor."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from deploylens.zoo.blocks import ClassifierNet, ConvBnAct, InvertedResidual, SqueezeExcite, pooled_classifier
from deploylens.zoo.classic import DenseBlock, Fire
from deploylens.zoo.ghostnet import GhostBottleneck
from deploylens.zoo.resnet import BasicBlock, Bottleneck
from deploylens.zoo.shufflenet import ShuffleV2Unit
from deploylens.zoo.vovnet import OSAModule

# the batch sizes the networks are timed at, and their input resolution
BATCHES = (1, 8)
RESOLUTION = 224

Blocks = tuple[nn.Module, list[nn.Module], int]  # stem, blocks, the last block's channels


def _stem(c_out: int, kernel: int = 3, pool: bool = False, act: type[nn.Module] = nn.ReLU) -> nn.Module:
    conv = ConvBnAct(3, c_out, kernel, 2, act=act)
    return nn.Sequential(conv, nn.MaxPool2d(3, 2, 1)) if pool else conv


def inverted_residual() -> Blocks:  # MobileNetV2's block
    blocks, width = [], 24
    for c_out, stride in ((40, 2), (40, 1), (80, 2), (80, 1), (112, 2), (112, 1), (192, 2), (192, 1)):
        blocks.append(InvertedResidual(width, c_out, 3, stride, 4 * width, act=nn.ReLU))
        width = c_out
    return _stem(24), blocks, width


def residual() -> Blocks:  # ResNet-18's block
    blocks, width = [], 32
    for c_out, stride in ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1)):
        blocks.append(BasicBlock(width, c_out, stride))
        width = c_out
    return _stem(32, 7, pool=True), blocks, width


def plain() -> Blocks:  # VGG-style pairs of 3x3 convs
    blocks, width = [], 16
    for c_out in (32, 64, 128, 256):
        blocks.append(nn.Sequential(ConvBnAct(width, c_out), ConvBnAct(c_out, c_out), nn.MaxPool2d(2)))
        width = c_out
    return _stem(16), blocks, width


def squeeze_excite() -> Blocks:  # MobileNetV3's block: hard-swish, 5x5 depthwise, squeeze-excite
    blocks, width = [], 16
    for c_out, stride, kernel in ((24, 2, 3), (24, 1, 3), (40, 2, 5), (40, 1, 5), (96, 2, 5), (96, 1, 5)):
        hidden = 4 * width
        blocks.append(InvertedResidual(width, c_out, kernel, stride, hidden, act=nn.Hardswish,
                                       se=SqueezeExcite(hidden, hidden // 4, gate=nn.Hardsigmoid)))
        width = c_out
    return _stem(16, act=nn.Hardswish), blocks, width


def split_shuffle() -> Blocks:  # ShuffleNetV2's unit: slicing, concatenation, channel shuffle
    blocks, width = [], 24
    for c_out in (116, 232):
        blocks += [ShuffleV2Unit(width, c_out, 2)] + [ShuffleV2Unit(c_out, c_out, 1) for _ in range(3)]
        width = c_out
    return _stem(24, pool=True), blocks, width


def bottleneck() -> Blocks:  # ResNet-50's block: 1x1 reduce, 3x3, 1x1 expand
    blocks, width = [], 32
    for middle, stride in ((32, 1), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1)):
        blocks.append(Bottleneck(width, middle, stride))
        width = middle * Bottleneck.expansion
    return _stem(32, 7, pool=True), blocks, width


def separable() -> Blocks:  # MobileNetV1's block: depthwise then pointwise, no residual
    blocks, width = [], 32
    for c_out, stride in ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)):
        blocks.append(nn.Sequential(ConvBnAct(width, width, 3, stride, groups=width), ConvBnAct(width, c_out, 1)))
        width = c_out
    return _stem(32), blocks, width


def fire() -> Blocks:  # SqueezeNet's fire module: 1x1 squeeze, 1x1 and 3x3 expands concatenated
    blocks, width = [], 64
    for squeeze, expand in ((16, 64), (16, 64), (0, 0), (32, 128), (32, 128), (0, 0), (48, 192), (64, 256)):
        if not squeeze:
            blocks.append(nn.MaxPool2d(3, 2, 1))
            continue
        blocks.append(Fire(width, squeeze, expand, expand))
        width = 2 * expand
    return _stem(64, pool=True), blocks, width


def ghost() -> Blocks:  # GhostNet's bottleneck: ghost modules, depthwise downsampling
    blocks, width = [], 16
    for hidden, c_out, stride in ((48, 24, 2), (72, 24, 1), (72, 40, 2), (120, 40, 1), (240, 80, 2), (184, 80, 1)):
        blocks.append(GhostBottleneck(width, hidden, c_out, 3, stride, 0))
        width = c_out
    return _stem(16), blocks, width


def aggregation() -> Blocks:  # VoVNet's one-shot aggregation: 3x3 convs in a chain, concatenated once
    blocks, width = [], 64
    for growth, c_out in ((32, 128), (48, 192), (64, 256)):
        blocks += [OSAModule(width, growth, c_out, 3, identity=False), nn.MaxPool2d(2)]
        width = c_out
    return nn.Sequential(ConvBnAct(3, 32, 3, 2), ConvBnAct(32, 64, 3, 2)), blocks, width


def dense_growth() -> Blocks:  # DenseNet's dense block: each layer's output concatenated to its input
    blocks, width = [], 32
    for layers, growth in ((4, 16), (6, 32)):
        blocks.append(DenseBlock(width, layers, growth, 4))
        width += layers * growth
        blocks += [ConvBnAct(width, width // 2, 1), nn.AvgPool2d(2)]
        width //= 2
    return _stem(32, pool=True), blocks, width


STYLES: dict[str, Callable[[], Blocks]] = {
    builder.__name__: builder
    for builder in (inverted_residual, residual, plain, squeeze_excite, split_shuffle, bottleneck, separable, fire,
                    ghost, aggregation, dense_growth)}


def synthetic_network(style: str) -> nn.Module:
    """The synthetic network of ``style`` (one of :data:`STYLES`), with a 100-class head."""
    if style not in STYLES:
        raise ValueError(f"unknown synthetic network style {style!r}")
    stem, blocks, width = STYLES[style]()
    return ClassifierNet(stem, nn.Sequential(*blocks), pooled_classifier(nn.Linear(width, 100)))


def label(style: str, batch: int) -> str:
    """How a network's timing is named in a profile's ``fixed_s``."""
    return f"{style} batch {batch}"

"""ResNet (He et al., CVPR 2016), in torchvision's layout so parameter counts match
its reference weights exactly."""

from __future__ import annotations

import torch
import torch.nn as nn

from deploylens.zoo.blocks import ClassifierNet, ConvBnAct, pooled_classifier
from deploylens.zoo.registry import Published, register


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        self.conv1 = ConvBnAct(c_in, width, 3, stride)
        self.conv2 = ConvBnAct(width, width, 3, act=None)
        self.downsample = _shortcut(c_in, width * self.expansion, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.downsample(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        self.conv1 = ConvBnAct(c_in, width, 1)
        self.conv2 = ConvBnAct(width, width, 3, stride)  # stride on the 3x3, as torchvision (ResNet v1.5)
        self.conv3 = ConvBnAct(width, width * self.expansion, 1, act=None)
        self.downsample = _shortcut(c_in, width * self.expansion, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.downsample(x))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    return nn.Identity() if stride == 1 and c_in == c_out else ConvBnAct(c_in, c_out, 1, stride, act=None)


class ResNet(ClassifierNet):
    def __init__(self, block: type[nn.Module], depths: tuple[int, ...], num_classes: int = 1000):
        stages, c_in = [], 64
        for index, depth in enumerate(depths):
            width = 64 * 2**index
            blocks = []
            for b in range(depth):
                blocks.append(block(c_in, width, 2 if b == 0 and index > 0 else 1))
                c_in = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        super().__init__(nn.Sequential(ConvBnAct(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)), nn.Sequential(*stages),
                         pooled_classifier(nn.Linear(c_in, num_classes)))


_TORCHVISION = "torchvision ResNet*_Weights.IMAGENET1K_V1 metadata"


@register("resnet18", family="resnet",
          published=Published("11689512", "1.814G", "GFLOPS (MACs)", 69.758, _TORCHVISION))
def resnet18() -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2))


@register("resnet50", family="resnet",
          published=Published("25557032", "4.089G", "GFLOPS (MACs)", 76.130, _TORCHVISION))
def resnet50() -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3))

"""Baselines in torchvision's layout: VGG (Simonyan & Zisserman 2015), SqueezeNet
(Iandola et al. 2016), DenseNet (Huang et al., CVPR 2017)."""

from __future__ import annotations

import torch
import torch.nn as nn

from deploylens.zoo.blocks import activation
from deploylens.zoo.registry import Published, register

_TORCHVISION = "torchvision weight metadata (num_params, _ops, acc@1)"


class VGG(nn.Module):
    def __init__(self, config: list, num_classes: int = 1000):
        super().__init__()
        layers, c_in = [], 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, item, 3, padding=1), nn.ReLU(inplace=True)]
                c_in = item
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 49, 4096), nn.ReLU(inplace=True), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(), nn.Linear(4096, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


register("vgg16", family="vgg", published=Published("138357544", "15.47G", "GFLOPS (MACs)", 71.592, _TORCHVISION))(
    lambda: VGG([64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]))


class Fire(nn.Module):
    def __init__(self, c_in: int, squeeze: int, expand1x1: int, expand3x3: int):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(c_in, squeeze, 1), nn.ReLU(inplace=True))
        self.expand1x1 = nn.Sequential(nn.Conv2d(squeeze, expand1x1, 1), nn.ReLU(inplace=True))
        self.expand3x3 = nn.Sequential(nn.Conv2d(squeeze, expand3x3, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], dim=1)


class SqueezeNet(nn.Module):
    def __init__(self, stem: nn.Module, fires: list, num_classes: int = 1000):
        super().__init__()
        layers = [stem, nn.ReLU(inplace=True)]
        for item in fires:
            layers.append(nn.MaxPool2d(3, 2, ceil_mode=True) if item == "M" else Fire(*item))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, num_classes, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


register("squeezenet1_0", family="squeezenet",
         published=Published("1248424", "0.82G", "GFLOPS (MACs)", 58.092, _TORCHVISION))(
    lambda: SqueezeNet(nn.Conv2d(3, 96, 7, 2), ["M", (96, 16, 64, 64), (128, 16, 64, 64), (128, 32, 128, 128), "M",
                                                (256, 32, 128, 128), (256, 48, 192, 192), (384, 48, 192, 192),
                                                (384, 64, 256, 256), "M", (512, 64, 256, 256)]))
register("squeezenet1_1", family="squeezenet",
         published=Published("1235496", "0.349G", "GFLOPS (MACs)", 58.178, _TORCHVISION))(
    lambda: SqueezeNet(nn.Conv2d(3, 64, 3, 2), ["M", (64, 16, 64, 64), (128, 16, 64, 64), "M", (128, 32, 128, 128),
                                                (256, 32, 128, 128), "M", (256, 48, 192, 192), (384, 48, 192, 192),
                                                (384, 64, 256, 256), (512, 64, 256, 256)]))


def _bn_act_conv(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    """DenseNet's pre-activation unit: BN -> ReLU -> conv."""
    return nn.Sequential(nn.BatchNorm2d(c_in), activation(nn.ReLU),
                         nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False))


class DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int, bottleneck: int):
        super().__init__()
        self.reduce = _bn_act_conv(c_in, bottleneck * growth, 1)
        self.grow = _bn_act_conv(bottleneck * growth, growth, 3)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        # dense concatenation: every layer re-reads all earlier feature maps
        return self.grow(self.reduce(torch.cat(features, dim=1)))


class DenseBlock(nn.Module):
    def __init__(self, c_in: int, layers: int, growth: int, bottleneck: int):
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(c_in + i * growth, growth, bottleneck) for i in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, dim=1)


class DenseNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...], growth: int = 32, stem: int = 64, bottleneck: int = 4,
                 num_classes: int = 1000):
        super().__init__()
        stages: list[nn.Module] = [nn.Conv2d(3, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem),
                                   activation(nn.ReLU), nn.MaxPool2d(3, 2, 1)]
        c = stem
        for index, layers in enumerate(blocks):
            stages.append(DenseBlock(c, layers, growth, bottleneck))
            c += layers * growth
            if index < len(blocks) - 1:
                stages.append(nn.Sequential(_bn_act_conv(c, c // 2, 1), nn.AvgPool2d(2, 2)))
                c //= 2
        stages += [nn.BatchNorm2d(c), activation(nn.ReLU)]
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


register("densenet121", family="densenet",
         published=Published("7978856", "2.834G", "GFLOPS (MACs)", 74.434, _TORCHVISION))(
    lambda: DenseNet((6, 12, 24, 16)))

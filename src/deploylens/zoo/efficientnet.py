"""EfficientNet-B0 (Tan & Le, ICML 2019): MBConv blocks with squeeze-excite and SiLU."""

from __future__ import annotations

import torch.nn as nn

from deploylens.zoo.blocks import ClassifierNet, ConvBnAct, InvertedResidual, SqueezeExcite, pooled_classifier
from deploylens.zoo.registry import Published, register

# expansion, kernel, stride, out channels, repeats
_B0 = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
       (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


class EfficientNet(ClassifierNet):
    def __init__(self, num_classes: int = 1000):
        blocks, c_in = [], 32
        for expansion, kernel, stride, c_out, repeats in _B0:
            for r in range(repeats):
                expanded = c_in * expansion
                # squeeze width is a quarter of the block's input width
                se = SqueezeExcite(expanded, max(1, c_in // 4), act=nn.SiLU)
                blocks.append(InvertedResidual(c_in, c_out, kernel, stride if r == 0 else 1, expanded, nn.SiLU, se))
                c_in = c_out
        blocks.append(ConvBnAct(c_in, 1280, 1, act=nn.SiLU))
        super().__init__(ConvBnAct(3, 32, 3, 2, act=nn.SiLU), nn.Sequential(*blocks),
                         pooled_classifier(nn.Dropout(0.2), nn.Linear(1280, num_classes)))


register("efficientnet_b0", family="efficientnet",
         published=Published("5.29M", "0.39G", "FLOPs (MACs)", 76.542,
                             "params, top-1: timm tf_efficientnet_b0.in1k results CSV; "
                             "MACs: EfficientNet paper Table 2 (transcription)"))(
    EfficientNet)

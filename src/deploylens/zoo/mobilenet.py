"""MobileNet V1 (Howard et al. 2017), V2 (Sandler et al. 2018), V3 (Howard et al. 2019)."""

from __future__ import annotations

import torch.nn as nn

from deploylens.zoo.blocks import (
    ClassifierNet,
    ConvBnAct,
    InvertedResidual,
    SqueezeExcite,
    make_divisible,
    pooled_classifier,
)
from deploylens.zoo.registry import Published, register


class MobileNet(ClassifierNet):
    """A stem, a sequence of blocks and a pooled classifier head."""

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], head: nn.Module):
        super().__init__(stem, nn.Sequential(*blocks), head)


# --- V1: depthwise-separable convs -------------------------------------------------

_V1 = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


def mobilenet_v1(alpha: float, num_classes: int = 1000) -> MobileNet:
    c_in = int(32 * alpha)
    blocks = []
    for c, stride in _V1:
        c_out = int(c * alpha)
        blocks.append(nn.Sequential(ConvBnAct(c_in, c_in, 3, stride, groups=c_in, act=nn.ReLU6),
                                    ConvBnAct(c_in, c_out, 1, act=nn.ReLU6)))
        c_in = c_out
    return MobileNet(ConvBnAct(3, int(32 * alpha), 3, 2, act=nn.ReLU6), blocks,
                     pooled_classifier(nn.Linear(c_in, num_classes)))


_TF_V1 = ("params: tensorflow/models research/slim/nets/mobilenet_v1.md (TF-slim checkpoints); "
          "MACs: MobileNetV1 paper as quoted by ShuffleNetV2 / ShuffleNet-Series")
for _alpha, _params, _macs, _top1 in [(1.0, "4.24M", "569M", 70.9), (0.75, "2.59M", "325M", 68.4),
                                      (0.5, "1.34M", "150M", 63.3)]:
    register(f"mobilenet_v1_{int(_alpha * 100):03d}", family="mobilenet_v1",
             published=Published(_params, _macs, "Million MACs", _top1, _TF_V1, params_counts="variables"))(
        lambda alpha=_alpha: mobilenet_v1(alpha))


# --- V2: inverted residuals with linear bottlenecks --------------------------------

_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def mobilenet_v2(width: float, num_classes: int = 1000) -> MobileNet:
    c_in = make_divisible(32 * width)
    stem = ConvBnAct(3, c_in, 3, 2, act=nn.ReLU6)
    blocks = []
    for expansion, c, repeats, stride in _V2:
        c_out = make_divisible(c * width)
        for r in range(repeats):
            blocks.append(InvertedResidual(c_in, c_out, 3, stride if r == 0 else 1, round(c_in * expansion)))
            c_in = c_out
    last = make_divisible(1280 * max(1.0, width))
    blocks.append(ConvBnAct(c_in, last, 1, act=nn.ReLU6))
    return MobileNet(stem, blocks, pooled_classifier(nn.Dropout(0.2), nn.Linear(last, num_classes)))


_TF_V2 = "tensorflow/models research/slim/nets/mobilenet/README.md (TF checkpoints)"
for _width, _params, _macs, _top1 in [(1.0, "3.47M", "300M", 71.8), (0.75, "2.61M", "209M", 69.8),
                                      (0.5, "1.95M", "97M", 65.4), (1.4, "6.06M", "582M", 75.0)]:
    register(f"mobilenet_v2_{int(_width * 100):03d}", family="mobilenet_v2",
             published=Published(_params, _macs, "MACs", _top1, _TF_V2, params_counts="weights"))(
        lambda width=_width: mobilenet_v2(width))


# --- V3: hard-swish, squeeze-excite, searched layouts -------------------------------

_RE, _HS = nn.ReLU, nn.Hardswish
# kernel, expanded, out, SE, activation, stride
_V3_LARGE = [(3, 16, 16, False, _RE, 1), (3, 64, 24, False, _RE, 2), (3, 72, 24, False, _RE, 1),
             (5, 72, 40, True, _RE, 2), (5, 120, 40, True, _RE, 1), (5, 120, 40, True, _RE, 1),
             (3, 240, 80, False, _HS, 2), (3, 200, 80, False, _HS, 1), (3, 184, 80, False, _HS, 1),
             (3, 184, 80, False, _HS, 1), (3, 480, 112, True, _HS, 1), (3, 672, 112, True, _HS, 1),
             (5, 672, 160, True, _HS, 2), (5, 960, 160, True, _HS, 1), (5, 960, 160, True, _HS, 1)]
_V3_SMALL = [(3, 16, 16, True, _RE, 2), (3, 72, 24, False, _RE, 2), (3, 88, 24, False, _RE, 1),
             (5, 96, 40, True, _HS, 2), (5, 240, 40, True, _HS, 1), (5, 240, 40, True, _HS, 1),
             (5, 120, 48, True, _HS, 1), (5, 144, 48, True, _HS, 1), (5, 288, 96, True, _HS, 2),
             (5, 576, 96, True, _HS, 1), (5, 576, 96, True, _HS, 1)]


def mobilenet_v3(config: list[tuple], last: int, num_classes: int = 1000) -> MobileNet:
    c_in = 16
    blocks = []
    for kernel, expanded, c_out, se, act, stride in config:
        squeeze = SqueezeExcite(expanded, make_divisible(expanded // 4), gate=nn.Hardsigmoid) if se else None
        blocks.append(InvertedResidual(c_in, c_out, kernel, stride, expanded, act, squeeze))
        c_in = c_out
    blocks.append(ConvBnAct(c_in, 6 * c_in, 1, act=_HS))
    head = pooled_classifier(nn.Linear(6 * c_in, last), nn.Hardswish(inplace=True), nn.Dropout(0.2),
                              nn.Linear(last, num_classes))
    return MobileNet(ConvBnAct(3, 16, 3, 2, act=_HS), blocks, head)


register("mobilenet_v3_large_100", family="mobilenet_v3",
         published=Published("5.48M", "217M", "MACs", 75.2,
                              "params: timm mobilenetv3_large_100 (torchvision layout); MACs, top-1: " + _TF_V2))(
    lambda: mobilenet_v3(_V3_LARGE, 1280))
register("mobilenet_v3_small_100", family="mobilenet_v3",
         published=Published("2.54M", "56M", "MACs", 67.4,
                              "params: timm mobilenetv3_small_100; MACs, top-1: MobileNetV3 paper Table 3"))(
    lambda: mobilenet_v3(_V3_SMALL, 1024))

"""ShuffleNetV2's guidelines G1-G4 (Ma et al., ECCV 2018, section 2, Tables 1-4) and the
memory access cost they rest on, as the paper built them: stacks of 10 blocks at a 56x56
input. The paper timed a GTX 1080 Ti (batches/s) and a Snapdragon 810 (images/s, one
thread); on a CPU the study times the ARM column's settings, on a GPU the GPU column's."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from deploylens.studies.core import Arm, Expectation, conv_stack
from deploylens.studies.runner import Design, Settings, study

SOURCE = "ShuffleNetV2 (Ma et al., ECCV 2018), section 2, Tables 1-4 (GTX 1080 Ti, cuDNN 7.0; Snapdragon 810)"
HW = 56  # Tables 1-3 state a 56x56 input; Table 4 states none, the study keeps 56x56
BLOCKS = 10
# the channel multiplier of the paper's columns the study times: x2 on a CPU (the x1 ARM
# nets run too little work per op to time well), x4 on a GPU; the batch as well
MULTIPLIER = {"cpu": 2, "cuda": 4}
BATCH = {"cpu": 1, "cuda": 8}


def _platform(settings: Settings) -> str:
    return "GPU" if settings.device == "cuda" else "ARM"


def _shape(settings: Settings, channels: int, hw: int = HW) -> tuple[int, ...]:
    return (BATCH[settings.device], channels, hw, hw)


def _ratio_expectations(baseline: str, others: list[str], speeds: dict[str, float]) -> list[Expectation]:
    """Each of ``others`` is slower than ``baseline`` (the guideline's claim), taking
    speed(baseline) / speed(other) times as long in the paper's table (where its own
    timings show no slowdown, the ratio is 1.0 or below: the claim still says slower)."""
    return [Expectation(other, baseline, speeds[baseline] / speeds[other], slower=True) for other in others]


def pointwise_pairs(c1: int, c2: int) -> nn.Module:
    """G1's benchmark net: 10 blocks of two 1x1 convs, c1 -> c2 then c2 -> c1."""
    return nn.Sequential(*(nn.Sequential(nn.Conv2d(c1, c2, 1, bias=False), nn.Conv2d(c2, c1, 1, bias=False))
                           for _ in range(BLOCKS)))


# Table 1: (c1, c2) for x1 on the GPU and on ARM, and the speeds per multiplier
G1_TABLE = {"1:1": ((128, 128), (32, 32), {"GPU": (1480, 723, 232), "ARM": (76.2, 21.7, 5.3)}),
            "1:2": ((90, 180), (22, 44), {"GPU": (1296, 586, 206), "ARM": (72.9, 20.5, 5.1)}),
            "1:6": ((52, 312), (13, 78), {"GPU": (876, 489, 189), "ARM": (69.1, 17.9, 4.6)}),
            "1:12": ((36, 432), (9, 108), {"GPU": (748, 392, 163), "ARM": (57.6, 15.1, 4.4)})}
_COLUMN = {1: 0, 2: 1, 4: 2}


@study("g1", "G1: equal channel widths minimise memory access cost and time (at equal FLOPs, c1:c2 = 1:1 is "
       "fastest)", SOURCE + ", Table 1")
def g1(settings: Settings) -> Design:
    m, platform = MULTIPLIER[settings.device], _platform(settings)
    arms, speeds = [], {}
    for ratio, (gpu, arm, measured) in G1_TABLE.items():
        c1, c2 = (c * m for c in (gpu if platform == "GPU" else arm))
        arms.append(Arm(f"c1:c2 {ratio} ({c1},{c2})", lambda c1=c1, c2=c2: pointwise_pairs(c1, c2),
                        _shape(settings, c1)))
        speeds[arms[-1].name] = measured[platform][_COLUMN[m]]
    names = [a.name for a in arms]
    return Design(arms, _ratio_expectations(names[0], names[1:], speeds),
                  {f"{platform} x{m} ({'batches' if platform == 'GPU' else 'images'}/s)": speeds},
                  [f"the paper's {platform} x{m} channels (x{m} of its x1 column), {BLOCKS} blocks, {HW}x{HW}"])


# Table 2: c for x1 on the GPU and on ARM per group count, and the speeds per multiplier
G2_TABLE = {1: (128, 64, {"GPU": (2451, 1289, 437), "ARM": (40.0, 10.2, 2.3)}),
            2: (180, 90, {"GPU": (1725, 873, 341), "ARM": (35.0, 9.5, 2.2)}),
            4: (256, 128, {"GPU": (1026, 644, 338), "ARM": (32.9, 8.7, 2.1)}),
            8: (360, 180, {"GPU": (634, 445, 230), "ARM": (27.8, 7.5, 1.8)})}


@study("g2", "G2: many groups raise memory access cost and time (at equal FLOPs, g = 1 is fastest)",
       SOURCE + ", Table 2")
def g2(settings: Settings) -> Design:
    m, platform = MULTIPLIER[settings.device], _platform(settings)
    arms, speeds = [], {}
    for groups, (gpu, arm, measured) in G2_TABLE.items():
        c = (gpu if platform == "GPU" else arm) * m
        arms.append(Arm(f"g={groups} c={c}", lambda c=c, g=groups: conv_stack(c, 1, BLOCKS, g), _shape(settings, c)))
        speeds[arms[-1].name] = measured[platform][_COLUMN[m]]
    names = [a.name for a in arms]
    return Design(arms, _ratio_expectations(names[0], names[1:], speeds),
                  {f"{platform} x{m}": speeds},
                  [f"the paper's {platform} x{m} channels, {BLOCKS} layers, {HW}x{HW}"])


def fragment_width(channels: int, count: int, parallel: bool) -> int:
    """The channels of a G3 block of ``count`` fragments with the FLOPs of a 1-fragment
    block of ``channels``: in series, count x w^2 = c^2 (w = c / sqrt(count)); in
    parallel, each of the count branches maps c to c / count: c itself."""
    return channels if parallel else round(channels / math.sqrt(count))


class Fragments(nn.Module):
    """G3's block: ``count`` 1x1 convs in series, or in parallel branches whose outputs
    are concatenated, on :func:`fragment_width` channels."""

    def __init__(self, channels: int, count: int, parallel: bool):
        super().__init__()
        self.parallel = parallel
        width = fragment_width(channels, count, parallel)
        self.convs = nn.ModuleList(nn.Conv2d(width, width // count if parallel else width, 1, bias=False)
                                   for _ in range(count))

    def forward(self, x):
        if self.parallel:
            return torch.cat([conv(x) for conv in self.convs], 1)
        for conv in self.convs:
            x = conv(x)
        return x


# Table 3: speeds per structure at GPU c = 128, 256, 512 and CPU/ARM c = 64, 128, 256
G3_TABLE = {"1-fragment": (1, False, (2446, 1274, 434), (40.2, 10.1, 2.3)),
            "2-fragment-series": (2, False, (1790, 909, 336), (38.6, 10.1, 2.2)),
            "4-fragment-series": (4, False, (752, 745, 349), (38.4, 10.1, 2.3)),
            "2-fragment-parallel": (2, True, (1537, 803, 320), (33.4, 9.1, 2.2)),
            "4-fragment-parallel": (4, True, (691, 572, 292), (35.0, 8.4, 2.1))}
G3_CHANNELS = {"GPU": (128, 256, 512), "ARM": (64, 128, 256)}


@study("g3", "G3: network fragmentation (many small kernels in a block) lowers speed at equal FLOPs",
       SOURCE + ", Table 3")
def g3(settings: Settings) -> Design:
    platform = _platform(settings)
    column = 1  # the middle column: GPU c=256, ARM c=128
    c = G3_CHANNELS[platform][column]
    arms, speeds = [], {}
    for structure, (count, parallel, gpu, arm) in G3_TABLE.items():
        arms.append(Arm(structure, lambda n=count, p=parallel: nn.Sequential(*(Fragments(c, n, p)
                                                                              for _ in range(BLOCKS))),
                        _shape(settings, fragment_width(c, count, parallel))))
        speeds[structure] = (gpu if platform == "GPU" else arm)[column]
    names = [a.name for a in arms]
    return Design(arms, _ratio_expectations(names[0], names[1:], speeds), {f"{platform} c={c}": speeds},
                  [f"c={c}, {BLOCKS} blocks, {HW}x{HW}; the paper's block diagrams (its appendix) are not in the "
                   "reference read: n fragments in series run on c/sqrt(n) channels, n in parallel each map c to "
                   "c/n and are concatenated, so every structure has the 1-fragment's FLOPs"])


class Bottleneck(nn.Module):
    """G4's unit: ResNet's bottleneck 1x1 -> 3x3 -> 1x1 on ``channels`` (a quarter of them
    inside), with or without its ReLUs and its shortcut."""

    def __init__(self, channels: int, relu: bool, shortcut: bool):
        super().__init__()
        inner = channels // 4
        act = nn.ReLU if relu else nn.Identity
        self.body = nn.Sequential(nn.Conv2d(channels, inner, 1, bias=False), act(),
                                  nn.Conv2d(inner, inner, 3, padding=1, bias=False), act(),
                                  nn.Conv2d(inner, channels, 1, bias=False))
        self.shortcut, self.act = shortcut, act()

    def forward(self, x):
        y = self.body(x)
        return self.act(x + y if self.shortcut else y)


# Table 4: (ReLU, shortcut) -> speeds at GPU c = 32, 64, 128 and CPU/ARM c = 32, 64, 128
G4_TABLE = {"ReLU and shortcut": (True, True, (2427, 2066, 1436), (56.7, 16.9, 5.0)),
            "ReLU only": (True, False, (2647, 2256, 1735), (61.9, 18.8, 5.2)),
            "shortcut only": (False, True, (2672, 2121, 1458), (57.3, 18.2, 5.1)),
            "neither": (False, False, (2842, 2376, 1782), (66.3, 20.2, 5.4))}
G4_CHANNELS = (32, 64, 128)


@study("g4", "G4: element-wise ops (ReLU, the shortcut's add) are not negligible: removing them speeds a "
       "ResNet bottleneck up", SOURCE + ", Table 4")
def g4(settings: Settings) -> Design:
    platform = _platform(settings)
    column = 2 if platform == "GPU" else 1  # GPU c=128, ARM c=64
    c = G4_CHANNELS[column]
    arms, speeds = [], {}
    for variant, (relu, shortcut, gpu, arm) in G4_TABLE.items():
        arms.append(Arm(variant, lambda r=relu, s=shortcut: nn.Sequential(*(Bottleneck(c, r, s)
                                                                           for _ in range(BLOCKS))),
                        _shape(settings, c)))
        speeds[variant] = (gpu if platform == "GPU" else arm)[column]
    names = [a.name for a in arms]
    # the full unit is the slowest: each variant without some element-wise ops is faster
    return Design(arms, [Expectation(names[0], other, speeds[other] / speeds[names[0]], slower=True)
                         for other in names[1:]],
                  {f"{platform} c={c}": speeds},
                  [f"c={c} channels ({c // 4} inside the bottleneck), {BLOCKS} units, {HW}x{HW}"])


@study("mac", "Memory access cost: 1x1 convs of equal FLOPs move very different bytes, and the ones that move "
       "more take longer", "ShuffleNetV2 (Ma et al., ECCV 2018), section 2 (G1: MAC = hw(c1 + c2) + c1 c2)")
def mac(settings: Settings) -> Design:
    # h*w*c^2 is the same for each: 224^2 x 16^2 = 56^2 x 64^2 = 14^2 x 256^2
    layouts = [(256, 14), (64, 56), (16, 224)]
    arms = [Arm(f"c={c} at {hw}x{hw}", lambda c=c: conv_stack(c, 1, BLOCKS), _shape(settings, c, hw)) for c, hw in layouts]
    names = [a.name for a in arms]
    expectations = [Expectation(names[1], names[0], None, slower=True),
                    Expectation(names[2], names[1], None, slower=True)]
    return Design(arms, expectations, {},
                  [f"{BLOCKS} 1x1 convs c->c each; equal FLOPs, bytes h*w*2c + c^2 per conv: the larger maps move "
                   "more (the paper states the formula, no timing table)"])

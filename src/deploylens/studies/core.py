"""A study: one claim of the field guide as an experiment on this machine.

Its arms (small networks built the way the paper built them) are timed interleaved: in
every round each arm runs one block of iterations, in an order rotated round by round,
so a noisy neighbour slows every arm alike. Arms are compared by the ratio of their
times within each round, and a comparison's verdict rests on the 95% confidence
interval of the median of those paired ratios (order statistics: no normality assumed):

* *borne out*: the interval lies beyond 1 on the side the paper reports, by more than
  ``MARGIN``;
* *contradicted*: it lies beyond 1 on the other side, by more than ``MARGIN``;
* *inconclusive*: it holds 1, it lies within ``MARGIN`` of 1, or there were too few
  rounds to tell.

The margin is there because rounds within one run are not independent of the run: the
same study run twice in a row on a shared 2-core VM gave paired ratios of 1.03 (1.02-1.04)
and 0.97 (0.95-0.98) for one pair (ShuffleNetV2 G3's series fragments), each interval
excluding 1 on its own side. Differences under 5% are below what reruns move by there.
"""

from __future__ import annotations

import math
import time
from statistics import median
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch.nn as nn

from deploylens.bench.stats import median_ci

BORNE_OUT, CONTRADICTED, INCONCLUSIVE = "borne out", "contradicted", "inconclusive"
# a time ratio within this factor of 1 is too small to call (see the module's docstring)
MARGIN = 1.05
# rounds a comparison needs before its interval can exclude 1 (order statistics at 95%)
MIN_ROUNDS = 6
# how long one arm's block of iterations runs: long enough for the timer, short enough for many rounds
BLOCK_S = 0.02


# the arms' building blocks: stacks of stride-1 convs, long enough to time
def conv(c_in: int, c_out: int, kernel: int, groups: int = 1) -> nn.Conv2d:
    """A stride-1 conv keeping the map's size (padding k // 2), without bias."""
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False)


def conv_stack(channels: int, kernel: int, layers: int, groups: int = 1) -> nn.Module:
    """``layers`` convs ``channels`` -> ``channels`` of ``kernel`` x ``kernel`` in series."""
    return nn.Sequential(*(conv(channels, channels, kernel, groups) for _ in range(layers)))


@dataclass
class Arm:
    """One network the study times: ``build()`` makes it, it runs on ``input_shape``."""
    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    flops: int = 0  # the analyzer's, filled in by the runner
    bytes: int = 0  # fused view
    params: int = 0
    peak_activation_bytes: int = 0
    samples: list[float] = field(default_factory=list)  # seconds per iteration, one per round

    @property
    def median_ms(self) -> float | None:
        return median(self.samples) * 1e3 if self.samples else None


@dataclass(frozen=True)
class Expectation:
    """The paper's claim about two arms: ``a`` takes ``paper_ratio`` times as long as
    ``b`` (its direction is what the verdict checks; None when the paper gives no number
    for this pair, then ``slower`` says which way)."""
    a: str
    b: str
    paper_ratio: float | None
    slower: bool | None = None

    @property
    def expects_slower(self) -> bool:
        return self.slower if self.slower is not None else self.paper_ratio > 1


@dataclass
class Comparison:
    a: str
    b: str
    ratio: float | None  # median of the paired (per round) time ratios a / b
    ci_low: float | None
    ci_high: float | None
    paper_ratio: float | None
    verdict: str
    reason: str = ""


def compare(a: Arm, b: Arm, expectation: Expectation) -> Comparison:
    """The paired ratio of ``a``'s time to ``b``'s, its 95% interval and the verdict."""
    logs = sorted(math.log(x / y) for x, y in zip(a.samples, b.samples) if x > 0 and y > 0)
    if len(logs) < MIN_ROUNDS:
        return Comparison(a.name, b.name, math.exp(median(logs)) if logs else None, None, None,
                          expectation.paper_ratio, INCONCLUSIVE, f"{len(logs)} rounds: too few to tell")
    low, high = (math.exp(v) for v in median_ci(logs))
    ratio = math.exp(median(logs))
    slower, faster = low > MARGIN, high < 1 / MARGIN  # a's time beyond b's either way, by more than the margin
    if (slower and expectation.expects_slower) or (faster and not expectation.expects_slower):
        verdict, reason = BORNE_OUT, ""
    elif slower or faster:
        verdict, reason = CONTRADICTED, ""
    elif low <= 1 <= high:
        verdict, reason = INCONCLUSIVE, f"the interval {low:.2f}-{high:.2f} holds 1: the difference is within the noise"
    else:
        verdict, reason = INCONCLUSIVE, (f"the interval {low:.2f}-{high:.2f} lies within {MARGIN - 1:.0%} of 1: less "
                                         "than reruns of a study move a ratio by")
    return Comparison(a.name, b.name, ratio, low, high, expectation.paper_ratio, verdict, reason)


def overall(comparisons: list[Comparison]) -> str:
    """The study's verdict: what most of its comparisons say, when that is at least half
    of them; inconclusive otherwise (a mixed or noisy result)."""
    borne = sum(c.verdict == BORNE_OUT for c in comparisons)
    contradicted = sum(c.verdict == CONTRADICTED for c in comparisons)
    if borne > contradicted and 2 * borne >= len(comparisons):
        return BORNE_OUT
    if contradicted > borne and 2 * contradicted >= len(comparisons):
        return CONTRADICTED
    return INCONCLUSIVE


def time_interleaved(runs: list[Callable[[], object]], budget_s: float, sync: Callable[[], None] = lambda: None,
                     clock: Callable[[], float] = time.perf_counter,
                     progress: Callable[[int, int], None] = lambda done, total: None,
                     device_timer: Callable[[Callable[[], None]], float] | None = None) -> list[list[float]]:
    """Seconds per iteration of each of ``runs``, one sample per round: each round runs a
    block of every run (its iterations sized at warm-up to ~``BLOCK_S``), in an order
    rotated by one each round, until ``budget_s`` is spent. ``device_timer`` (CUDA events:
    it runs a block and returns the device's seconds for it) times the blocks where given;
    the host clock otherwise."""
    blocks = []
    for run in runs:  # warm-up, and how many iterations make a block
        run()
        sync()
        start = clock()
        run()
        sync()
        once = max(clock() - start, 1e-7)
        blocks.append(max(1, round(BLOCK_S / once)))
    samples: list[list[float]] = [[] for _ in runs]
    began = clock()
    round_index = 0
    while True:
        spent = clock() - began
        if round_index >= MIN_ROUNDS and spent >= budget_s:
            break
        progress(min(round(spent), round(budget_s)), round(budget_s))
        order = list(range(len(runs)))
        order = order[round_index % len(runs):] + order[:round_index % len(runs)]
        for index in order:
            def block(run=runs[index], count=blocks[index]) -> None:
                for _ in range(count):
                    run()
            if device_timer is not None:
                samples[index].append(device_timer(block) / blocks[index])
                continue
            start = clock()
            block()
            sync()
            samples[index].append((clock() - start) / blocks[index])
        round_index += 1
    return samples


@dataclass
class StudyResult:
    study: str
    claim: str
    source: str
    settings: dict
    environment: dict
    arms: list[Arm]
    comparisons: list[Comparison]
    verdict: str
    notes: list[str] = field(default_factory=list)
    paper: dict = field(default_factory=dict)  # the paper's table, as printed beside the measured one

    def to_dict(self) -> dict:
        data = asdict(self)
        data["arms"] = [{"name": a.name, "flops": a.flops, "bytes": a.bytes, "median_ms": a.median_ms,
                         "samples": len(a.samples), "input_shape": list(a.input_shape)} for a in self.arms]
        return data

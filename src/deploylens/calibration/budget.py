"""How long a calibration runs: the stop rules of one round of a case and of a synthetic
network, the settings per device, and the budget that keeps the whole run within its
time (a parameter: `hw calibrate --budget`, seconds in tests)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from deploylens.bench.runner import StopRule

# one round of one case: short, until its samples adjusted to the probe's quiet level are
# stable; the rounds spread it in time
QUICK = StopRule(warmup_iters=2, warmup_time=0.01, min_iters=5, min_time=0.02, max_time=0.1, ci_target=0.05)
# a synthetic network's round: longer, exempt from the budget's shrinking, since each
# batch's whole-network factor rests on a handful of them (docs/device-models.md)
NETWORK = StopRule(warmup_iters=3, warmup_time=0.05, min_iters=5, min_time=0.15, max_time=0.3, ci_target=0.02)
ROUNDS = 3
# what the budget keeps for the derived figures after the rounds (the whole-network fits)
DERIVE_S = 3.0


@dataclass(frozen=True)
class DeviceSetting:
    """How a device is calibrated: case sizes up to ``max_flops`` and ``max_elements`` of
    activations, at ``batches``, in ``rounds`` passes, within ``budget_s`` seconds in all
    (None: no bound). Beyond the first batch size only the classes in ``batched_classes``
    (None: all), their convs only with outputs ``batched_min_hw`` wide or more, or 1x1 (a
    squeeze-excite's convs, whose time is the unit's fixed cost)."""
    max_flops: float
    batches: tuple[int, ...]
    max_elements: int
    rounds: int
    budget_s: float | None = None
    batched_classes: frozenset[str] | None = None
    batched_min_hw: int = 0


# Activations beyond 2**23 elements are larger than any zoo layer's at batch 1. On a CPU,
# batch 8 for the classes whose speed per FLOP changes with the batch (not depthwise and
# grouped convs: docs/device-models.md). A GPU approaches its peak only on batched work
# and is not shared the way a VM's cores are: one round. A CPU calibration ends within its
# budget however busy the host is: a busy spell makes every case run to its time cap, and
# the cap shrinks to fit what is left (see Budget).
SETTINGS = {"cpu": DeviceSetting(4e9, (1, 8), 2**23, ROUNDS, budget_s=105.0,
                                 batched_classes=frozenset({"conv_dense", "conv_pointwise", "matmul", "elementwise",
                                                            "pool", "copy", "reorder", "slice", "transcendental"}),
                                 batched_min_hw=14),
            "cuda": DeviceSetting(4e10, (1, 16), 64_000_000, 1)}


def budgeted(rule: StopRule, seconds_left: float, measurements_left: int) -> StopRule:
    """``rule`` with its time cap cut to an equal share of the seconds left (never under
    10 ms: a case still gets its minimum samples)."""
    share = seconds_left / max(measurements_left, 1)
    return rule if share >= rule.max_time else replace(rule, min_time=min(rule.min_time, max(share, 0.01)),
                                                       max_time=max(share, 0.01))


class Budget:
    """How long each round of a case may run for a calibration to end by ``deadline``: an
    equal share of the time left after the synthetic networks' rounds still to come (each
    as long as theirs so far: they come first) and after what each case round costs
    beyond its cap (building its session, warm-up, the minimum samples: as much as the
    case rounds so far)."""

    def __init__(self, deadline: float, case_rounds: int, network_rounds: int):
        self.deadline, self.cases_left, self.networks_left = deadline, case_rounds, network_rounds
        self.network_s, self.networks_done = 0.0, 0
        self.beyond_cap_s, self.cases_done = 0.0, 0

    @classmethod
    def of(cls, started: float, budget_s: float | None, case_rounds: int, network_rounds: int) -> Budget:
        """A budget of ``budget_s`` seconds from ``started`` (None: unbounded), the derived
        figures' time kept aside."""
        deadline = started + budget_s - DERIVE_S if budget_s is not None else math.inf
        return cls(deadline, case_rounds, network_rounds)

    def case_rule(self, first_round: bool, now: float) -> StopRule | None:
        """The rule of the next case round, None when out of time (a case's first round
        always runs)."""
        self.cases_left -= 1
        networks_s = self.networks_left * self.network_s / max(self.networks_done, 1)
        left_s = self.deadline - now - networks_s - (self.cases_left + 1) * self.beyond_cap_s / max(self.cases_done, 1)
        if left_s <= 0 and not first_round:
            return None
        return budgeted(QUICK, left_s, self.cases_left + 1)

    def spent(self, network: bool, seconds: float, cap: float) -> None:
        """A round took ``seconds`` under a time cap of ``cap``."""
        if network:
            self.networks_left, self.networks_done = self.networks_left - 1, self.networks_done + 1
            self.network_s += seconds
        else:
            self.cases_done += 1
            self.beyond_cap_s += max(seconds - cap, 0.0)

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
# a synthetic network's round: longer (each batch's whole-network factor rests on a handful
# of them, docs/device-models.md), charged to the budget like every other round
NETWORK = StopRule(warmup_iters=3, warmup_time=0.05, min_iters=5, min_time=0.15, max_time=0.3, ci_target=0.02)
ROUNDS = 3
# what the budget keeps for the derived figures after the rounds: this much, plus
# DERIVE_PER_ANALYSIS times what analysing each synthetic network timed took, in the share
# of the cases timed so far (the whole-network fits predict each network four times over,
# each kernel against the points of its class; measured on the 2-core AMD EPYC VM,
# 2026-12-03: 58 ms to analyse a network, 190 ms for its four predictions from 700 points,
# 15 ms from 13)
DERIVE_S = 1.0
DERIVE_PER_ANALYSIS = 4.0
# the synthetic networks' rounds take at most this share of the budget: on a busy host a
# network's round runs seconds (the 2-core AMD EPYC VM, 2026-12-03, three busy-loop
# processes beside it: 0.7-2.3 s against 0.1-0.4 s quiet) and would leave the cases none
NETWORK_SHARE = 0.35
# the shortest time cap of a round
FLOOR_S = 0.01
# how much a calibration may overrun its budget (``hw calibrate --budget``), besides the
# minimum viable calibration when the budget is shorter than that: a round past the
# deadline stops at its next call, so the overrun is at most one call of the slowest case or
# synthetic network, or the derived figures' time underestimated. The budget runs from
# calibrate()'s start: `hw calibrate` adds its process's start (docs/device-models.md)
SLACK_S = 5.0
SLACK_SHARE = 0.05


def slack(budget_s: float) -> float:
    """Seconds a calibration of ``budget_s`` may run past it (see SLACK_S)."""
    return SLACK_S + SLACK_SHARE * budget_s


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
    FLOOR_S: a case still gets its minimum samples)."""
    share = seconds_left / max(measurements_left, 1)
    return rule if share >= rule.max_time else replace(rule, min_time=min(rule.min_time, max(share, FLOOR_S)),
                                                       max_time=max(share, FLOOR_S))


class Budget:
    """Which rounds a calibration runs, and how long each may take, for it to end by
    ``deadline``: the timing ends at :attr:`end`, the deadline less the time kept for the
    derived figures. A case round gets an equal share of the time left after the synthetic
    network rounds still to come (each as long as that network's last round, or the
    networks' rounds so far, or before any the network rule's cap; all of them within
    NETWORK_SHARE of the budget) and after what each case round costs beyond its cap (building
    its session, costing it, warm-up, the minimum samples: as much as the case rounds so
    far); a round that does not fit the time left is skipped, first rounds included, except
    the minimum viable calibration's (``essential``), which always run."""

    def __init__(self, deadline: float, case_rounds: int, network_rounds: int, rounds: int = 1,
                 started: float = 0.0):
        self.deadline, self.cases_left, self.networks_left = deadline, case_rounds, network_rounds
        self.network_s, self.networks_done = 0.0, 0
        self.network_last: dict[str, float] = {}
        # beyond their caps: the case rounds after the first (which carries the process's
        # one-off start: thread pools, the probe's first readings)
        self.beyond_cap_s, self.cases_done, self.first_case_done = 0.0, 0, False
        self.case_sessions, self.first_rounds_done = max(case_rounds // max(rounds, 1), 1), 0
        self.analysis_s = 0.0
        self.network_allowance = NETWORK_SHARE * (deadline - started)

    @classmethod
    def of(cls, started: float, budget_s: float | None, case_rounds: int, network_rounds: int,
           rounds: int = 1) -> Budget:
        """A budget of ``budget_s`` seconds from ``started`` (None: unbounded) for
        ``rounds`` rounds of each case and network."""
        return cls(started + budget_s if budget_s is not None else math.inf, case_rounds, network_rounds, rounds,
                   started)

    @property
    def derive_s(self) -> float:
        """The time kept for the derived figures (see DERIVE_S)."""
        if not math.isfinite(self.deadline):
            return 0.0
        share = min(1.0, max(self.first_rounds_done / self.case_sessions, 0.1))
        return DERIVE_S + DERIVE_PER_ANALYSIS * self.analysis_s * share

    @property
    def end(self) -> float:
        """When the timing must stop: the deadline less the time kept for the derived figures."""
        return self.deadline - self.derive_s

    def analysed(self, seconds: float) -> None:
        """A synthetic network's analysis took ``seconds`` (see DERIVE_PER_ANALYSIS)."""
        self.analysis_s += seconds

    def case_rule(self, first_round: bool, now: float, essential: bool = False) -> StopRule | None:
        """The rule of the next case round; None when it does not fit the time left (a
        later round also when the time left is due to other rounds)."""
        self.cases_left -= 1
        networks_s = self.networks_left * self._network_mean()
        beyond = self.beyond_cap_s / max(self.cases_done, 1)
        left_s = self.end - now - networks_s - (self.cases_left + 1) * beyond
        if not essential and (self.end - now < FLOOR_S + beyond or (left_s <= 0 and not first_round)):
            return None
        self.first_rounds_done += first_round
        return budgeted(QUICK, left_s, self.cases_left + 1)

    def network_rule(self, name: str, now: float) -> StopRule | None:
        """The rule of the next round of synthetic network ``name``; None when a round as
        long as its last one (or the networks' rounds so far) does not fit the time left."""
        self.networks_left -= 1
        expected = self.network_last.get(name, self._network_mean())
        fits = self.end - now >= expected and self.network_s + expected <= self.network_allowance
        return NETWORK if fits else None

    def network_until(self, now: float) -> float:
        """When a synthetic network round begun at ``now`` must stop: at the end of the
        networks' share of the budget."""
        return now + self.network_allowance - self.network_s

    def _network_mean(self) -> float:
        """A synthetic network round's expected time: the mean of those so far, before any
        the network rule's cap."""
        return self.network_s / self.networks_done if self.networks_done else NETWORK.max_time

    def spent(self, network: bool, seconds: float, cap: float, name: str = "") -> None:
        """A round took ``seconds`` under a time cap of ``cap``."""
        if network:
            self.networks_done += 1
            self.network_s += seconds
            self.network_last[name] = seconds
        elif not self.first_case_done:
            self.first_case_done = True
        else:
            self.cases_done += 1
            self.beyond_cap_s += max(seconds - cap, 0.0)

"""The measurement loop: warm-up, block timing for tiny workloads, adaptive stop.

Pure logic over an injected clock and an injected ``run`` callable, so the rules are
unit-tested with a fake clock; backends provide ``run`` (and ``sync`` on CUDA).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

from deploylens.bench.interference import INTERVAL_S, InterferenceProbe, adjusted
from deploylens.bench.stats import Timing, summarize

# a timed sample spans at least this long, so the timer's own cost stays negligible
BLOCK_TARGET_S = 2e-3


@dataclass(frozen=True)
class StopRule:
    warmup_iters: int = 5
    warmup_time: float = 0.2  # seconds of warm-up at least
    min_iters: int = 10
    min_time: float = 1.0
    max_time: float = 10.0
    max_iters: int = 100_000
    ci_target: float = 0.01  # stop when the median's 95% CI is within +/- this fraction
    probe_adjusted: bool = True  # with a probe: that median is the adjusted samples' (see :func:`measure`)


def quietest(rounds: list[Timing]) -> Timing:
    """The round with the lowest median. On a shared machine a busy neighbour (another VM on
    the same physical core) slows whole rounds down by up to ~1.7x for seconds at a time, and
    never speeds one up: the quietest of rounds spread in time is the machine's own speed."""
    if not rounds:
        raise ValueError("no rounds")
    return min(rounds, key=lambda timing: timing.summary.p50)


def measure(run: Callable[[], object], rule: StopRule = StopRule(), clock: Callable[[], float] = time.perf_counter,
            sync: Callable[[], None] = lambda: None,
            device_timer: Callable[[Callable[[], None]], float] | None = None,
            probe: InterferenceProbe | None = None, probe_interval: float = INTERVAL_S) -> Timing:
    """Time ``run`` until the median is stable or a bound is hit.

    ``sync`` waits for asynchronous work (CUDA) before the clock is read; ``device_timer``
    runs a block between device events and returns its device seconds. ``probe`` (see
    :class:`deploylens.bench.interference.InterferenceProbe`) is read before the first
    sample and then between samples every ``probe_interval`` seconds; each sample keeps
    the slower of the readings around it; with ``rule.probe_adjusted`` the median that
    must be stable is that of the samples adjusted to the probe's quiet level
    (:func:`deploylens.bench.interference.adjusted`), which a busy spell leaves in place.
    """
    start = clock()
    warmup = 0
    while warmup < rule.warmup_iters or clock() - start < rule.warmup_time:
        run()
        warmup += 1
        if clock() - start > rule.max_time / 2:  # a very slow model still gets timed samples
            break
    sync()
    per_call = (clock() - start) / warmup
    block = max(1, math.ceil(BLOCK_TARGET_S / per_call)) if per_call > 0 else 1

    def run_block() -> None:
        for _ in range(block):
            run()

    samples: list[float] = []
    device_samples: list[float] = []
    readings: list[float] = []
    last_reading = probe() if probe else 0.0
    last_probe = clock()
    level = probe.level() if probe else 0.0  # changes only with a new reading: not sorted again per sample

    def read_probe() -> None:
        nonlocal last_reading, last_probe, level
        reading = probe()
        readings.extend([max(last_reading, reading)] * (len(samples) - len(readings)))
        last_reading, last_probe, level = reading, clock(), probe.level()

    timed_start = clock()
    reason = "max_iters"
    while len(samples) * block < rule.max_iters:
        t0 = clock()
        if device_timer:
            device_samples.append(device_timer(run_block) / block)
        else:
            run_block()
            sync()
        samples.append((clock() - t0) / block)
        if probe and clock() - last_probe >= probe_interval:
            read_probe()
        elapsed = clock() - timed_start
        pool = adjusted(samples, readings, level, probe.exponent) if probe and rule.probe_adjusted else samples
        if len(pool) >= max(rule.min_iters, 3) and elapsed >= rule.min_time:
            if summarize(pool).ci_relative_half_width <= rule.ci_target:
                reason = "stable"
                break
        if elapsed >= rule.max_time and len(samples) >= 3:
            reason = "max_time"
            break
    if probe and len(readings) < len(samples):
        read_probe()
    return Timing(samples, block, len(samples) * block, warmup, reason, summarize(samples), device_samples,
                  readings)

"""Statistics of latency samples: percentiles, a distribution-free confidence interval
of the median, and the spread measures the stopping rule reads."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# a run is flagged noisy when its spread is this large relative to the median
NOISY_IQR_RATIO = 0.10


def percentile(sorted_samples: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of already sorted samples."""
    if not sorted_samples:
        raise ValueError("no samples")
    position = (len(sorted_samples) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_samples) - 1)
    return sorted_samples[low] + (sorted_samples[high] - sorted_samples[low]) * (position - low)


def median_ci(sorted_samples: list[float], z: float = 1.96) -> tuple[float, float]:
    """95% confidence interval of the median from order statistics (no normality
    assumption): ranks n/2 -/+ z*sqrt(n)/2, clamped to the sample."""
    n = len(sorted_samples)
    half_width = z * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half_width))
    high = min(n - 1, math.ceil(n / 2 + half_width) - 1)
    return sorted_samples[low], sorted_samples[high]


@dataclass(frozen=True)
class Summary:
    n: int
    p50: float
    p90: float
    p95: float
    p99: float
    mean: float
    std: float
    min: float
    max: float
    iqr: float
    ci_low: float
    ci_high: float

    @property
    def ci_relative_half_width(self) -> float:
        """Half the width of the median's 95% CI, relative to the median."""
        return (self.ci_high - self.ci_low) / 2 / self.p50 if self.p50 else math.inf


def summarize(samples: list[float]) -> Summary:
    ordered = sorted(samples)
    n = len(ordered)
    mean = sum(ordered) / n
    std = math.sqrt(sum((s - mean) ** 2 for s in ordered) / (n - 1)) if n > 1 else 0.0
    low, high = median_ci(ordered)
    return Summary(n=n, p50=percentile(ordered, 50), p90=percentile(ordered, 90), p95=percentile(ordered, 95),
                   p99=percentile(ordered, 99), mean=mean, std=std, min=ordered[0], max=ordered[-1],
                   iqr=percentile(ordered, 75) - percentile(ordered, 25), ci_low=low, ci_high=high)


def reachable_share(pass_estimates: list[list[float]], tolerance: float = 0.10) -> float | None:
    """The share of rows a predictor exactly right about each row's true time would get
    within ``tolerance`` of references that are the mean of the passes' estimates, from how
    those estimates scatter between passes (per row, several passes' estimates of one
    time): with a log standard deviation s per pass, pooled over the rows, a reference of n
    passes carries s / sqrt(n), and a normal error of that deviation falls within
    log(1 + tolerance) with probability erf(log(1 + tolerance) / (s / sqrt(n) x sqrt(2))).
    None without two passes of any row."""
    rows = [[math.log(e) for e in estimates] for estimates in pass_estimates if len(estimates) > 1]
    if not rows:
        return None
    squares = sum(sum((x - sum(logs) / len(logs)) ** 2 for x in logs) for logs in rows)
    per_pass = math.sqrt(squares / sum(len(logs) - 1 for logs in rows))
    reference = per_pass / math.sqrt(sum(len(logs) for logs in rows) / len(rows))
    return 1.0 if reference == 0 else math.erf(math.log1p(tolerance) / (reference * math.sqrt(2)))


@dataclass(frozen=True)
class Timing:
    samples: list[float]  # seconds per iteration, one per timed block
    block: int  # iterations per timed block
    iterations: int  # timed iterations in all (samples x block)
    warmup_iterations: int
    stop_reason: str  # "stable", "max_time" or "max_iters"
    summary: Summary
    device_samples: list[float]  # CUDA event time per iteration, one per block (empty on CPU)
    # per sample, the slower of the interference probe's readings before and after it (empty without a probe)
    probe_readings: list[float] = field(default_factory=list)

    @property
    def noisy(self) -> bool:
        return self.summary.iqr / self.summary.p50 > NOISY_IQR_RATIO if self.summary.p50 else False

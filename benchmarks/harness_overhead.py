"""Harness overhead and repeatability, in one process.

    python benchmarks/harness_overhead.py [--model mobilenet_v2_100] [--input-shape 1,3,160,160]

1. Overhead, paired: the harness's timing loop runs a session whose every call is also
   timed by a bare ``time.perf_counter`` pair around it. Both medians come from the
   same iterations, so machine noise cancels and what is left is the harness's own
   cost (goal: <= 2%). For tiny models, where a perf_counter pair per call would itself
   be the largest cost, the harness's per-iteration cost is measured on a no-op and set
   against the tiny model's median.
2. An unpaired view for reference: a bare loop and ``deploylens.bench`` alternated.
3. Repeatability: the spread of medians over repeated ``bench`` runs of the model.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn

from record import recorded  # the benchmarks folder is the script's own

from deploylens import zoo
from deploylens.capture.loader import parse_input_shapes
from deploylens.bench.backends import BACKENDS
from deploylens.bench.harness import bench
from deploylens.bench.runner import StopRule, measure


def paired_overhead(session_run, rule: StopRule) -> tuple[float, float, int]:
    inner: list[float] = []

    def timed_run():
        start = time.perf_counter()
        session_run()
        inner.append(time.perf_counter() - start)

    timing = measure(timed_run, rule)
    timed_inner = inner[timing.warmup_iterations:]
    return timing.summary.p50, statistics.median(timed_inner), timing.block


def bare_loop_median(run, seconds: float) -> float:
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2_100")
    parser.add_argument("--input-shape", default="1,3,160,160")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rule = StopRule(min_time=args.seconds, max_time=3 * args.seconds)
    print(f"{args.model} {args.input_shape}, torch eager, {args.threads} threads, torch {torch.__version__}")

    model = zoo.create(args.model)
    x = torch.randn(parse_input_shapes(args.input_shape)[0][0])
    session = BACKENDS["torch"].prepare(model, [x], args.threads, "cpu", "fp32")
    harness, bare, block = paired_overhead(session.run, rule)
    print(f"1. paired:   harness median {harness * 1e3:.4f} ms, bare perf_counter median over the same "
          f"iterations {bare * 1e3:.4f} ms: overhead {(harness / bare - 1) * 100:+.3f}% (block {block})")

    noop = measure(lambda: None, rule)
    tiny = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
    tiny_session = BACKENDS["torch"].prepare(tiny, [torch.randn(1, 3, 8, 8)], args.threads, "cpu", "fp32")
    tiny_timing = measure(tiny_session.run, rule)
    print(f"   harness cost per iteration (no-op, blocks of {noop.block}): {noop.summary.p50 * 1e9:.1f} ns; "
          f"a tiny conv model takes {tiny_timing.summary.p50 * 1e6:.2f} us (blocks of {tiny_timing.block}): "
          f"overhead {noop.summary.p50 / tiny_timing.summary.p50 * 100:.3f}%")

    loop, harnessed = [], []
    for _ in range(args.repeats):
        loop.append(bare_loop_median(session.run, args.seconds))
        harnessed.append(bench(model, ["torch"], [1], args.threads, input_shape=args.input_shape,
                               rule=rule)[0].p50_ms / 1e3)
    print("2. unpaired: bare loop medians " + ", ".join(f"{v * 1e3:.3f}" for v in loop)
          + " ms; bench medians " + ", ".join(f"{v * 1e3:.3f}" for v in harnessed) + " ms")
    spread = (max(harnessed) - min(harnessed)) / statistics.median(harnessed)
    print(f"3. spread of {len(harnessed)} bench medians: {spread * 100:.2f}% of their median "
          f"(this machine's noise; the paired figure above is the harness's own cost)")
    return {"model": args.model, "input_shape": args.input_shape, "threads": args.threads,
            "seconds": args.seconds, "repeats": args.repeats,
            "paired_overhead": {"harness_median_ms": harness * 1e3, "bare_perf_counter_median_ms": bare * 1e3,
                                "overhead_percent": (harness / bare - 1) * 100, "block": block},
            "per_iteration_cost_ns": noop.summary.p50 * 1e9, "no_op_block": noop.block,
            "tiny_conv_model": {"median_us": tiny_timing.summary.p50 * 1e6, "block": tiny_timing.block,
                                "overhead_percent": noop.summary.p50 / tiny_timing.summary.p50 * 100},
            "bare_loop_medians_ms": [v * 1e3 for v in loop],
            "repeated_bench_medians_ms": [v * 1e3 for v in harnessed],
            "repeated_bench_spread_percent": spread * 100}


if __name__ == "__main__":
    with recorded("harness_overhead") as run:
        run.results = main() or {}

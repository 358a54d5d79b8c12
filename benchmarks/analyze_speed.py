"""How long a full per-layer analysis takes, beside one real forward pass and
torch.utils.flop_counter (and fvcore when installed), side by side in one run.

    python benchmarks/analyze_speed.py [--model resnet50] [--repeats 7] [--threads N]

Goal: deploylens.analyze() is no slower than one real forward pass of the model.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from record import recorded  # the benchmarks folder is the script's own

import deploylens
from deploylens import zoo


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: imports, first-call dispatch caches
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = zoo.create(args.model)
    resolution = zoo.variant(args.model).resolution
    x = torch.randn(1, 3, resolution, resolution)

    def forward():
        with torch.no_grad():
            model(x)

    def flop_counter():
        from torch.utils.flop_counter import FlopCounterMode

        with torch.no_grad(), FlopCounterMode(display=False):
            model(x)

    timings = {
        "one real forward pass": median_seconds(forward, args.repeats),
        "deploylens.analyze (meta, per layer + fused)": median_seconds(lambda: deploylens.analyze(model),
                                                                       args.repeats),
        "torch.utils.flop_counter (real tensors)": median_seconds(flop_counter, args.repeats),
    }
    try:
        from fvcore.nn import FlopCountAnalysis

        timings["fvcore FlopCountAnalysis (jit trace)"] = median_seconds(
            lambda: FlopCountAnalysis(model, x).unsupported_ops_warnings(False).total(), args.repeats)
    except ImportError:
        print("fvcore not installed: skipped")

    base = timings["one real forward pass"]
    print(f"{args.model} at {resolution}x{resolution}, batch 1, {args.threads} threads, "
          f"median of {args.repeats}, torch {torch.__version__}")
    for name, seconds in timings.items():
        print(f"  {name:48s} {seconds * 1e3:8.1f} ms   {seconds / base:5.2f} x forward")
    verdict = "meets" if timings["deploylens.analyze (meta, per layer + fused)"] <= base else "misses"
    print(f"goal (analysis no slower than one forward pass): {verdict}")


if __name__ == "__main__":
    with recorded("analyze_speed") as run:
        run.results = main() or {}

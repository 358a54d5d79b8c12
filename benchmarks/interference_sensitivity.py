"""How much each kind of kernel slows down when the interference probe does.

    python benchmarks/interference_sensitivity.py [--seconds 180] [--threads N]

On a shared host the probe (a small cache-resident 3x3 conv, see
:mod:`deploylens.bench.interference`) and a set of kernels and whole models run in
turn (the probe's reading the fastest of its three calls, the others one call each) for
``--seconds``. Each workload's
slowdown is its reading over its own quiet level (the 2nd percentile); the exponent is
the median log slowdown over the probe's median log slowdown: how far the workload
follows the probe (1: as much; 0: not at all). Binned by the probe's slowdown, the table
also shows the shape of the response. A host with no neighbour at work during the run
shows no slowdown and says so.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Callable

import torch

from record import recorded  # the benchmarks folder is the script's own

from deploylens import zoo
from deploylens.bench import malloc
from deploylens.bench.interference import QUIET_PERCENTILE, InterferenceProbe
from deploylens.bench.stats import percentile
from deploylens.zoo.blocks import ConvBnAct

BIN = 0.15  # width of a probe-slowdown bin, in natural log units


def workloads() -> dict[str, Callable[[], object]]:
    """Kernels from cache-resident to DRAM-bound, then two models."""
    def conv(c_in: int, c_out: int, k: int, hw: int, batch: int = 1, groups: int = 1) -> Callable[[], object]:
        module, x = ConvBnAct(c_in, c_out, k, 1, groups).eval(), torch.randn(batch, c_in, hw, hw)
        return lambda: module(x)

    def copy(elements: int) -> Callable[[], object]:
        source, target = torch.randn(elements), torch.empty(elements)
        return lambda: target.copy_(source)

    a, b = torch.randn(8, 64, 56, 56), torch.randn(8, 64, 56, 56)
    linear, features = torch.nn.Linear(25088, 4096).eval(), torch.randn(1, 25088)
    resnet18, mobilenet_v2, image = zoo.create("resnet18").eval(), zoo.create("mobilenet_v2_100").eval(), \
        torch.randn(1, 3, 224, 224)
    return {
        "dense conv3x3 64 @56": conv(64, 64, 3, 56),
        "dense conv3x3 256 @14": conv(256, 256, 3, 14),
        "dense conv3x3 64 @56 b8": conv(64, 64, 3, 56, 8),
        "pointwise 96 @28": conv(96, 96, 1, 28),
        "pointwise 960->160 @7": conv(960, 160, 1, 7),
        "pointwise 96 @56 b8": conv(96, 96, 1, 56, 8),
        "depthwise 144 @28": conv(144, 144, 3, 28, 1, 144),
        "depthwise 144 @56 b8": conv(144, 144, 3, 56, 8, 144),
        "add 8x64x56x56": lambda: a + b,
        "copy 4 MB": copy(2**20),
        "copy 64 MB": copy(2**24),
        "linear 25088->4096": lambda: linear(features),
        "resnet18": lambda: resnet18(image),
        "mobilenet_v2_100": lambda: mobilenet_v2(image),
    }


def seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    malloc.tune()
    probe, runs = InterferenceProbe(), workloads()
    readings: list[list[float]] = []
    deadline = time.perf_counter() + args.seconds
    with torch.inference_mode():
        for run in runs.values():  # warm
            run()
        while time.perf_counter() < deadline:
            readings.append([probe()] + [seconds(run) for run in runs.values()])
    columns = list(zip(*readings))
    slowdowns = [[math.log(value / percentile(sorted(column), QUIET_PERCENTILE)) for value in column]
                 for column in columns]
    probed = slowdowns[0]
    probe_median = statistics.median(probed)
    print(f"{len(readings)} rounds of the probe and {len(runs)} workloads in {args.seconds:g} s; the probe's median "
          f"slowdown x{math.exp(probe_median):.2f}")
    if probe_median < 0.05:
        print("the host was quiet throughout: no slowdown to follow; run it again in a busier spell")
        return
    print(f"{'workload':26s} {'quiet ms':>9s} {'exponent':>8s}   log slowdown by probe log slowdown bin")
    for name, column, own in zip(runs, columns[1:], slowdowns[1:]):
        bins: dict[int, list[float]] = {}
        for x, y in zip(probed, own):
            bins.setdefault(min(int(x / BIN), 6), []).append(y)
        shape = " ".join(f"{(index + 0.5) * BIN:.2f}:{statistics.median(ys):.2f}"
                         for index, ys in sorted(bins.items()) if len(ys) >= 10)
        quiet_ms = percentile(sorted(column), QUIET_PERCENTILE) * 1e3
        print(f"{name:26s} {quiet_ms:9.3f} {statistics.median(own) / probe_median:8.2f}   {shape}")


if __name__ == "__main__":
    with recorded("interference_sensitivity") as run:
        run.results = main() or {}

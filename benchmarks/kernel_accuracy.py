"""The zoo's conv units, each timed alone, against this machine's calibration (torch eager).

    python benchmarks/kernel_accuracy.py [--batches 1,8] [--models resnet18,vgg16] [--threads N]
                                         [--json units.json] [--measured units.json]

Every distinct conv-BN-activation unit of the zoo's models (input shape, output channels,
groups, kernel size, stride: ~700 at each batch size) is built as a calibration case and
timed alone with the interference probe between samples, its median adjusted to the
probe's quiet level as the calibration adjusts its cases; then it is predicted from the
saved calibration profile as a lone kernel (FLOPs at the nearest calibration points' rate,
plus the fixed cost a lone case holds), without the whole-network factor. That separates
how well the calibration's points and their interpolation describe the zoo's kernels from
how kernels behave inside a network (``predict_accuracy.py`` measures both at once).

It prints, per kernel class, kernel size, stride and batch, the share of the zoo's conv
time and predicted / measured of its summed time; per model, the error of its summed conv
units (each weighted by how often the model runs it); and, for the units whose geometry a
calibration case has exactly, how far the two measurements of the same conv lie apart:
the noise between two spells of this machine, which no predictor can beat.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys

import torch

from record import recorded  # the benchmarks folder is the script's own

from deploylens import zoo
from deploylens.analysis.api import analyze
from deploylens.bench import malloc
from deploylens.bench.interference import InterferenceProbe, adjusted_median
from deploylens.bench.runner import StopRule, measure
from deploylens.cost.records import KernelCost
from deploylens.errors import UserError
from deploylens import calibration
from deploylens.calibration.sessions import case_runner
from deploylens.hardware.kernel_classes import conv_geometry_of, kernel_class
from deploylens.kernels.runtimes import POLICIES, runtime_kernels
from deploylens.predict.calibrated import calibrated_time
from deploylens.zoo.blocks import ConvBnAct

RULE = StopRule(warmup_iters=2, warmup_time=0.02, min_iters=5, min_time=0.1, max_time=0.3, ci_target=0.03)


def zoo_units(batch: int, models: list[str]) -> list[dict]:
    """The distinct conv units PyTorch eager runs for ``models`` at ``batch``, each with
    its kernel (FLOPs, bytes), geometry, class and how often each model runs it."""
    units: dict[tuple, dict] = {}
    for name in models:
        resolution = zoo.registry.resolution_of(name) or 224
        profile = analyze(zoo.create(name).eval(), [((batch, 3, resolution, resolution), "float")], "float32")
        layers = {layer.name: layer for layer in profile.layers}
        for kernel in runtime_kernels(profile.layers, profile.kernels, POLICIES["torch"], profile.dtype):
            anchor = layers[kernel.layers[0]]
            geometry = conv_geometry_of(anchor)
            if not geometry:
                continue
            shape = tuple(anchor.inputs[0])
            key = (shape, geometry["c_out"], geometry["groups"], geometry["kernel"], geometry["stride"])
            unit = units.setdefault(key, {"shape": list(shape), "geometry": geometry, "class": kernel_class(anchor),
                                          "flops": kernel.flops, "bytes": kernel.bytes, "models": {}})
            unit["models"][name] = unit["models"].get(name, 0) + 1
    return list(units.values())


def time_unit(unit: dict, probe: InterferenceProbe) -> None:
    """Times ``unit`` alone; keeps its samples and probe readings."""
    g = unit["geometry"]
    module = ConvBnAct(g["c_in"], g["c_out"], g["kernel"], g["stride"], g["groups"]).eval()
    run = case_runner("torch", module, [torch.randn(*unit["shape"])], torch.get_num_threads(), "")
    timing = measure(run, RULE, probe=probe)
    unit["samples_s"], unit["readings_s"] = timing.samples, timing.probe_readings


def lone_prediction(unit: dict, profile: dict) -> float:
    """Seconds the calibration predicts for ``unit`` run alone: its kernel at the nearest
    points' rate with no whole-network factor, plus the per-call cost a lone case pays."""
    kernel = KernelCost("unit", "conv", ["unit"], unit["flops"], 0, unit["bytes"], 0, None, True)
    compute, memory, overhead = calibrated_time(kernel, unit["class"], profile, unit["shape"][0], unit["geometry"])
    return max(compute, memory) + overhead + profile.overhead_s.call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--models", default=",".join(zoo.names()))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--profile", help="a saved calibration profile (default: this machine's torch profile)")
    parser.add_argument("--json", help="also write the units, their samples and predictions to this file")
    parser.add_argument("--measured", help="predict the units saved by an earlier --json instead of timing them")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    profile = calibration.load(args.profile or calibration.profile_path("torch", args.threads))
    lone = copy.deepcopy(profile)
    lone.context_factor, lone.context_kernel_s = {}, {}  # a lone kernel: no network around it
    if args.measured:
        with open(args.measured) as handle:
            saved = json.load(handle)
        units, level, exponent = saved["units"], saved["probe_level_s"], saved["exponent"]
    else:
        malloc.tune()  # as `bench` and the calibration run
        probe = InterferenceProbe(known_level=calibration.known_probe_level(args.threads))
        models = args.models.split(",")
        units = [unit for batch in map(int, args.batches.split(",")) for unit in zoo_units(batch, models)]
        for index, unit in enumerate(units):
            time_unit(unit, probe)
            if index % 100 == 0:
                print(f"timed {index} of {len(units)} units", flush=True)
        level, exponent = probe.level(), probe.exponent
    for unit in units:
        unit["measured_s"] = adjusted_median(unit["samples_s"], unit["readings_s"], level, exponent)
        unit["predicted_s"] = lone_prediction(unit, lone)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"probe_level_s": level, "exponent": exponent, "units": units}, handle)

    def weight(unit: dict) -> int:
        return sum(unit["models"].values())

    for batch in sorted({unit["shape"][0] for unit in units}):
        group = [u for u in units if u["shape"][0] == batch]
        total = sum(weight(u) * u["measured_s"] for u in group)
        print(f"\nbatch {batch}: {len(group)} distinct conv units; by class (share of the zoo's summed conv time)")
        classes: dict[tuple, list[dict]] = {}
        for u in group:
            classes.setdefault((u["class"], u["geometry"]["kernel"], u["geometry"]["stride"]), []).append(u)
        for (klass, k, s), members in sorted(classes.items(), key=lambda kv: -sum(weight(u) * u["measured_s"]
                                                                                 for u in kv[1])):
            measured = sum(weight(u) * u["measured_s"] for u in members)
            predicted = sum(weight(u) * u["predicted_s"] for u in members)
            print(f"  {klass:15s} {k}x{k} stride {s}  units {len(members):4d}  share {measured / total:6.1%}  "
                  f"predicted / measured {predicted / measured - 1:+6.1%}")
        per_model: dict[str, list[float]] = {}
        for u in group:
            for name, count in u["models"].items():
                sums = per_model.setdefault(name, [0.0, 0.0])
                sums[0] += count * u["measured_s"]
                sums[1] += count * u["predicted_s"]
        errors = sorted((p / m - 1, name) for name, (m, p) in per_model.items())
        within = [sum(abs(e) <= bound for e, _ in errors) / len(errors) for bound in (0.1, 0.2)]
        rmspe = math.sqrt(statistics.mean(e * e for e, _ in errors))
        print(f"  per model, summed conv units: within 10% {within[0]:.1%}, within 20% {within[1]:.1%}, RMSPE "
              f"{rmspe:.1%}, median {statistics.median(e for e, _ in errors):+.1%}; lowest "
              + ", ".join(f"{name} {e:+.0%}" for e, name in errors[:3]) + "; highest "
              + ", ".join(f"{name} {e:+.0%}" for e, name in errors[-3:]))
    points = {json.dumps(p.geometry, sort_keys=True): p.seconds
              for points in profile.points.values() for p in points if p.geometry}
    repeats = [points[key] / u["measured_s"] - 1 for u in units
               if (key := json.dumps(u["geometry"], sort_keys=True)) in points]
    if repeats:
        print(f"\nsame geometry in the calibration and here ({len(repeats)} units): the two measurements within 10% "
              f"for {sum(abs(r) <= 0.1 for r in repeats) / len(repeats):.1%}, within 20% for "
              f"{sum(abs(r) <= 0.2 for r in repeats) / len(repeats):.1%}, calibration / here median "
              f"{statistics.median(repeats):+.1%}")


if __name__ == "__main__":
    try:
        with recorded("kernel_accuracy") as run:
            run.results = main() or {}
    except (UserError, OSError, json.JSONDecodeError) as error:  # a missing or unreadable profile or --measured file
        sys.exit(f"error: {error}")

"""Predicted vs measured latency for every zoo model on this machine.

    python benchmarks/predict_accuracy.py [--backends torch,onnxruntime] [--batches 1,8]
                                          [--models resnet18,mobilenet_v2_100] [--recalibrate]
                                          [--passes 3] [--json rows.json] [--measured rows.json]
                                          [--device cuda --dtype fp16] [--profile saved.json]

Calibrates this machine (or reuses its profile), then for each model, batch and backend
measures the real latency with the benchmark harness (fixed threads) and prints
predicted vs measured. The whole sweep runs ``--passes`` times and each measurement keeps
its quietest pass: on this shared VM a neighbour slows everything down by up to ~1.7x for
seconds at a time, and passes minutes apart let every model meet a quiet spell. It prints
the share within +/-10% and +/-20%, RMSPE and the Spearman rank correlation. nn-Meter's
published bar: 99% within 10% on a phone CPU, 83% on a VPU. ``--device cuda`` does the
same for this machine's GPU (torch backend, calibrated with CUDA graphs).

"""

from __future__ import annotations

import argparse
import json
import math

import torch

from deploylens import zoo
from deploylens.bench.harness import bench
from deploylens.bench.runner import StopRule
from deploylens.hardware import calibrate as calibration
from deploylens.predict import predict


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=values.__getitem__)
        result = [0.0] * len(values)
        for rank, index in enumerate(order):
            result[index] = float(rank)
        return result

    ra, rb = ranks(a), ranks(b)
    n = len(a)
    mean = (n - 1) / 2
    cov = sum((x - mean) * (y - mean) for x, y in zip(ra, rb))
    var = sum((x - mean) ** 2 for x in ra)
    return cov / var if var else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="torch,onnxruntime")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--models", default=",".join(zoo.names()))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--recalibrate", action="store_true")
    parser.add_argument("--min-time", type=float, default=0.5)
    parser.add_argument("--max-time", type=float, default=3.0)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--profile", help="predict from this saved calibration profile (e.g. with --measured, "
                                          "on a machine other than the one measured)")
    parser.add_argument("--measured", help="re-predict the measurements of an earlier --json file instead of "
                                           "measuring (compares predictor versions on the same data)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backends, batches = args.backends.split(","), [int(b) for b in args.batches.split(",")]

    def calibrate(index: int) -> None:
        """With --recalibrate, a calibration before every pass, each combined with the earlier
        ones (keep_quietest): the calibration meets as many spells of the machine as the
        models do. Without, only when no profile exists."""
        if args.profile:
            return
        for backend in backends:
            path = calibration.profile_path(backend, args.threads, args.device, args.dtype)
            fresh = args.recalibrate and not args.measured
            if not (fresh or (index == 0 and not path.exists())):
                continue
            print(f"calibrating {backend} on {args.device} ({args.threads} threads, {args.dtype}) ...", flush=True)
            profile = calibration.calibrate(backend, args.threads, device=args.device, dtype=args.dtype)
            seconds = profile["seconds_taken"]
            if index > 0:
                profile = calibration.keep_quietest(calibration.load(path), profile)
            calibration.save(profile, path)
            print(f"  {seconds} s; whole-network factors {profile['context_factor']}", flush=True)
    rule = StopRule(warmup_iters=2, warmup_time=0.1, min_iters=3, min_time=args.min_time, max_time=args.max_time,
                    ci_target=0.02)
    names = args.models.split(",")
    models = {name: zoo.create(name) for name in names}
    shapes = {name: [(1, 3, zoo.variant(name).resolution, zoo.variant(name).resolution)] for name in names}
    measured: dict[tuple[str, str, int], list[float]] = {}
    if args.measured:
        with open(args.measured) as handle:
            measured = {(r["model"], r["backend"], r["batch"]): r["pass_medians_ms"] for r in json.load(handle)
                        if r["backend"] in backends and r["batch"] in batches and r["model"] in names}
        calibrate(0)
    for index in range(0 if args.measured else args.passes):
        calibrate(index)
        print(f"pass {index + 1}/{args.passes}", flush=True)
        for name in names:
            for result in bench(models[name], backends, batches, args.threads, args.device, args.dtype,
                                input_shape=shapes[name], rule=rule):
                measured.setdefault((name, result.backend, result.batch), []).append(result.p50_ms)
    saved = calibration.load(args.profile) if args.profile else None
    rows = []
    print(f"{'model':24s} {'backend':12s} {'batch':>5s} {'predicted':>10s} {'measured':>10s} {'error':>8s}  passes")
    for (name, backend, batch), medians in measured.items():
        predicted = predict(models[name], "this", backend, batch, calibration.analysis_dtype(args.dtype),
                            threads=args.threads, input_shape=shapes[name], device=args.device,
                            calibration=saved if saved and saved["backend"] == backend else None
                            ).totals["latency_ms"]
        quiet = min(medians)
        error = predicted / quiet - 1
        rows.append({"model": name, "backend": backend, "batch": batch, "predicted_ms": predicted,
                     "measured_ms": quiet, "pass_medians_ms": medians, "error": error})
        print(f"{name:24s} {backend:12s} {batch:5d} {predicted:10.2f} {quiet:10.2f} {error * 100:+7.1f}%  "
              + " ".join(f"{m:.2f}" for m in medians), flush=True)
    print()
    for backend in backends:
        for batch in batches + [None]:
            subset = [r for r in rows if r["backend"] == backend and (batch is None or r["batch"] == batch)]
            if not subset:
                continue
            label = f"batch {batch}" if batch else "all batches"
            rho = spearman([r["predicted_ms"] for r in subset], [r["measured_ms"] for r in subset])
            within10 = sum(abs(r["error"]) <= 0.10 for r in subset) / len(subset)
            within20 = sum(abs(r["error"]) <= 0.20 for r in subset) / len(subset)
            rmspe = math.sqrt(sum(r["error"] ** 2 for r in subset) / len(subset))
            # the measurement's own repeatability bounds any predictor's score against it
            repeatable = [r for r in subset if len(r["pass_medians_ms"]) > 1]
            agree = sum(sorted(r["pass_medians_ms"])[1] <= 1.1 * min(r["pass_medians_ms"]) for r in repeatable)
            print(f"{backend:12s} {label:12s} n={len(subset):3d}  within 10%: {within10 * 100:5.1f}%  "
                  f"within 20%: {within20 * 100:5.1f}%  RMSPE {rmspe * 100:5.1f}%  Spearman {rho:.3f}  "
                  f"median error {sorted(r['error'] for r in subset)[len(subset) // 2] * 100:+.1f}%  "
                  f"two quietest passes within 10%: {agree / len(repeatable) * 100 if repeatable else 0:.0f}%")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()

"""Predicted vs measured latency for every zoo model on this machine.

    python benchmarks/predict_accuracy.py [--backends torch,onnxruntime] [--batches 1,8]
                                          [--models resnet18,mobilenet_v2_100] [--recalibrate]

Calibrates this machine (or reuses its profile), then for each model, batch and backend
measures the real latency with the benchmark harness (fixed threads) and prints
predicted vs measured, the share within +/-10% and +/-20%, RMSPE and the Spearman rank
correlation. nn-Meter's published bar: 99% within 10% on a phone CPU, 83% on a VPU.

This shared VM's speed drifts by tens of percent over minutes (ResNet-50 eager measured
60-85 ms in one process). So next to each model the script re-times a few calibration
cases and reports a second, drift-corrected error: the prediction scaled by how much
slower those cases run now than at calibration. The predictor is the same; the
correction only separates its error from the machine's drift.
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


_REFERENCE = ("conv3x3 64->64 g1 s1 @56", "conv1x1 96->576 g1 s1 @14", "conv3x3 144->144 g144 s1 @28",
              "relu 524288", "cat 1048576", "linear 2048->1000")


def drift_factor(backend: str, threads: int, profile: dict) -> float:
    """Geometric mean of (time now / time at calibration) over a few calibration cases."""
    import tempfile

    from deploylens.bench.runner import measure
    from deploylens.hardware.calibrate import QUICK, _runner, cases

    then = {p["label"]: p["seconds"] for points in profile["points"].values() for p in points}
    ratios = []
    with tempfile.TemporaryDirectory() as workdir:
        for case in cases():
            if case.label in _REFERENCE and case.label in then:
                model = case.build().eval()
                run = _runner(backend, model, [torch.randn(s) for s in case.shapes], threads, workdir)
                ratios.append(measure(run, QUICK).summary.p50 / then[case.label])
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="torch,onnxruntime")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--models", default=",".join(zoo.names()))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--recalibrate", action="store_true")
    parser.add_argument("--min-time", type=float, default=0.5)
    parser.add_argument("--max-time", type=float, default=3.0)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backends, batches = args.backends.split(","), [int(b) for b in args.batches.split(",")]
    for backend in backends:
        path = calibration.profile_path(backend, args.threads)
        if args.recalibrate or not path.exists():
            print(f"calibrating {backend} ({args.threads} threads) ...", flush=True)
            calibration.save(calibration.calibrate(backend, args.threads), path)
    rule = StopRule(warmup_iters=2, warmup_time=0.1, min_iters=3, min_time=args.min_time, max_time=args.max_time,
                    ci_target=0.02)
    profiles = {b: calibration.load(calibration.profile_path(b, args.threads)) for b in backends}
    rows = []
    print(f"{'model':24s} {'backend':12s} {'batch':>5s} {'predicted':>10s} {'measured':>10s} {'error':>8s} "
          f"{'drift':>6s} {'corrected':>9s}")
    for name in args.models.split(","):
        model = zoo.create(name)
        resolution = zoo.variant(name).resolution
        for batch in batches:
            drift = {b: drift_factor(b, args.threads, profiles[b]) for b in backends}
            measured = bench(model, backends, [batch], args.threads, rule=rule)
            for result in measured:
                predicted = predict(model, "this", result.backend, batch, threads=args.threads,
                                    input_shape=[(1, 3, resolution, resolution)]).totals["latency_ms"]
                error = predicted / result.p50_ms - 1
                corrected = predicted * drift[result.backend] / result.p50_ms - 1
                rows.append({"model": name, "backend": result.backend, "batch": batch, "predicted_ms": predicted,
                             "measured_ms": result.p50_ms, "error": error, "drift": drift[result.backend],
                             "corrected_error": corrected})
                print(f"{name:24s} {result.backend:12s} {batch:5d} {predicted:10.2f} {result.p50_ms:10.2f} "
                      f"{error * 100:+7.1f}% {drift[result.backend]:6.2f} {corrected * 100:+8.1f}%", flush=True)
    print()
    for backend in backends:
        for batch in batches + [None]:
            subset = [r for r in rows if r["backend"] == backend and (batch is None or r["batch"] == batch)]
            if not subset:
                continue
            label = f"batch {batch}" if batch else "all batches"
            rho = spearman([r["predicted_ms"] for r in subset], [r["measured_ms"] for r in subset])
            for key in ("error", "corrected_error"):
                within10 = sum(abs(r[key]) <= 0.10 for r in subset) / len(subset)
                within20 = sum(abs(r[key]) <= 0.20 for r in subset) / len(subset)
                rmspe = math.sqrt(sum(r[key] ** 2 for r in subset) / len(subset))
                print(f"{backend:12s} {label:12s} {key:16s} n={len(subset):3d}  within 10%: {within10 * 100:5.1f}%  "
                      f"within 20%: {within20 * 100:5.1f}%  RMSPE {rmspe * 100:5.1f}%  Spearman {rho:.3f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()

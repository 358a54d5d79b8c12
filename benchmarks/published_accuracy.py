"""How well the fitted device models predict devices and networks they were not fitted on.

    python benchmarks/published_accuracy.py [--splits 20]

On the published rows deploylens ships (src/deploylens/hardware/measured/), per device:
* leave the device out: fit its family on the other devices' rows, predict its rows from
  its catalog specs alone (zero-shot); a device alone in its family has no such test;
* leave half the networks out: fit on a random half of the networks (all devices of the
  family), predict the other half on this device; the mean over ``--splits`` splits;
* few-shot, as `hw fit` does with a new device: fit on 10 random rows of the device alone,
  shrunk toward the model of the family's other devices (the generic prior where it has
  none), predict its other rows (at least 10 of them); the mean over ``--splits`` draws;
* the catalog roofline (what predict answered before device models: fused kernels at 100%
  of peak and bandwidth), and "unfitted": the fitted model's kernels and form at 100%;
each as the share of rows within 10% / 25% of the measurement, the Spearman rank
correlation of throughput and the median error; and, on the GPUs, the throughput ratios
the field guide is about (MobileNetV2 / RepVGG-A0, EfficientNet-B0 / ResNet-18,
MobileNetV3-Large / ResNet-50), predicted with the device left out against measured.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import recorded  # noqa: E402

from deploylens.calibration.published import (KERNEL_FLOOR_S, design_vector, fit_design, read_rows,  # noqa: E402
                                              row_sums)
from deploylens.hardware.device_model import COMPUTE_CLASSES, MEMORY_CLASSES, device_family, on_threads  # noqa: E402
from deploylens.hardware.spec import load_catalog  # noqa: E402
from deploylens.predict.core import predict_profile  # noqa: E402

MEASURED = Path(__file__).resolve().parents[1] / "src" / "deploylens" / "hardware" / "measured"
GUIDE_RATIOS = (("mobilenet_v2_100", "repvgg_a0"), ("efficientnet_b0", "resnet18"),
                ("mobilenet_v3_large_100", "resnet50"))
FEW_SHOT = 10  # rows of a device hw fit is given, the others predicted
UNFITTED = np.array([1.0] * (len(COMPUTE_CLASSES) + len(MEMORY_CLASSES)) + [0.0, 0.0])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks_a, ranks_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def scores(predicted_s: np.ndarray, measured_s: np.ndarray) -> dict:
    errors = np.abs(predicted_s / measured_s - 1)
    return {"rows": len(errors), "within_10": float(np.mean(errors <= 0.10)),
            "within_25": float(np.mean(errors <= 0.25)), "median_error": float(np.median(errors)),
            "spearman": spearman(1 / predicted_s, 1 / measured_s)}


def line(name: str, s: dict | None, missing: str = "no other device in its family") -> str:
    if s is None:
        return f"  {name:22s} ({missing})"
    return (f"  {name:22s} {s['within_10']:5.0%} within 10%  {s['within_25']:5.0%} within 25%  "
            f"Spearman {s['spearman']:.3f}  median error {s['median_error']:.1%}")


def guide_ratios(rows, predicted_s: np.ndarray, measured_s: np.ndarray) -> list[dict]:
    first = {}
    for index, row in enumerate(rows):
        first.setdefault(row.model, index)
    found = []
    for fast, slow in GUIDE_RATIOS:
        if fast in first and slow in first:
            i, j = first[fast], first[slow]
            found.append({"ratio": f"{fast} / {slow}", "measured": measured_s[j] / measured_s[i],
                          "predicted": predicted_s[j] / predicted_s[i]})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=20, help="random halves of the networks left out")
    args = parser.parse_args()
    catalog = load_catalog()
    rows = [row for path in sorted(MEASURED.glob("*.csv")) for row in read_rows(path, catalog)[0]]
    print(f"analysing {len(rows)} published rows", file=sys.stderr)
    profiles: dict = {}
    design = np.array([design_vector(row_sums(row, catalog[row.device], profiles)) for row in rows])
    roofline = np.array([predict_profile(profiles[r.network],
                                         on_threads(catalog[r.device], r.threads), "tensorrt",
                                         r.batch).totals["latency_ms"] / 1e3 for r in rows])
    seconds = np.array([row.ms_per_batch / 1e3 for row in rows])
    families = defaultdict(list)
    for index, row in enumerate(rows):
        families[(device_family(catalog[row.device]), row.precision, row.runtime)].append(index)
    rng = np.random.default_rng(0)
    with recorded("published_accuracy") as run:
        for key, members in sorted(families.items()):
            members = np.array(members)
            devices = sorted({rows[i].device for i in members})
            floor = KERNEL_FLOOR_S.get(key[0], 0.0)
            print("/".join(key) + f": {len(members)} rows on {', '.join(devices)}")
            for device in devices:
                own = members[[rows[i].device == device for i in members]]
                others = members[[rows[i].device != device for i in members]]
                result = {"catalog_roofline": scores(roofline[own], seconds[own]),
                          "unfitted": scores(design[own] @ UNFITTED, seconds[own])}
                prior = None
                if len(others):
                    prior = fit_design(design[others], seconds[others], devices=[rows[i].device for i in others],
                                       kernel_floor_s=floor).values
                    zero_shot = design[own] @ prior
                    result["device_left_out"] = scores(zero_shot, seconds[own])
                    result["guide_ratios"] = guide_ratios([rows[i] for i in own], zero_shot, seconds[own])
                few = []
                for _ in range(args.splits if len(own) >= 2 * FEW_SHOT else 0):  # hw fit on FEW_SHOT rows, toward
                    chosen = rng.permutation(own)                                # the family's other devices
                    fitted = fit_design(design[chosen[:FEW_SHOT]], seconds[chosen[:FEW_SHOT]], prior,
                                        kernel_floor_s=floor).values
                    few.append(scores(design[chosen[FEW_SHOT:]] @ fitted, seconds[chosen[FEW_SHOT:]]))
                result["few_shot"] = {k: float(np.mean([f[k] for f in few])) for k in few[0]} if few else None
                models = sorted({rows[i].model for i in own})
                halves = []
                for _ in range(args.splits):
                    held = set(rng.choice(models, len(models) // 2, replace=False))
                    train = members[[rows[i].model not in held for i in members]]
                    test = own[[rows[i].model in held for i in own]]
                    fitted = fit_design(design[train], seconds[train], devices=[rows[i].device for i in train],
                                        kernel_floor_s=floor).values
                    halves.append(scores(design[test] @ fitted, seconds[test]))
                result["half_models_left_out"] = {k: float(np.mean([h[k] for h in halves])) for k in halves[0]}
                run.results[f"{'/'.join(key)} {device}"] = result
                print(f" {device}")
                print(line("catalog roofline", result["catalog_roofline"]))
                print(line("unfitted (100%)", result["unfitted"]))
                print(line("device left out", result.get("device_left_out")))
                print(line("half networks left out", result["half_models_left_out"]))
                print(line(f"few-shot ({FEW_SHOT} rows)", result["few_shot"], f"fewer than {2 * FEW_SHOT} rows"))
                for ratio in result.get("guide_ratios", []):
                    error = ratio["predicted"] / ratio["measured"] - 1
                    print(f"  {ratio['ratio']:40s} measured {ratio['measured']:.2f}  predicted "
                          f"{ratio['predicted']:.2f}  ({error:+.0%})")


if __name__ == "__main__":
    main()

"""Does the predicted ranking of the zoo on this machine agree with the measured one?

    python benchmarks/recommend_rank.py [--models a,b,c]

Runs ``recommend --target this`` twice, predicted (calibrated) and ``--measure`` (torch
eager, this machine), and prints both rankings and their Spearman rank correlation
(goal: >= 0.8).
"""

from __future__ import annotations

import argparse

from predict_accuracy import spearman  # noqa: E402 - the benchmarks folder is the script's own

from record import recorded  # the benchmarks folder is the script's own

from deploylens import zoo
from deploylens.recommend import recommend


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(zoo.names()))
    args = parser.parse_args()
    models = args.models.split(",")
    predicted = {c["model"]: c["latency_ms"] for c in recommend("this", models=models)["candidates"]}
    measured = {c["model"]: c["latency_ms"] for c in recommend("this", measure=True, models=models)["candidates"]}
    print(f"{'model':24s} {'predicted ms':>12s} {'measured ms':>12s}")
    for name in sorted(models, key=measured.get):
        print(f"{name:24s} {predicted[name]:12.2f} {measured[name]:12.2f}")
    rho = spearman([predicted[m] for m in models], [measured[m] for m in models])
    print(f"Spearman rank correlation, predicted vs measured, {len(models)} models: {rho:.3f} (goal >= 0.8)")
    return {"spearman": rho, "predicted_ms": predicted, "measured_ms": measured}


if __name__ == "__main__":
    with recorded("recommend_rank") as run:
        run.results = main() or {}

"""``deploylens recommend``: every zoo model ranked by latency on a target, beside its
accuracy and lint findings there, the Pareto front, the budget, and whether the field
guide's advice for the platform holds on these numbers.

Without a target it ranks for this machine when it has a calibration, else for
``nvidia-gpu`` (a roofline from the T4's sourced specs), and says which and why."""

from __future__ import annotations

from typing import Callable

import torch

from deploylens.dtypes import analysis_name
from deploylens.errors import UserError
from deploylens.hardware.targets import Target, resolve

DEFAULT_PLATFORM = "nvidia-gpu"

# the guide's advice per platform class: the families it recommends
GUIDE_ADVICE = {
    "cpu": ("mobile CPU", ("mobilenet_v1", "shufflenet_v2")),
    "npu": ("NPU", ("cspnet", "repvgg")),
    "gpu": ("NVIDIA GPU", ("repvgg",)),
}


def _deploy_profile(name: str, target: Target):
    """The analysis of ``name`` in its deploy form (where the family has one), costed in
    the target's dtype: the source of the candidate's params, MACs and prediction."""
    from deploylens import zoo
    from deploylens.analysis.api import analyze
    from deploylens.zoo.reparam import reparameterize

    variant = zoo.variant(name)
    with torch.device("meta"):
        model = reparameterize(variant.build().eval())
    return analyze(model, (1, 3, variant.resolution, variant.resolution), analysis_name(target.dtype))


def _measured(name: str) -> float:
    from deploylens import zoo
    from deploylens.bench.harness import bench
    from deploylens.bench.runner import StopRule

    model = zoo.create(name, deploy=True)
    rule = StopRule(warmup_iters=2, min_iters=3, min_time=0.3, max_time=2.0)
    return bench(model, ["torch"], [1], rule=rule)[0].p50_ms


def pareto(candidates: list[dict]) -> list[str]:
    """Models no other model beats on both latency (lower) and top-1 (higher)."""
    ranked = sorted((c for c in candidates if c["latency_ms"] is not None and c["top1"] is not None),
                    key=lambda c: (c["latency_ms"], -c["top1"]))
    front, best = [], -1.0
    for c in ranked:
        if c["top1"] > best:
            front.append(c["model"])
            best = c["top1"]
    return front


def default_target(measure: bool = False) -> tuple[str, str]:
    """The target ``recommend`` ranks for when none is given, and why: this machine when
    measuring or when it has a calibration, else the ``nvidia-gpu`` platform class."""
    if measure:
        return "this", "--measure times the models on this machine"
    if resolve("this").calibration is not None:
        return "this", "this machine's calibration"
    return DEFAULT_PLATFORM, (f"no calibration of this machine (deploylens hw calibrate), so the {DEFAULT_PLATFORM} "
                              "roofline; --target to choose")


def recommend(target: str | None = None, budget_ms: float | None = None, measure: bool = False,
              models: list[str] | None = None,
              progress: Callable[[int, int, str], None] = lambda done, total, name: None) -> dict:
    """The zoo (or ``models``) ranked by latency on ``target`` (None: :func:`default_target`),
    with the models within ``budget_ms`` (milliseconds, positive)."""
    from deploylens import zoo
    from deploylens.lint import lint, predicted_ms

    if budget_ms is not None and not budget_ms > 0:
        raise UserError(f"--budget-ms {budget_ms:g}: a latency budget must be a positive number of milliseconds")
    if measure and target not in (None, "this"):
        raise UserError("--measure times the models on this machine: use --target this")
    names = models or zoo.names()
    for name in names:
        zoo.variant(name)  # an unknown name fails before any work
    chosen_by = ""
    if target is None:
        target, chosen_by = default_target(measure)
    resolved = resolve(target)
    if not measure:
        resolved.latency_model()  # no roofline and no calibration: say so before any work
    candidates = []
    for index, name in enumerate(names):
        progress(index, len(names), name)
        variant = zoo.variant(name)
        profile = _deploy_profile(name, resolved)
        latency = _measured(name) if measure else predicted_ms(profile, resolved)
        findings = lint(name, resolved).summary["by_rule"]
        candidates.append({"model": name, "family": variant.family, "params": profile.totals.params,
                           "macs": profile.totals.macs, "latency_ms": latency,
                           "latency_source": "measured (torch eager, this machine)" if measure else
                           ("predicted (calibrated)" if resolved.calibration else f"predicted (roofline, {target})"),
                           "top1": variant.published.top1, "top1_source": variant.published.source,
                           "findings": findings})
    progress(len(names), len(names), "done")
    candidates.sort(key=lambda c: (c["latency_ms"] is None, c["latency_ms"]))
    within = [c["model"] for c in candidates if budget_ms is not None and c["latency_ms"] is not None
              and c["latency_ms"] <= budget_ms]
    return {"target": resolved.name, "target_default": chosen_by or None, "candidates": candidates,
            "pareto": pareto(candidates),
            "within_budget": within if budget_ms is not None else None, "budget_ms": budget_ms,
            "advice": advice(resolved, candidates)}


def advice(target: Target, candidates: list[dict]) -> str:
    platform, families = GUIDE_ADVICE[target.device_class]
    front = pareto(candidates)
    front_families = {c["family"] for c in candidates if c["model"] in front}
    recommended = [c for c in candidates if any(c["family"].startswith(f) for f in families)]
    if not recommended:
        return f"the guide recommends {' / '.join(families)} for {platform}; none of them is in this ranking"
    on_front = sorted({c["family"] for c in recommended if c["model"] in front})
    fastest = candidates[0]
    verdict = "borne out" if on_front else "not borne out"
    why = (f"{', '.join(on_front)} reach the accuracy/latency Pareto front here" if on_front else
           f"none of them is on the Pareto front here ({', '.join(sorted(front_families))} are)")
    return (f"the guide's advice for {platform} ({' / '.join(families)}) is {verdict} on {target.name}: {why}; "
            f"fastest overall: {fastest['model']} at {fastest['latency_ms']:.3f} ms")

"""``deploylens recommend``: every zoo model ranked by latency on a target, beside its
accuracy and lint findings there, the Pareto front, the budget, and whether the field
guide's advice for the platform holds on these numbers (:mod:`.verdict`).

A family with a deploy form (RepVGG, MobileOne: re-parameterizable branches) is ranked
*and linted* in that form, the one whose latency it is (``form: "deploy"``).

Without a target it ranks for this machine when it has a calibration, else for
``nvidia-gpu`` (the T4, rated by its family's fitted device model), and says which and why. A
device model (a :class:`~deploylens.hardware.spec.HardwareSpec`) may stand for the target."""

from __future__ import annotations

from typing import Callable

import torch

from deploylens.errors import UserError
from deploylens.hardware.calibration_profile import CalibrationProfile
from deploylens.hardware.spec import HardwareSpec, load_catalog
from deploylens.hardware.targets import PLATFORMS, Target, resolve
from deploylens.recommend.verdict import GUIDE_ADVICE, judge

DEFAULT_PLATFORM = "nvidia-gpu"
DEPLOY, AS_BUILT = "deploy", "as built"


def _deploy_form(name: str, target: Target):
    """The capture and analysis of ``name`` in its deploy form (where the family has one:
    its re-parameterizable branches folded), costed in the target's precision, and the
    form's name: what the candidate's params, MACs, prediction and findings are of."""
    from deploylens import zoo
    from deploylens.analysis.api import capture
    from deploylens.analysis.profile import build_profile
    from deploylens.zoo.reparam import RepBranches, reparameterize

    variant = zoo.variant(name)
    with torch.device("meta"):  # shapes only: no weights initialised or folded
        model = variant.build().eval()
        form = DEPLOY if any(isinstance(m, RepBranches) for m in model.modules()) else AS_BUILT
        model = reparameterize(model)
    graph = capture(model, (1, 3, variant.resolution, variant.resolution), target.analysis_dtype,
                    f"{name}:deploy" if form == DEPLOY else name)
    return graph, build_profile(graph), form


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
    return DEFAULT_PLATFORM, (f"no calibration of this machine (deploylens hw calibrate), so {DEFAULT_PLATFORM}; "
                              "--target to choose")


def _spec_target(spec: HardwareSpec) -> Target:
    """The target a device model stands for: its class's traits, its deploy precision."""
    if spec.name in PLATFORMS or spec.name == "this":
        raise UserError(f"a device model named {spec.name!r} clashes with the target of that name: rename it")
    return resolve(spec.name, catalog={**load_catalog(), spec.name: spec})


def _source(device_model, name: str) -> str:
    if isinstance(device_model, CalibrationProfile):
        return "predicted (calibrated)"
    if isinstance(device_model, HardwareSpec):
        return f"predicted (roofline, {name})"
    return f"predicted (device model {device_model.model.key}, {name})"


def recommend(target: str | HardwareSpec | None = None, budget_ms: float | None = None, measure: bool = False,
              models: list[str] | None = None,
              progress: Callable[[int, int, str], None] = lambda done, total, name: None) -> dict:
    """The zoo (or ``models``) ranked by latency on ``target`` (None: :func:`default_target`;
    a ``HardwareSpec``: that device model, with its class's traits for lint and the
    guide's advice), with the models within ``budget_ms`` (milliseconds, positive) and the
    verdict on the guide's advice for the platform (:func:`deploylens.recommend.verdict.judge`)."""
    from deploylens import zoo
    from deploylens.lint import lint_captured
    from deploylens.predict.api import resolve_target
    from deploylens.predict.core import predict_profile

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
    resolved = _spec_target(target) if isinstance(target, HardwareSpec) else resolve(target)
    device_model = None
    if not measure:  # no latency model: say so before any work
        device_model = resolve_target(target)
    backend = "torch" if isinstance(device_model, CalibrationProfile) else "tensorrt"
    source = "measured (torch eager, this machine)" if measure else _source(device_model, resolved.name)
    candidates = []
    for index, name in enumerate(names):
        progress(index, len(names), name)
        variant = zoo.variant(name)
        graph, profile, form = _deploy_form(name, resolved)
        latency = _measured(name) if measure else \
            predict_profile(profile, device_model, backend, target=resolved.name).totals["latency_ms"]
        findings = lint_captured(graph, profile, resolved).summary["by_rule"]
        candidates.append({"model": name, "family": variant.family, "form": form, "params": profile.totals.params,
                           "macs": profile.totals.macs, "latency_ms": latency, "latency_source": source,
                           "top1": variant.published.top1, "top1_source": variant.published.source,
                           "findings": findings})
    progress(len(names), len(names), "done")
    candidates.sort(key=lambda c: (c["latency_ms"] is None, c["latency_ms"]))
    within = [c["model"] for c in candidates if budget_ms is not None and c["latency_ms"] is not None
              and c["latency_ms"] <= budget_ms]
    verdict = judge(resolved.device_class, resolved.name, candidates)
    return {"target": resolved.name, "target_default": chosen_by or None, "candidates": candidates,
            "pareto": pareto(candidates),
            "within_budget": within if budget_ms is not None else None, "budget_ms": budget_ms,
            "verdict": verdict, "advice": advice(verdict, candidates)}


def advice(verdict: dict, candidates: list[dict]) -> str:
    """The verdict in one sentence, with the fastest model overall."""
    fastest = next((c for c in candidates if c["latency_ms"] is not None), None)
    return verdict["reason"] + (f"; fastest overall: {fastest['model']} at {fastest['latency_ms']:.3f} ms"
                                if fastest else "")


__all__ = ["GUIDE_ADVICE", "advice", "default_target", "pareto", "recommend"]

"""``deploylens.lint``: the field guide's design rules checked on a model for a target."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from deploylens.dtypes import analysis_name
from deploylens.errors import UserError
from deploylens.lint.rules import RULES, Context, Finding
from deploylens.lint.targets import Target, resolve

SEVERITIES = ("info", "warning", "error")


@dataclass
class LintReport:
    target: str
    model: str
    findings: list[Finding]
    summary: dict

    def to_dict(self) -> dict:
        return {"target": self.target, "model": self.model, "findings": [asdict(f) for f in self.findings],
                "summary": self.summary}


def predicted_ms(profile, target: Target) -> float | None:
    """Predicted latency of an analysed model on ``target``, or None without a latency model."""
    from deploylens.predict.core import predict_profile

    try:
        if target.calibration:
            return predict_profile(profile, target.calibration, "torch", target=target.name).totals["latency_ms"]
        if target.spec is not None and target.spec.bandwidth and target.spec.peak_flops(target.dtype):
            return predict_profile(profile, target.spec, "tensorrt", target=target.name).totals["latency_ms"]
    except UserError:
        return None
    return None


def lint(model: Any, target: str | Target = "nvidia-gpu", input_shape: Any = None, select: list[str] | None = None,
         ignore: list[str] | None = None, int8: bool = False) -> LintReport:
    """Check ``model`` (any form ``analyze`` takes) against the rules that apply to ``target``."""
    from deploylens.analysis.api import capture
    from deploylens.analysis.profile import build_profile

    for rule_id in (select or []) + (ignore or []):
        if rule_id not in RULES:
            raise UserError(f"unknown rule {rule_id!r}; rules: {', '.join(RULES)}")
    resolved = target if isinstance(target, Target) else resolve(target, int8)
    # fp32 targets cost the model in its own dtype (an fp16 ONNX file stays fp16)
    analysis_dtype = "int8" if resolved.int8 else None if resolved.dtype == "fp32" else analysis_name(resolved.dtype)
    graph = capture(model, input_shape, analysis_dtype)
    profile = build_profile(graph)
    context = Context(graph, profile, resolved)
    findings: list[Finding] = []
    for rule in RULES.values():
        if (select and rule.id not in select) or (ignore and rule.id in ignore) or not rule.applies(resolved):
            continue
        findings += rule.check(context)
    predicted = predicted_ms(profile, resolved)
    saved = sum(f.impact["value"] for f in findings if f.impact and f.impact["unit"] == "ms" and f.impact["value"])
    summary = {
        "by_rule": dict(Counter(f.rule for f in findings)),
        "by_severity": dict(Counter(f.severity for f in findings)),
        "predicted_ms": predicted,
        "predicted_ms_if_fixed": max(predicted - saved, 0.0) if predicted is not None else None,
        "rules_applied": [r.id for r in RULES.values() if r.applies(resolved)
                          and not (select and r.id not in select) and not (ignore and r.id in ignore)],
        "target_notes": resolved.notes,
    }
    return LintReport(resolved.name, graph.model, findings, summary)


def to_sarif(report: LintReport) -> dict:
    """SARIF 2.1.0, so code-review tools show the findings."""
    level = {"info": "note", "warning": "warning", "error": "error"}
    return {
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": {"driver": {"name": "deploylens",
                                "rules": [{"id": r.id, "shortDescription": {"text": r.rationale},
                                           "properties": {"source": r.source}} for r in RULES.values()]}},
            "results": [{"ruleId": f.rule, "level": level[f.severity], "message": {"text": f.message},
                         "locations": [{"logicalLocations": [{"fullyQualifiedName": f.layer, "kind": "module"}]}],
                         "properties": {"impact": f.impact, "source": f.source, "target": report.target}}
                        for f in report.findings],
        }],
    }


__all__ = ["LintReport", "RULES", "SEVERITIES", "Target", "lint", "resolve", "to_sarif"]

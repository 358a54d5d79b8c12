"""``deploylens.lint``: the field guide's design rules checked on a model for a target.
Rules are chosen by id prefix (``G`` is G1-G4), their thresholds are named options
(:func:`explain` lists them), and a project configures both in ``pyproject.toml``
(:mod:`deploylens.lint.config`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from deploylens.errors import UserError
from deploylens.hardware.spec import load_catalog
from deploylens.hardware.targets import PLATFORMS, Target, resolve
from deploylens.lint.config import SEVERITIES
from deploylens.lint.registry import DEPLOY_BACKEND
from deploylens.lint.rules import RULES, Context, Finding, Rule


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
        model = target.latency_model(DEPLOY_BACKEND)
        backend = "torch" if model is target.calibration else DEPLOY_BACKEND
        return predict_profile(profile, model, backend, target=target.name).totals["latency_ms"]
    except UserError:
        return None


def _matching(selector: str) -> list[str]:
    prefix = selector.strip().upper()
    return list(RULES) if prefix == "ALL" else [rule_id for rule_id in RULES if rule_id.startswith(prefix)]


def select_rules(select: Iterable[str] | None = None, ignore: Iterable[str] = ()) -> list[str]:
    """The ids of the rules ``select`` and ``ignore`` choose. Each entry is a rule id or
    a prefix of ids (``G``: G1-G4; ``ALL``), case-insensitive; no ``select``: every rule.
    As in ruff, the most specific entry that matches a rule decides (an ignore wins a
    tie): ``select G`` with ``ignore G2`` runs G1, G3 and G4. An entry that matches no
    rule is a :class:`UserError`."""
    decisions: dict[str, tuple[int, bool]] = {rule_id: (-1, select is None) for rule_id in RULES}
    for entries, keep in ((select or [], True), (ignore, False)):
        for entry in entries:
            matched = _matching(entry)
            if not entry.strip() or not matched:
                raise UserError(f"unknown rule or prefix {entry!r}; rules: {', '.join(RULES)} (a prefix such as G "
                                "selects G1-G4)")
            specificity = 0 if entry.strip().upper() == "ALL" else len(entry.strip())
            for rule_id in matched:
                if specificity > decisions[rule_id][0] or (specificity == decisions[rule_id][0] and not keep):
                    decisions[rule_id] = (specificity, keep)
    return [rule_id for rule_id, (_, keep) in decisions.items() if keep]


def _rule(rule_id: str) -> Rule:
    found = RULES.get(rule_id.strip().upper())
    if found is None:
        raise UserError(f"unknown rule {rule_id!r}; rules: {', '.join(RULES)}")
    return found


def check_options(options: dict[str, dict[str, Any]] | None, where: str = "lint options") -> dict[str, dict[str, Any]]:
    """``options`` (rule id -> option name -> value) checked against each rule's declared
    options: known names, numbers of the declared kind within their bounds."""
    checked: dict[str, dict[str, Any]] = {}
    for rule_id, values in (options or {}).items():
        rule = _rule(rule_id)
        if not isinstance(values, dict):
            raise UserError(f"{where}: options of {rule.id} must be a table of name = value")
        declared = {option.name: option for option in rule.options}
        for name, value in values.items():
            if name not in declared:
                raise UserError(f"{where}: {rule.id} has no option {name!r}; "
                                + (f"its options: {', '.join(declared)}" if declared else "it has none"))
            option = declared[name]
            whole = isinstance(option.default, int)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
                kind = "an integer" if whole else "a number"
                raise UserError(f"{where}: {rule.id}.{name} = {value!r}: expected {kind}")
            if (option.minimum is not None and value < option.minimum) or \
                    (option.maximum is not None and value > option.maximum):
                bounds = f"at least {option.minimum:g}" if option.maximum is None else \
                    f"between {option.minimum:g} and {option.maximum:g}"
                raise UserError(f"{where}: {rule.id}.{name} = {value!r}: must be {bounds}")
            checked.setdefault(rule.id, {})[name] = value
    return checked


def lint(model: Any, target: str | Target = "nvidia-gpu", input_shape: Any = None, select: list[str] | None = None,
         ignore: list[str] | None = None, int8: bool = False,
         options: dict[str, dict[str, Any]] | None = None, deploy: bool = False) -> LintReport:
    """Check ``model`` (any form ``analyze`` takes) against the rules that apply to
    ``target`` (deployed in INT8 with ``int8``), chosen by ``select`` / ``ignore``
    (:func:`select_rules`), with ``options`` overriding rules' defaults
    (:func:`check_options`). ``deploy``: a zoo model's deploy form (RepVGG / MobileOne
    branches folded, named ``NAME:deploy``); any other reference is a :class:`UserError`."""
    from deploylens.analysis.api import capture
    from deploylens.analysis.profile import build_profile

    chosen = select_rules(select, ignore or ())
    checked = check_options(options)
    resolved = target if isinstance(target, Target) else resolve(target, "int8" if int8 else None)
    graph = capture(model, input_shape, resolved.analysis_dtype, deploy=deploy)
    return lint_captured(graph, build_profile(graph), resolved, chosen, checked)


def lint_captured(graph, profile, target: Target, chosen: list[str] | None = None,
                  options: dict[str, dict[str, Any]] | None = None) -> LintReport:
    """:func:`lint` of a model already captured (``graph``) and analysed (``profile``) in
    ``target``'s precision: the rules ``chosen`` (ids; default every rule) that apply to
    ``target``, with checked ``options`` (so ``recommend`` lints the very form it ranks)."""
    chosen = list(RULES) if chosen is None else chosen
    context = Context(graph, profile, target, options or {})
    applied = [RULES[rule_id] for rule_id in chosen if RULES[rule_id].applies(target)]
    findings: list[Finding] = []
    for rule in applied:
        findings += rule.check(context)
    predicted = predicted_ms(profile, target)
    saved = sum(f.impact["value"] for f in findings if f.impact and f.impact["unit"] == "ms" and f.impact["value"])
    summary = {
        "by_rule": dict(Counter(f.rule for f in findings)),
        "by_severity": dict(Counter(f.severity for f in findings)),
        "predicted_ms": predicted,
        "predicted_ms_if_fixed": max(predicted - saved, 0.0) if predicted is not None else None,
        "rules_applied": [rule.id for rule in applied],
        "target_notes": target.notes,
        "not_judged": context.not_judged,
    }
    return LintReport(target.name, graph.model, findings, summary)


# the study that measures each rule's claim on the user's hardware (`deploylens study NAME`)
CHECKED_BY = {"G1": "g1", "G2": "g2", "G3": "g3", "G4": "g4", "CH-ALIGN": "channel-align", "DW-ACCEL": "depthwise",
              "EARLY-SEP": "early-sep", "KERNEL-3X3": "kernel-density", "PTQ-RISK": "int8"}


def explain(rule_id: str, options: dict[str, dict[str, Any]] | None = None) -> dict:
    """What ``rule_id`` checks: its rationale and source, its options (default, and the
    value ``options`` configures), where it applies, and the platform classes it runs on
    (as deployed by default, and with INT8)."""
    rule = _rule(rule_id)
    configured = check_options(options).get(rule.id, {})
    catalog = load_catalog()
    runs_on = {name: [platform for platform in PLATFORMS if rule.applies(resolve(platform, dtype, catalog=catalog))]
               for name, dtype in (("default", None), ("int8", "int8"))}
    study = CHECKED_BY.get(rule.id)
    return {"id": rule.id, "rationale": rule.rationale, "source": rule.source, "applies": rule.applies.text,
            "platforms": runs_on, "study": f"deploylens study {study}" if study else None,
            "options": [{"name": o.name, "default": o.default, "value": configured.get(o.name, o.default),
                         "meaning": o.meaning} for o in rule.options]}


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


__all__ = ["LintReport", "RULES", "SEVERITIES", "Target", "check_options", "explain", "lint", "lint_captured",
           "resolve", "select_rules", "to_sarif"]

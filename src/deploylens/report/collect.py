"""The data behind a report page. Per model, exactly what ``analyze``, ``predict`` and
``lint --format json`` print for it (the same API calls, the same configuration), the
rules its findings cite, its published accuracy and, when asked, what ``bench`` measured;
beside them, the target's hardware as ``hw show --format json`` prints it. The page is
drawn from this data alone, and embeds it, so other tools read the figures back."""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence


def _as_printed(data: Any) -> Any:
    """``data`` as a command's ``--format json`` prints it (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(data))


def bench_records(measurements: list) -> list[dict]:
    """Bench measurements as ``bench --format json`` prints them: without raw samples."""
    return [{key: value for key, value in m.to_dict().items() if key not in ("samples_ms", "probe_ms")}
            for m in measurements]


def _lint_settings() -> tuple[list[str] | None, list[str], dict]:
    """The rules and options ``deploylens lint`` runs with here: the nearest
    ``[tool.deploylens.lint]`` configuration, as the command reads it."""
    from deploylens.lint import check_options
    from deploylens.lint.config import discover

    settings = discover()
    where = f"{settings.path} [tool.deploylens.lint.options]" if settings.path else "lint options"
    options = check_options(settings.options, where)
    chosen, ignored = settings.selection(None, None)
    return chosen, ignored, options


def _accuracy(reference: Any) -> dict | None:
    """A zoo model's published top-1 (its deploy form computes the same function), else None."""
    from deploylens import zoo

    if not isinstance(reference, str) or reference not in zoo.names():
        return None
    published = zoo.variant(reference).published
    return None if published.top1 is None else {"top1": published.top1, "source": published.source}


def model_entry(reference: Any, target: str, dtype: str | None = None, input_shape: Any = None,
                deploy: bool = False, measure: Any = None,
                progress: Callable[[str], None] = lambda step: None) -> dict:
    """One model's data: ``analyze``, ``predict`` and ``lint`` as their ``--format json``
    (``predict`` and ``lint`` on ``target``, ``dtype`` for both analyze and predict when
    given), ``rules`` (rationale and source of each rule found), ``accuracy`` and, with
    ``measure`` (a bench ``StopRule``), ``bench``: torch on this machine's CPU."""
    from deploylens.analysis.api import analyze
    from deploylens.capture.loader import default_input_specs, parse_input_shapes, resolve_model
    from deploylens.lint import RULES, lint
    from deploylens.predict import predict
    from deploylens.report.tables import to_json

    progress(f"building {reference}")
    built, name = resolve_model(reference, deploy=deploy)  # once: every step below reads the same module
    specs = parse_input_shapes(input_shape) or default_input_specs(reference, built)
    progress(f"analysing {name}")
    profile = analyze(built, specs, dtype, name=name)
    progress(f"predicting {name} on {target}")
    prediction = predict(built, target, dtype=dtype, input_shape=specs)
    prediction.model = name  # given the module, predict would name it by its class
    progress(f"linting {name} for {target}")
    chosen, ignored, options = _lint_settings()
    findings = lint(built, target, specs, chosen, ignored, options=options)
    findings.model = name
    entry = {"reference": str(reference), "deploy": deploy, "analyze": json.loads(to_json(profile)),
             "predict": _as_printed(prediction.to_dict()), "lint": _as_printed(findings.to_dict()),
             "rules": {rule_id: {"rationale": RULES[rule_id].rationale, "source": RULES[rule_id].source}
                       for rule_id in sorted({f.rule for f in findings.findings})},
             "accuracy": _accuracy(reference), "bench": None}
    if measure is not None:
        from deploylens.bench.harness import bench

        progress(f"measuring {name} (torch, this machine's CPU)")
        entry["bench"] = _as_printed(bench_records(bench(reference, input_shape=specs, rule=measure, deploy=deploy)))
    return entry


def target_entry(target: str, dtype: str | None = None) -> dict:
    """The target's name and its device's catalog entry (``hw show --format json``; None
    where it has none): a ``UserError`` for an unknown target, before any model is read."""
    from deploylens.hardware.targets import resolve

    resolved = resolve(target, dtype)
    return {"name": target, "hardware": resolved.spec.to_dict() if resolved.spec else None}


def report_data(references: Sequence[Any], target: str, dtype: str | None = None, input_shape: Any = None,
                deploy: bool = False, measure: Any = None,
                progress: Callable[[str], None] = lambda step: None) -> dict:
    """``{"target": ..., "models": [...]}``: :func:`target_entry` and one
    :func:`model_entry` per reference."""
    data = {"target": target_entry(target, dtype), "models": []}
    for reference in references:
        data["models"].append(model_entry(reference, target, dtype, input_shape, deploy, measure, progress))
    return data

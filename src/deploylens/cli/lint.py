"""``deploylens lint``: the field guide's design rules for a target. Exit codes as ruff's:
0 no finding at or above the fail severity, 1 findings, 2 an error (bad input, bad
configuration, or an internal fault)."""

from __future__ import annotations

import os
from typing import List, Optional

import typer

from deploylens.cli.analyze import DEPLOY_HELP
from deploylens.cli.app import (MODEL_HELP, OUTPUT_HELP, SHAPE_HELP, app, csv_list, emit_json, joined_shapes, page,
                                stderr, table)
from deploylens.errors import UserError
from deploylens.output import check_destination, emit

TARGET_HELP = ("mobile-cpu, npu, nvidia-gpu (default), a catalog device (deploylens hw list), or this; the same "
               "targets as predict and recommend.")


@app.command("lint")
def lint_command(
    model: Optional[str] = typer.Argument(None, help=MODEL_HELP),
    target: str = typer.Option("nvidia-gpu", help=TARGET_HELP),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", "-i", help=SHAPE_HELP),
    deploy: bool = typer.Option(False, "--deploy", help=DEPLOY_HELP),
    int8: bool = typer.Option(False, "--int8", help="The model is deployed in INT8 on the target (INT8-only targets "
                                                    "such as npu always are): PTQ-RISK runs, bytes are INT8."),
    select: Optional[str] = typer.Option(None, help="Only these rules: comma-separated ids or id prefixes (G: "
                                                    "G1-G4; ALL). Replaces the configuration's select and ignore."),
    ignore: Optional[str] = typer.Option(None, help="Skip these rules: ids or id prefixes; added to the "
                                                    "configuration's ignore."),
    fail_on: Optional[str] = typer.Option(None, help="Exit 1 on a finding at least this severe: info (default: any "
                                                     "finding), warning or error."),
    exit_zero: bool = typer.Option(False, "--exit-zero", help="Exit 0 even with findings (2 still means an error)."),
    config: Optional[str] = typer.Option(None, "--config", help="Read [tool.deploylens.lint] from this file instead "
                                                                "of the nearest pyproject.toml that has one."),
    isolated: bool = typer.Option(False, "--isolated", help="Read no configuration file."),
    explain: Optional[str] = typer.Option(None, "--explain", metavar="RULE",
                                          help="Say what RULE checks (rationale, source, options, targets) and exit."),
    fmt: str = typer.Option("table", "--format", help="table, json or sarif."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help=OUTPUT_HELP),
    force: bool = typer.Option(False, "--force", help="Overwrite the output file if it exists."),
) -> None:
    """The field guide's design rules (ShuffleNetV2 G1-G4, alignment, depthwise, ...) for a target.

    Exit 0: no finding at or above --fail-on; 1: findings; 2: an error. Rules, ignores,
    --fail-on and each rule's options (deploylens lint --explain RULE) are configurable in
    [tool.deploylens.lint] of the nearest pyproject.toml (see docs/commands.md#lint)."""
    from deploylens.lint.config import SEVERITIES

    if fmt not in ("table", "json", "sarif"):
        raise UserError(f"--format {fmt}: one of table, json, sarif")
    if fail_on is not None and fail_on not in SEVERITIES:
        raise UserError(f"--fail-on {fail_on}: one of {', '.join(SEVERITIES)}")
    if config is not None and isolated:
        raise UserError("--config and --isolated exclude each other")
    check_destination(output, force)
    if explain is None and model is None:
        raise UserError("give a MODEL to lint (or --explain RULE)")
    try:
        found = _run(model, target, input_shape, deploy, int8, select, ignore, fail_on, config, isolated, explain, fmt,
                     output)
    except (UserError, typer.Exit):
        raise
    except Exception as error:  # noqa: BLE001 - ruff's convention: a crash is exit 2, never 1 ("findings")
        if os.environ.get("DEPLOYLENS_DEBUG") or hasattr(error, "exit_code"):
            raise
        stderr.print(f"deploylens: internal error: {type(error).__name__}: {error} (set DEPLOYLENS_DEBUG=1 for the "
                     "traceback)", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    if found and not exit_zero:
        raise typer.Exit(1)


def _run(model, target, input_shape, deploy, int8, select, ignore, fail_on, config, isolated, explain, fmt,
         output) -> bool:
    """Lint (or explain) and write the result; True when a finding is at or above the fail severity."""
    from deploylens.lint import SEVERITIES, check_options, lint, to_sarif
    from deploylens.lint.config import discover

    settings = discover(config, isolated)
    where = f"{settings.path} [tool.deploylens.lint.options]" if settings.path else "lint options"
    options = check_options(settings.options, where)
    if explain is not None:
        _explain(explain, options, fmt, output)
        return False
    if select is not None and not csv_list(select):
        raise UserError("--select: give rule ids or prefixes (e.g. G,CH-ALIGN), or leave it out for every rule")
    chosen, ignored = settings.selection(csv_list(select) if select is not None else None,
                                         csv_list(ignore) if ignore is not None else None)
    report = lint(model, target, joined_shapes(input_shape), chosen, ignored, int8, options, deploy)
    if fmt == "json":
        emit_json(report.to_dict(), output)
    elif fmt == "sarif":
        emit_json(to_sarif(report), output)
    else:
        with page(output) as console:
            _render(console, report)
    threshold = SEVERITIES.index(fail_on or settings.fail_on or "info")
    return any(SEVERITIES.index(f.severity) >= threshold for f in report.findings)


def _explain(rule_id: str, options: dict, fmt: str, output: Optional[str]) -> None:
    from deploylens.lint import explain

    data = explain(rule_id, options)
    if fmt == "json":
        emit_json(data, output)
        return
    platforms = data["platforms"]
    lines = [f"rule: {data['id']}", f"rationale: {data['rationale']}", f"source: {data['source']}",
             f"applies to: {data['applies']}",
             f"platform classes: {', '.join(platforms['default']) or 'none'} "
             f"(with --int8: {', '.join(platforms['int8']) or 'none'})"]
    if data["options"]:
        lines.append(f"options ([tool.deploylens.lint.options.{data['id']}] in pyproject.toml):")
        lines += [f"  {o['name']} = {o['value']!r}" + (" (default)" if o["value"] == o["default"] else
                                                          f" (default {o['default']!r})") + f": {o['meaning']}"
                  for o in data["options"]]
    else:
        lines.append("options: none")
    if data["study"]:
        lines.append(f"measure it on this machine: {data['study']}")
    emit("\n".join(lines) + "\n", output)


def _render(console, report) -> None:
    shown = table(("rule", "severity", "layer", "impact", "message"), left=("rule", "severity", "layer", "message"))
    for f in report.findings:
        impact = "" if not f.impact or f.impact["value"] is None else f"{f.impact['value']:.4g} {f.impact['unit']}"
        shown.add_row(f.rule, f.severity, f.layer, impact, f.message)
    console.print(shown)
    summary = report.summary
    predicted = summary["predicted_ms"]
    console.print(f"{report.model} on {report.target}: {len(report.findings)} findings {summary['by_rule']}"
                  + (f"; predicted {predicted:.3f} ms, {summary['predicted_ms_if_fixed']:.3f} ms if the "
                     "ms-impact findings were fixed" if predicted is not None else ""), markup=False)
    for note in summary["target_notes"]:
        console.print(f"note: {note}", markup=False)
    for rule_id, reason in summary["not_judged"].items():
        console.print(f"note: {rule_id} not judged: {reason}", markup=False)

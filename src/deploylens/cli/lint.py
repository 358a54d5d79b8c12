"""``deploylens lint``: the field guide's design rules for a target."""

from __future__ import annotations

from typing import List, Optional

import typer

from deploylens.cli.app import MODEL_HELP, OUTPUT_HELP, SHAPE_HELP, app, csv_list, emit_json, joined_shapes, page, table
from deploylens.errors import UserError


@app.command("lint")
def lint_command(
    model: str = typer.Argument(..., help=MODEL_HELP),
    target: str = typer.Option("nvidia-gpu", help="mobile-cpu, npu, nvidia-gpu, a catalog device, or this."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", "-i", help=SHAPE_HELP),
    int8: bool = typer.Option(False, "--int8", help="The model is meant to run in INT8 on the target."),
    select: Optional[str] = typer.Option(None, help="Only these rules (comma-separated ids)."),
    ignore: Optional[str] = typer.Option(None, help="Skip these rules (comma-separated ids)."),
    fail_on: Optional[str] = typer.Option(None, help="Exit 1 when a finding is at least this severe: warning or "
                                                     "error."),
    fmt: str = typer.Option("table", "--format", help="table, json or sarif."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help=OUTPUT_HELP),
) -> None:
    """The field guide's design rules (ShuffleNetV2 G1-G4, alignment, depthwise, ...) for a target."""
    from deploylens.lint import SEVERITIES, lint, to_sarif

    if fmt not in ("table", "json", "sarif"):
        raise UserError(f"--format {fmt}: one of table, json, sarif")
    if fail_on is not None and fail_on not in ("warning", "error"):
        raise UserError(f"--fail-on {fail_on}: warning or error")
    report = lint(model, target, joined_shapes(input_shape), csv_list(select) if select else None,
                  csv_list(ignore) if ignore else None, int8)
    if fmt == "json":
        emit_json(report.to_dict(), output)
    elif fmt == "sarif":
        emit_json(to_sarif(report), output)
    else:
        with page(output) as console:
            _render(console, report)
    if fail_on is not None:
        threshold = SEVERITIES.index(fail_on)
        if any(SEVERITIES.index(f.severity) >= threshold for f in report.findings):
            raise typer.Exit(1)


def _render(console, report) -> None:
    shown = table(("rule", "severity", "layer", "impact", "message"),
                  left=("rule", "severity", "layer", "impact", "message"))
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

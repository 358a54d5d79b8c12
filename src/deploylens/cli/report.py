"""``deploylens report``: one self-contained HTML page of one or several models on a target."""

from __future__ import annotations

from typing import List, Optional

import typer

from deploylens.cli.app import FORCE_HELP, MODEL_HELP, SHAPE_HELP, app, emit_json, joined_shapes, progress
from deploylens.errors import UserError
from deploylens.output import check_destination, emit

TARGET_HELP = ("mobile-cpu, npu, nvidia-gpu (default), a catalog device (deploylens hw list), or this; the same "
               "targets as predict and lint.")


@app.command("report")
def report_command(
    models: List[str] = typer.Argument(..., help=MODEL_HELP + " Several: a comparison on one page."),
    target: str = typer.Option("nvidia-gpu", help=TARGET_HELP),
    dtype: Optional[str] = typer.Option(None, help="float32, float16, bfloat16 or int8 for analyze and predict "
                                                   "(default: analyze in float32, predict in the target's deploy "
                                                   "precision, as the commands do)."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", "-i", help=SHAPE_HELP),
    deploy: bool = typer.Option(False, "--deploy", help="Each zoo model's deploy form (RepVGG/MobileOne branches "
                                                        "folded)."),
    measure: bool = typer.Option(False, "--measure", help="Also measure each model here (torch, CPU, batch 1)."),
    measure_time: float = typer.Option(1.0, min=0.05, help="Seconds of timed samples at most per model with "
                                                           "--measure."),
    fmt: str = typer.Option("html", "--format", help="html, or json: the data the page embeds."),
    output: str = typer.Option("report.html", "--output", "-o", help="The file to write ('-': stdout)."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """One HTML page (no network needed): summary, roofline, time per module and kind, lint findings, comparison."""
    from deploylens.bench.runner import StopRule
    from deploylens.report.collect import report_data
    from deploylens.report.pages import report_page

    if fmt not in ("html", "json"):
        raise UserError(f"--format {fmt}: one of html, json")
    destination = None if output == "-" else output
    check_destination(destination, force)
    rule = StopRule(min_time=min(0.2, measure_time), max_time=measure_time) if measure else None
    with progress() as shown:
        task = shown.add_task("report", total=None)
        data = report_data(models, target, dtype, joined_shapes(input_shape), deploy, rule,
                           progress=lambda step: shown.update(task, description=step))
    if fmt == "json":
        emit_json(data, destination)
    else:
        emit(report_page(data), destination)

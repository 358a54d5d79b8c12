"""``deploylens recommend``: the zoo ranked by latency on a target."""

from __future__ import annotations

from typing import Optional

import typer

from deploylens.cli.app import OUTPUT_HELP, Format, app, csv_list, progress, show, table
from deploylens.output import check_destination, emit


@app.command("recommend")
def recommend_command(
    target: Optional[str] = typer.Option(None, help="mobile-cpu, npu, nvidia-gpu, a catalog device, or this (the "
                                                    "same targets as predict and lint). Default: this when this "
                                                    "machine has a calibration (deploylens hw calibrate), else "
                                                    "nvidia-gpu; the output says which."),
    budget_ms: Optional[float] = typer.Option(None, help="Latency budget in milliseconds (positive)."),
    measure: bool = typer.Option(False, "--measure", help="Measure latency here instead of predicting (this only)."),
    models: Optional[str] = typer.Option(None, help="Only these zoo models (comma-separated)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv (one row per model)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help=OUTPUT_HELP),
    force: bool = typer.Option(False, "--force", help="Overwrite the output file if it exists."),
) -> None:
    """Every zoo model ranked by latency on a target, with top-1, lint findings and the Pareto front.

    RepVGG and MobileOne are ranked and linted in their deploy form (branches folded).
    The verdict on the guide's advice for the platform compares the family it favours with
    the one it advises against at comparable top-1 (within 1 point) on this latency.

    Without --target: this machine when it has a calibration, else nvidia-gpu (the T4 and
    its family's device model), so that `deploylens recommend` alone ranks on a fresh machine."""
    check_destination(output, force)
    from deploylens.recommend import recommend
    from deploylens.report.tables import to_csv

    with progress(counted=True) as shown:
        task = shown.add_task("ranking", total=None)
        result = recommend(target, budget_ms, measure, csv_list(models) if models else None,
                           progress=lambda done, total, name: shown.update(task, completed=done, total=total,
                                                                              description=f"ranking: {name}"))
    if fmt is Format.csv:
        emit(to_csv([_row(c, result) for c in result["candidates"]]), output)
        return
    show(result, fmt, _render, output)


def _row(candidate: dict, result: dict) -> dict:
    """One model's CSV row: the JSON candidate's scalars, its findings as 'RULE count; ...',
    and the run's verdict on the guide's advice."""
    return {"target": result["target"], **{k: v for k, v in candidate.items() if k != "findings"},
            "pareto": candidate["model"] in result["pareto"],
            "within_budget": None if result["within_budget"] is None else candidate["model"] in result["within_budget"],
            "findings": "; ".join(f"{k} {v}" for k, v in candidate["findings"].items()),
            "verdict": result["verdict"]["verdict"]}


def _render(console, result: dict) -> None:
    from deploylens.report.tables import human

    console.print(f"target: {result['target']}" + (f" (default: {result['target_default']})"
                                                   if result["target_default"] else ""), markup=False)
    shown = table(("model", "latency ms", "params", "MACs", "top-1", "pareto", "budget", "findings"),
                  left=("model", "findings"))
    for c in result["candidates"]:
        shown.add_row(c["model"], "" if c["latency_ms"] is None else f"{c['latency_ms']:.3f}", human(c["params"]),
                      human(c["macs"]), "" if c["top1"] is None else f"{c['top1']:.1f}",
                      "*" if c["model"] in result["pareto"] else "",
                      "" if result["within_budget"] is None else ("yes" if c["model"] in result["within_budget"]
                                                                  else "no"),
                      ", ".join(f"{k} {v}" for k, v in c["findings"].items()))
    console.print(shown)
    console.print(f"latency: {result['candidates'][0]['latency_source']}; top-1: published (see zoo show)",
                  markup=False)
    deployed = sorted({c["family"] for c in result["candidates"] if c["form"] == "deploy"})
    if deployed:
        console.print(f"form: {', '.join(deployed)} ranked and linted in the deploy form (branches folded)",
                      markup=False)
    console.print(f"advice: {result['advice']}", markup=False)
    for pair in result["verdict"]["pairs"]:
        console.print(f"  {pair['favoured']} {pair['favoured_top1']:.1f}% {pair['favoured_ms']:.3f} ms vs "
                      f"{pair['other']} {pair['other_top1']:.1f}% {pair['other_ms']:.3f} ms: x{pair['speedup']:.2f}",
                      markup=False)

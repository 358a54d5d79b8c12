"""``deploylens recommend``: the zoo ranked by latency on a target."""

from __future__ import annotations

from typing import Optional

import typer

from deploylens.cli.app import Format, app, csv_list, progress, show, table


@app.command("recommend")
def recommend_command(
    target: str = typer.Option("this", help="mobile-cpu, npu, nvidia-gpu, a catalog device, or this."),
    budget_ms: Optional[float] = typer.Option(None, help="Latency budget in milliseconds."),
    measure: bool = typer.Option(False, "--measure", help="Measure latency here instead of predicting (this only)."),
    models: Optional[str] = typer.Option(None, help="Only these zoo models (comma-separated)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json."),
) -> None:
    """Every zoo model ranked by latency on a target, with top-1, lint findings and the Pareto front."""

    from deploylens.recommend import recommend

    with progress(counted=True) as shown:
        task = shown.add_task("ranking", total=None)
        result = recommend(target, budget_ms, measure, csv_list(models) if models else None,
                           progress=lambda done, total, name: shown.update(task, completed=done, total=total,
                                                                              description=f"ranking: {name}"))
    show(result, fmt, _render)


def _render(console, result: dict) -> None:
    from deploylens.report.tables import human

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
    console.print(f"advice: {result['advice']}", markup=False)

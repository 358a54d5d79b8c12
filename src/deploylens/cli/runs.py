"""``deploylens runs``: the bench runs saved in the results store."""

from __future__ import annotations

from typing import Optional

import typer

from deploylens.cli.app import STORE_HELP, Format, app, show, stderr
from deploylens.errors import UserError

runs_app = typer.Typer(no_args_is_help=True, help="Stored bench runs: list, show, compare.")
app.add_typer(runs_app, name="runs")


@runs_app.command("list")
def runs_list(store: Optional[str] = typer.Option(None, help=STORE_HELP),
              fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """The most recent runs."""
    from deploylens.bench.store import Store

    show(Store(store).runs(), fmt, _render_runs)


def _render_runs(console, rows: list[dict]) -> None:
    for row in rows:
        console.print(f"{row['id']:5d}  {row['created']}  {row['status']:11s}  {row['measurements']:3d} measurements  "
                      f"{row['model']}", markup=False, highlight=False)


@runs_app.command("show")
def runs_show(run_id: int = typer.Argument(...), store: Optional[str] = typer.Option(None, help=STORE_HELP),
              fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """One run: arguments, environment and measurements."""
    from deploylens.bench.store import Store

    show(Store(store).run(run_id), fmt, _render_run)


def _render_run(console, run: dict) -> None:
    console.print(f"run {run['id']}  {run['created']}  {run['model']}  {run['status']}", markup=False)
    for m in run["measurements"]:
        console.print(f"  {m['backend']:14s} batch {m['batch']:4d}  p50 {m['p50_ms']:9.3f} ms  "
                      f"{m['throughput']:9.1f} samples/s  {m['stop_reason']}", markup=False, highlight=False)


@runs_app.command("compare")
def runs_compare(baseline: int = typer.Argument(...), candidate: int = typer.Argument(...),
                 store: Optional[str] = typer.Option(None, help=STORE_HELP),
                 fail_above: Optional[float] = typer.Option(None, help="Exit 1 when a p50 ratio exceeds this "
                                                                        "(e.g. 1.10: a 10% regression)."),
                 fmt: Format = typer.Option(Format.table, "--format")) -> None:
    """Candidate / baseline ratios of the median latency and throughput."""
    from deploylens.bench.store import Store

    result = Store(store).compare(baseline, candidate)

    def render(console, _result) -> None:
        console.print(f"run {candidate} vs {baseline} ({result['models'][1]} vs {result['models'][0]})", markup=False)
        for row in result["rows"]:
            console.print(f"  {row['backend']:14s} batch {row['batch']:4d}  p50 {row['baseline_p50_ms']:9.3f} -> "
                          f"{row['p50_ms']:9.3f} ms  x{row['p50_ratio']:.3f}", markup=False, highlight=False)

    if fail_above is not None and not result["rows"]:  # a regression check that compared nothing fails
        raise UserError(f"runs {baseline} and {candidate} share no (backend, device, dtype, batch): nothing to "
                        "check against --fail-above")
    show(result, fmt, render)
    if fail_above is not None:
        regressed = [row for row in result["rows"] if row["p50_ratio"] > fail_above]
        if regressed:  # exit 1, saying why in one line
            listed = ", ".join(f"{row['backend']} {row['device']} {row['dtype']} batch {row['batch']} "
                               f"x{row['p50_ratio']:.3f}" for row in regressed)
            stderr.print(f"deploylens: run {candidate} vs {baseline}: p50 above x{fail_above:g} of the baseline in "
                         f"{len(regressed)} of {len(result['rows'])} rows: {listed}", markup=False, highlight=False,
                         soft_wrap=True)
            raise typer.Exit(1)

"""``deploylens zoo``: the built-in architectures beside their published figures."""

from __future__ import annotations

from typing import Optional

import typer

from deploylens.cli.app import FORCE_HELP, OUTPUT_HELP, Format, app, emit_records, page, progress, show, table
from deploylens.errors import UserError
from deploylens.output import check_destination

zoo_app = typer.Typer(no_args_is_help=True, help="The built-in architectures, with published figures.")
app.add_typer(zoo_app, name="zoo")


def _percent(value: Optional[float]) -> str:
    return "" if value is None else f"{value * 100:+.2f}%"


@zoo_app.command("list")
def zoo_list(
    family: Optional[str] = typer.Option(None, help="Only this family (resnet, repvgg, mobilenet_v2, ...)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table, json or csv."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help=OUTPUT_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Every zoo model: params and MACs measured by the analyzer beside the published ones."""
    check_destination(output, force)

    from deploylens import zoo
    from deploylens.analysis.published import compare
    from deploylens.report.tables import human

    selected = [n for n in zoo.names() if family is None or zoo.variant(n).family == family]
    if not selected:
        families = sorted({zoo.variant(n).family for n in zoo.names()})
        raise UserError(f"no zoo family {family!r}; families: {', '.join(families)}")
    records = []
    with progress(counted=True, enabled=fmt is Format.table) as shown:
        task = shown.add_task("analysing the zoo", total=len(selected))
        for name in selected:
            records.append(compare(name))
            shown.advance(task)
    if emit_records(records, fmt, output):
        return
    # model names stay whole; a narrow terminal loses the published counts first (their deviations stay)
    shown = table(("name", "res", "form", "params", "published", "dev", "MACs", "published", "dev", "top-1"),
                  left=("name", "form"), names=(), optional=("published",))
    for r in records:
        shown.add_row(r["name"], str(r["resolution"]), r["form"], human(r["params_counted_as_source"]),
                      r["published_params"] or "", _percent(r["params_deviation"]), human(r["macs"]),
                      r["published_macs"] or "", _percent(r["macs_deviation"]),
                      "" if r["published_top1"] is None else f"{r['published_top1']:.2f}")
    with page(output) as console:
        console.print(shown)
        console.print("params are counted as each source counted them (see `deploylens zoo show NAME`)", markup=False)


@zoo_app.command("show")
def zoo_show(
    name: str = typer.Argument(..., help="A zoo name (deploylens zoo list)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json."),
) -> None:
    """Architecture summary of one zoo model, its figures and their sources."""
    from deploylens import zoo
    from deploylens.analysis.api import analyze as run_analysis
    from deploylens.analysis.published import compare
    from deploylens.report.tables import human

    record = compare(name)
    profile = run_analysis(name)
    stages = profile.by_module(1)

    def render(console, _data) -> None:
        for key, value in record.items():
            console.print(f"{key}: {value}", markup=False, highlight=False)
        console.print(f"\n{zoo.variant(name).build.__module__}: top-level modules", markup=False)
        for module, sums in stages.items():
            console.print(f"  {module:12s} layers {sums['layers']:4d}  params {human(sums['params']):>9s}  "
                          f"MACs {human(sums['macs']):>9s}", markup=False)

    show({**record, "modules": stages}, fmt, render)

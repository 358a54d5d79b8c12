"""``deploylens study``: a claim of the field guide as an experiment on this machine."""

from __future__ import annotations

from typing import Optional

import typer

from deploylens.cli.app import OUTPUT_HELP, STORE_HELP, Format, app, progress, show, table
from deploylens.cli.bench import HTML_HELP, check_destinations
from deploylens.errors import UserError
from deploylens.output import emit


@app.command("study")
def study_command(
    name: Optional[str] = typer.Argument(None, help="The study (deploylens study --list)."),
    list_studies: bool = typer.Option(False, "--list", help="List the studies and their claims."),
    backend: str = typer.Option("torch", help="torch, torch-compile or onnxruntime (the bench backends)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    dtype: str = typer.Option("fp32", help="fp32, fp16 or bf16 (torch backends)."),
    threads: Optional[int] = typer.Option(None, min=1, help="Threads (default: 1 on the CPU, as the papers' ARM "
                                                           "timings; torch's count on a GPU)."),
    quick: bool = typer.Option(False, "--quick", help="A 30 s budget instead of 90 s."),
    budget: Optional[float] = typer.Option(None, help="Seconds the study may take in all (overrides --quick)."),
    store: Optional[str] = typer.Option(None, help=STORE_HELP),
    no_store: bool = typer.Option(False, "--no-store", help="Do not save this run."),
    fmt: Format = typer.Option(Format.table, "--format", help="table or json."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help=OUTPUT_HELP),
    html: Optional[str] = typer.Option(None, "--html", help=HTML_HELP),
    force: bool = typer.Option(False, "--force", help="Overwrite the output file if it exists."),
) -> None:
    """Time a study's arms interleaved; print the paper's numbers beside the measured ones and a verdict."""
    from deploylens.bench.store import Store
    from deploylens.report.measured import study_page
    from deploylens.studies import STUDIES, run_study
    from deploylens.studies.runner import resolve_study

    check_destinations(output, html, force)
    if list_studies:
        if html:
            raise UserError("--html writes a study run's page: name a study instead of --list")
        rows = [{"study": s.name, "claim": s.claim, "source": s.source, "devices": list(s.devices)}
                for s in STUDIES.values()]
        show(rows, fmt, _render_list, output)
        return
    if name is None:
        raise UserError("name a study (deploylens study --list)")
    resolve_study(name, backend, device, dtype, budget)  # before the store is opened or anything runs
    results = None if no_store else Store(store)
    with progress(counted=True) as shown:
        task = shown.add_task(f"study {name}", total=None)
        result = run_study(name, backend, device, dtype, threads, quick, budget,
                           progress=lambda done, total: shown.update(task, completed=done, total=total))
    data = result.to_dict()
    if results is not None:
        run_id = results.begin(f"study {name}", {**data["settings"], "study": name}, data["environment"])
        for arm in data["arms"]:
            results.add(run_id, {"backend": backend, "device": device, "dtype": data["settings"]["dtype"],
                                 "batch": arm["input_shape"][0], **arm})
        results.finish(run_id, result.verdict)
    if html:
        emit(study_page(data), html)
    show(data, fmt, _render, output)


def _render_list(console, rows: list[dict]) -> None:
    shown = table(("study", "claim", "devices"), left=("study", "claim", "devices"))
    for row in rows:
        shown.add_row(row["study"], row["claim"], ", ".join(row["devices"]))
    console.print(shown)


def _render(console, data: dict) -> None:
    console.print(f"[bold]{data['study']}[/]: {data['claim']}", highlight=False)
    console.print(f"source: {data['source']}", markup=False, highlight=False)
    paper = data.get("paper") or {}
    columns = ("arm", "MFLOPs", "MB", "median ms", "rounds") + tuple(f"paper {title}" for title in paper)
    shown = table(columns, left=("arm",))
    for arm in data["arms"]:
        shown.add_row(arm["name"], f"{arm['flops'] / 1e6:.1f}", f"{arm['bytes'] / 1e6:.2f}",
                      "" if arm["median_ms"] is None else f"{arm['median_ms']:.3f}", str(arm["samples"]),
                      *("" if values.get(arm["name"]) is None else f"{values[arm['name']]:g}"
                        for values in paper.values()))
    console.print(shown)
    compared = table(("a / b", "time ratio", "95% interval", "paper", "verdict"), left=("a / b", "verdict"))
    for c in data["comparisons"]:
        interval = "" if c["ci_low"] is None else f"{c['ci_low']:.2f}-{c['ci_high']:.2f}"
        compared.add_row(f"{c['a']} / {c['b']}", "" if c["ratio"] is None else f"{c['ratio']:.2f}", interval,
                         "" if c["paper_ratio"] is None else f"{c['paper_ratio']:.2f}",
                         c["verdict"] + (f" ({c['reason']})" if c["reason"] else ""))
    console.print(compared)
    console.print(f"verdict: [bold]{data['verdict']}[/]", highlight=False)
    for note in data["notes"]:
        console.print(f"note: {note}", markup=False, highlight=False)

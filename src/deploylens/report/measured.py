"""The pages of measurements: ``bench --html`` (latency percentiles per backend and
batch) and ``study --html`` (the arms, and each claimed ratio with its confidence
interval beside the paper's), each embedding the command's ``--format json`` data."""

from __future__ import annotations

from deploylens.report import charts
from deploylens.report.charts import Interval
from deploylens.report.html import bullet_list, document, escape, figure, table
from deploylens.report.tables import human


def _ms(value: float) -> str:
    return f"{value:g}"


def bench_page(records: list[dict]) -> str:
    """The page of ``bench --format json`` records: p50 with its 95% interval, p90 and
    p99 per backend and batch, and the table."""
    first = records[0]
    rows = [Interval(f"{r['backend']} {r['device']} {r['dtype']} batch {r['batch']}", r["p50_ms"],
                     *r["median_ci95_ms"], [("p90", r["p90_ms"]), ("p99", r["p99_ms"])],
                     tip=f"{r['backend']} batch {r['batch']}\np50 {r['p50_ms']:.4g} ms (95% CI "
                         f"{r['median_ci95_ms'][0]:.4g}-{r['median_ci95_ms'][1]:.4g})\np90 {r['p90_ms']:.4g}, "
                         f"p95 {r['p95_ms']:.4g}, p99 {r['p99_ms']:.4g} ms\n{r['throughput']:.4g} samples/s, "
                         f"{r['iterations']} iterations, stop: {r['stop_reason']}") for r in records]
    chart = charts.intervals(rows, "latency (ms): p50 with its 95% interval; p90 and p99 ticks", _ms)
    table_rows = [(r["backend"], r["device"], r["dtype"], r["batch"], f"{r['p50_ms']:.4g}",
                   f"{r['median_ci95_ms'][0]:.4g}-{r['median_ci95_ms'][1]:.4g}", f"{r['p90_ms']:.4g}",
                   f"{r['p99_ms']:.4g}", f"{r['throughput']:.4g}", r["iterations"], r["stop_reason"],
                   "" if r["achieved_gflops"] is None else f"{r['achieved_gflops']:.3g}",
                   "yes" if r["noisy"] else "") for r in records]
    title = f"{first['model']}: measured latency"
    body = (f"<h1>{escape(title)}</h1><p class=\"muted\">threads {escape(first['threads'])}; batch 1 is single-stream "
            "latency, larger batches offline throughput; outputs were checked against torch eager before timing. "
            "The records are embedded as JSON (script#deploylens-data), as bench --format json prints them.</p>" +
            figure(chart) +
            table(("backend", "device", "dtype", "batch", "p50 ms", "95% CI", "p90 ms", "p99 ms", "samples/s",
                   "iterations", "stop", "GFLOP/s", "noisy"), table_rows, numeric=(3, 4, 5, 6, 7, 8, 9, 11)))
    return document(f"deploylens bench: {first['model']}", body, records)


def study_page(data: dict) -> str:
    """The page of a ``study --format json`` result: the arms, each comparison's time
    ratio with its 95% interval beside the paper's ratio, and the verdict."""
    rows = [Interval(f"{c['a']} / {c['b']}", c["ratio"], c["ci_low"], c["ci_high"],
                     [("paper", c["paper_ratio"])] if c["paper_ratio"] is not None else [],
                     tip=f"{c['a']} / {c['b']}: ratio {_optional(c['ratio'])} (95% CI {_optional(c['ci_low'])}-"
                         f"{_optional(c['ci_high'])}), paper {_optional(c['paper_ratio'])}\n{_verdict(c)}")
            for c in data["comparisons"]]
    chart = charts.intervals(rows, "time ratio a / b with its 95% interval; red: the paper's ratio; dashed: 1",
                             lambda v: f"{v:.3g}", log=True, reference=1.0) if _plottable(rows) else ""
    paper = data.get("paper") or {}
    arms = [(a["name"], human(a["flops"]), human(a["bytes"], "B"), "-" if a["median_ms"] is None else
             f"{a['median_ms']:.4g}", a["samples"],
             *("" if values.get(a["name"]) is None else f"{values[a['name']]:g}" for values in paper.values()))
            for a in data["arms"]]
    columns = len(paper) + 5
    comparisons = [(f"{c['a']} / {c['b']}", _optional(c["ratio"]),
                    f"{_optional(c['ci_low'])}-{_optional(c['ci_high'])}", _optional(c["paper_ratio"]), _verdict(c))
                   for c in data["comparisons"]]
    settings = ", ".join(f"{key} {value}" for key, value in data["settings"].items())
    body = (f"<h1>study {escape(data['study'])}: {escape(data['verdict'])}</h1>"
            f"<p>{escape(data['claim'])}</p><p class=\"muted\">source: {escape(data['source'])}; settings: "
            f"{escape(settings)}</p>" + (figure(chart) if chart else "") +
            table(("a / b", "time ratio", "95% interval", "paper", "verdict"), comparisons, numeric=(1, 2, 3)) +
            "<h2>Arms</h2>" +
            table(("arm", "FLOPs", "bytes", "median ms", "samples", *(f"paper {t}" for t in paper)), arms,
                  numeric=tuple(range(1, columns))) + bullet_list(data.get("notes", [])))
    return document(f"deploylens study {data['study']}", body, data)


def _verdict(comparison: dict) -> str:
    return comparison["verdict"] + (f" ({comparison['reason']})" if comparison.get("reason") else "")


def _optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _plottable(rows: list[Interval]) -> bool:
    """A ratio chart needs a measured ratio (a study too short to time has none)."""
    return any(r.value is not None and r.value > 0 for r in rows)

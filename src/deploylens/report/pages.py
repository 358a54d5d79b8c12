"""The report page of one or several models on a target (``deploylens report``), drawn
from :func:`deploylens.report.collect.report_data` alone: per model its summary, its
kernels on the target's roofline, where the predicted time goes (per module, per kind),
its lint findings worst first; with several models, their comparison."""

from __future__ import annotations

from collections import defaultdict

from deploylens.report import charts
from deploylens.report.charts import Bar, Mark
from deploylens.report.html import (bullet_list, cards, document, escape, figure, milliseconds, quantity,
                                    table)
from deploylens.report.tables import human

# a kernel's colour group: a conv by its class (3x3, kxk, 1x1, depthwise, grouped), else its kind
GROUP_LABELS = {"conv_dense": "conv", "conv_3x3": "conv 3x3", "conv_kxk": "conv kxk", "conv_pointwise": "conv 1x1",
                "conv_depthwise": "depthwise conv", "conv_grouped": "grouped conv", "elementwise": "element-wise",
                "data_movement": "data movement"}
# impact units, most telling first: a predicted time, then memory traffic, then work
_UNIT_ORDER = {"ms": 0, "bytes": 1, "MACs": 2}
MAX_BARS = 14
MAX_FINDINGS = 12  # shown at once; the rest behind a disclosure


def kernel_group(kernel: dict) -> str:
    return kernel["kernel_class"] if kernel["kernel_class"].startswith("conv_") else kernel["kind"]


def group_label(group: str) -> str:
    return GROUP_LABELS.get(group, group)


def si(value: float) -> str:
    """A rate or count with a decimal prefix and 3 significant digits: '65.1 T', '320 G', '10 '."""
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:.3g} "


def _intensity(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"


def fused_members(entry: dict) -> dict[str, list[dict]]:
    """The predicted kernels of each fused kernel of the analysis (a runtime that fuses less
    runs several kernels for one: PyTorch eager runs a conv, its BatchNorm and its
    activation apart); kernels no layer anchors (ones the runtime adds) belong to none."""
    fused_of = {layer["name"]: layer["kernel"] for layer in entry["analyze"]["layers"]}
    members: dict[str, list[dict]] = {k["name"]: [] for k in entry["analyze"]["kernels"]}
    for k in entry["predict"]["kernels"]:
        fused = fused_of.get(k["name"].split(":")[0])  # a decomposed op's kernels are named layer:op
        if fused in members:
            members[fused].append(k)
    return members


def kernel_marks(entry: dict) -> list[Mark]:
    """One roofline mark per fused kernel of the analysis: (FLOP/byte, attained FLOP/s) from
    its FLOPs and bytes and the predicted time of the kernels the target runs for it, sized
    by that time, its layers and figures in its tooltip."""
    members = fused_members(entry)
    marks = []
    for fused in entry["analyze"]["kernels"]:
        parts = members[fused["name"]]
        if not parts:  # views and other layers no runtime runs a kernel for
            continue
        time_ms = sum(k["time_ms"] for k in parts)
        head = next((k for k in parts if k["name"] == fused["name"]), parts[0])
        spent = {b: sum(k[f"{b}_ms"] for k in parts) for b in ("compute", "memory", "overhead")}
        bound = max(spent, key=spent.get)
        nbytes = fused["bytes_read"] + fused["bytes_written"]
        intensity = fused["flops"] / nbytes if nbytes else 0.0
        attained = fused["flops"] / (time_ms / 1e3) if time_ms and fused["flops"] else 0.0
        tip = (f"{fused['name']}\nlayers: {', '.join(fused['layers'])}\nkind: {group_label(kernel_group(head))}\n"
               f"FLOPs {human(fused['flops'])}, bytes {human(nbytes, 'B')}, intensity {intensity:.3g} FLOP/B\n"
               f"predicted {time_ms:.4g} ms ({len(parts)} kernel{'s' if len(parts) > 1 else ''} on the target), "
               f"{bound}-bound, attained {si(attained)}FLOP/s"
               + ("" if fused["flops"] and nbytes else "\n(no FLOPs or no bytes: drawn on the axis)"))
        marks.append(Mark(intensity, attained, time_ms, kernel_group(head), tip))
    return marks


def _roofline_section(entry: dict, hardware: dict | None) -> str:
    prediction = entry["predict"]
    precision = prediction["dtype"]
    peaks = {name: figure["value"] for name, figure in (hardware or {}).get("peak_flops", {}).items() if figure}
    bandwidth = ((hardware or {}).get("bandwidth_bytes_per_s") or {}).get("value")
    if precision not in peaks or not bandwidth:
        return (f"<p class=\"muted\">No roofline: {escape(prediction['target'])} has no catalogued {escape(precision)} "
                "peak and memory bandwidth.</p>")
    marks = kernel_marks(entry)
    groups = sorted({m.group for m in marks})
    svg = charts.roofline(marks, peaks, bandwidth, precision, si, _intensity)
    unanchored = sum(k["time_ms"] for k in prediction["kernels"]) - sum(m.size for m in marks)
    caption = (f"{len(marks)} fused kernels of {entry['analyze']['model']} as predicted on {hardware['name']} "
               f"({precision}, {len(prediction['kernels'])} kernels as its runtime runs them); a point's area is "
               f"its predicted time; hover a point for its layers and figures"
               + (f"; {unanchored:.3g} ms in kernels the runtime adds are not drawn" if unanchored else ""))
    return charts.legend([(g, group_label(g)) for g in groups]) + figure(svg, caption)


def _module_depth(kernels: list[dict], module_of: dict[str, str]) -> int:
    """The shallowest module depth that splits the kernels into at least 4 groups (at most 4)."""
    for depth in (1, 2, 3):
        if len({".".join(module_of[k["name"]].split(".")[:depth]) for k in kernels}) >= 4:
            return depth
    return 4


def _sorted_bars(totals: dict[str, dict], coloured: bool) -> list[Bar]:
    """Bars by time, largest first; past ``MAX_BARS`` the rest summed into one."""
    ranked = sorted(totals.items(), key=lambda item: -item[1]["ms"])
    shown, rest = ranked[:MAX_BARS], ranked[MAX_BARS:]
    if rest:
        shown.append((f"{len(rest)} others", {key: sum(v[key] for _, v in rest) for key in ("ms", "flops", "bytes")}))
    whole = sum(v["ms"] for v in totals.values()) or 1.0
    return [Bar(group_label(name) if coloured else name, v["ms"], name if coloured else "",
                f"{group_label(name) if coloured else name}\npredicted {v['ms']:.4g} ms ({v['ms'] / whole:.1%})\n"
                f"FLOPs {human(v['flops'])}, bytes {human(v['bytes'], 'B')}")
            for name, v in shown]


def time_bars(entry: dict) -> tuple[list[Bar], list[Bar], int]:
    """Predicted time per module (at the depth that splits it) and per kernel group."""
    module_of = {layer["name"]: layer.get("module") or layer["name"] for layer in entry["analyze"]["layers"]}
    layers_of = {k["name"]: k["layers"] for k in entry["analyze"]["kernels"]}
    kernels = entry["predict"]["kernels"]
    anchored = {k["name"]: module_of.get((layers_of.get(k["name"]) or [k["name"]])[0], k["name"]) for k in kernels}
    depth = _module_depth(kernels, anchored)
    by_module: dict[str, dict] = defaultdict(lambda: {"ms": 0.0, "flops": 0, "bytes": 0})
    by_group: dict[str, dict] = defaultdict(lambda: {"ms": 0.0, "flops": 0, "bytes": 0})
    for k in kernels:
        for bucket in (by_module[".".join(anchored[k["name"]].split(".")[:depth])], by_group[kernel_group(k)]):
            bucket["ms"] += k["time_ms"]
            bucket["flops"] += k["flops"]
            bucket["bytes"] += k["bytes"]
    return _sorted_bars(by_module, False), _sorted_bars(by_group, True), depth


def _time_section(entry: dict) -> str:
    modules, groups, depth = time_bars(entry)
    return ('<div class="pair">' +
            figure(charts.bars(modules, milliseconds, f"predicted time per module (depth {depth})")) +
            figure(charts.bars(groups, milliseconds, "predicted time per kind")) + "</div>")


def findings_by_impact(findings: list[dict]) -> list[dict]:
    """Worst first: predicted milliseconds, then bytes, then MACs, each largest first; no impact last."""
    def key(f: dict):
        impact = f.get("impact") or {}
        if impact.get("value") is None:
            return (len(_UNIT_ORDER), 0.0)
        return (_UNIT_ORDER.get(impact["unit"], len(_UNIT_ORDER)), -impact["value"])

    return sorted(findings, key=key)


def impact_text(impact: dict | None, predicted_ms: float | None) -> str:
    """A finding's impact: its predicted saving (with its share of the predicted latency),
    or the memory traffic or work it costs."""
    if not impact or impact.get("value") is None:
        return ""
    value, unit = impact["value"], impact["unit"]
    if unit == "ms":
        share = f" ({value / predicted_ms:.1%} of {predicted_ms:.3g} ms)" if predicted_ms else ""
        return f"saves {value:.3g} ms{share}"
    if unit == "bytes":
        return f"{human(value, 'B')} more traffic"
    return f"{human(value)} {unit}"


def _lint_section(entry: dict) -> str:
    report = entry["lint"]
    summary = report["summary"]
    predicted = summary.get("predicted_ms")
    rows = []
    for f in findings_by_impact(report["findings"]):
        rule = entry["rules"].get(f["rule"], {})
        note = "" if f["source"] == rule.get("source") else f" (source: {f['source']})"
        impact = impact_text(f.get("impact"), predicted)
        rows.append((f["rule"], f["severity"], f["layer"], impact, f["message"] + note))
    parts = [f"<h3>Lint findings for {escape(report['target'])}: {len(report['findings'])}, worst first</h3>"]
    if predicted is not None:
        parts.append(f"<p>Predicted {escape(milliseconds(predicted))}; "
                     f"{escape(milliseconds(summary.get('predicted_ms_if_fixed')))} if the findings with a "
                     "predicted saving were fixed.</p>")
    headers = ("rule", "severity", "layer", "impact (predicted saving)", "finding")
    if rows:
        parts.append(table(headers, rows[:MAX_FINDINGS], numeric=(3,), names=(2,)))
    if len(rows) > MAX_FINDINGS:
        parts.append(f"<details><summary>{len(rows) - MAX_FINDINGS} more findings</summary>"
                     + table(headers, rows[MAX_FINDINGS:], numeric=(3,), names=(2,)) + "</details>")
    rules = [f"{rule_id}: {r['rationale']} Source: {r['source']}" for rule_id, r in entry["rules"].items()]
    if rules:
        parts.append("<p>Why each rule matters:</p>" + bullet_list(rules))
    judged = [f"{rule_id} not judged: {why}" for rule_id, why in summary.get("not_judged", {}).items()]
    parts.append(bullet_list(summary.get("target_notes", []) + judged))
    return "".join(parts)


def _source_text(prediction: dict) -> str:
    """Where the predicted figure comes from: the prediction's source where it has one, its notes."""
    source = prediction.get("source")
    described = source.get("describe") if isinstance(source, dict) else source
    return "; ".join(str(part) for part in [described, *prediction.get("notes", [])] if part)


def _measured(entry: dict) -> tuple[str, str] | None:
    if not entry.get("bench"):
        return None
    record = entry["bench"][0]
    return (milliseconds(record["p50_ms"]),
            f"p50 on this machine ({record['backend']}, {record['device']}, {record['dtype']}, "
            f"{record['threads']} threads); 95% CI {record['median_ci95_ms'][0]:.3g}-"
            f"{record['median_ci95_ms'][1]:.3g} ms")


def summary_cards(entry: dict) -> str:
    totals, prediction = entry["analyze"]["totals"], entry["predict"]
    predicted = prediction["totals"]
    items = [("params", quantity(totals["params"]), ""),
             ("MACs", quantity(totals["macs"]), f"FLOPs {quantity(totals['flops'])}"),
             ("bytes eager / fused", f"{quantity(totals['bytes_eager'], 'B')} / {quantity(totals['bytes_fused'], 'B')}",
              f"{entry['analyze']['dtype']}; {totals['layers']} layers, {totals['kernels']} kernels"),
             ("peak activation memory", quantity(totals["peak_activation_bytes"], "B"), ""),
             (f"predicted latency on {prediction['target']}", milliseconds(predicted["latency_ms"]),
              f"{prediction['dtype']}, batch {prediction['batch']}, {prediction['backend']}"),
             ("predicted throughput", "-" if predicted["throughput"] is None else f"{predicted['throughput']:.4g}/s",
              f"{predicted['kernels']} kernels: {predicted['bound_counts']['compute']} compute-, "
              f"{predicted['bound_counts']['memory']} memory-bound")]
    measured = _measured(entry)
    if measured:
        items.append(("measured latency", *measured))
    if entry.get("accuracy"):
        items.append(("top-1 (published)", f"{entry['accuracy']['top1']:.2f}%", entry["accuracy"]["source"]))
    incomplete = "" if totals["complete"] else "<p><strong>Incomplete:</strong> ops without a cost formula: " + \
        escape(", ".join(totals["unknown_ops"])) + "</p>"
    return (cards(items) + incomplete +
            f"<p class=\"muted\">Prediction: {escape(_source_text(prediction))}</p>")


def _model_section(entry: dict, hardware: dict | None, anchor: str) -> str:
    analysis = entry["analyze"]
    shapes = ", ".join("x".join(str(d) for d in shape) for shape in analysis["input_shapes"])
    return (f"<section id=\"{anchor}\"><h2>{escape(analysis['model'])}</h2>"
            f"<p class=\"muted\">{escape(analysis['source'])} model, input {escape(shapes)}</p>" +
            summary_cards(entry) + "<h3>Kernels on the roofline</h3>" + _roofline_section(entry, hardware) +
            "<h3>Where the predicted time goes</h3>" + _time_section(entry) + _lint_section(entry) + "</section>")


def _comparison(models: list[dict]) -> str:
    """Latency against published top-1 with the Pareto front, and the models side by side."""
    placed = [m for m in models if m.get("accuracy")]
    parts = ["<h2>Comparison</h2>"]
    if placed:
        marks = [Mark(m["predict"]["totals"]["latency_ms"], m["accuracy"]["top1"], label=m["analyze"]["model"],
                      tip=f"{m['analyze']['model']}\npredicted {m['predict']['totals']['latency_ms']:.4g} ms\n"
                          f"top-1 {m['accuracy']['top1']:.2f}% ({m['accuracy']['source']})") for m in placed]
        svg = charts.scatter(marks, f"predicted latency on {models[0]['predict']['target']} (ms, log)",
                             "published top-1 (%)", lambda v: f"{v:g}", lambda v: f"{v:g}")
        missing = [m["analyze"]["model"] for m in models if not m.get("accuracy")]
        caption = "dashed: the Pareto front (no other model is both faster and more accurate)" + \
            (f"; not on the chart (no published top-1): {', '.join(missing)}" if missing else "")
        parts.append(figure(svg, caption))
    rows = [("params", *(quantity(m["analyze"]["totals"]["params"]) for m in models)),
            ("MACs", *(quantity(m["analyze"]["totals"]["macs"]) for m in models)),
            ("bytes fused", *(quantity(m["analyze"]["totals"]["bytes_fused"], "B") for m in models)),
            ("peak activations", *(quantity(m["analyze"]["totals"]["peak_activation_bytes"], "B") for m in models)),
            ("predicted latency", *(milliseconds(m["predict"]["totals"]["latency_ms"]) for m in models)),
            *([("measured p50", *((_measured(m) or ("-",))[0] for m in models))] if any(m.get("bench") for m in models)
              else []),
            ("top-1", *(f"{m['accuracy']['top1']:.2f}%" if m.get("accuracy") else "-" for m in models)),
            ("lint findings", *(str(len(m["lint"]["findings"])) for m in models))]
    columns = len(models) + 1
    parts.append(table(("", *(m["analyze"]["model"] for m in models)), rows, numeric=tuple(range(1, columns))))
    return "".join(parts)


def report_page(data: dict) -> str:
    """The page of ``data`` (:func:`deploylens.report.collect.report_data`), ``data`` embedded."""
    models, target = data["models"], data["target"]
    names = [m["analyze"]["model"] for m in models]
    title = f"{', '.join(names)} on {target['name']}"
    anchors = [f"model-{index}" for index in range(len(models))]
    nav = ("<nav>" + "".join(f"<a href=\"#{a}\">{escape(n)}</a>" for a, n in zip(anchors, names)) + "</nav>"
           if len(models) > 1 else "")
    body = (f"<h1>{escape(title)}</h1><p class=\"muted\">deploylens report: what each model costs, where its time "
            "goes on the target, and what the design rules say. The figures are embedded as JSON "
            "(script#deploylens-data).</p>" + nav +
            (_comparison(models) if len(models) > 1 else "") +
            "".join(_model_section(m, target["hardware"], a) for m, a in zip(models, anchors)))
    return document(f"deploylens: {title}", body, data)

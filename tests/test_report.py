"""`deploylens report`, `bench --html` and `study --html`: the data a page embeds is the
commands' JSON, every model-supplied name is escaped, bad input is one line with nothing
written; and the charts' parts (scales, Pareto front, finding order) are right."""

from __future__ import annotations

import copy
import json
import re

import pytest

from cli_runner import run
from deploylens.report import charts
from deploylens.report.charts import Mark, Scale
from deploylens.report.html import DATA_ID, document, escape, script_json
from deploylens.report.measured import study_page
from deploylens.report.pages import findings_by_impact, impact_text, kernel_marks, report_page, si, time_bars

EVIL = "<img src=x onerror=alert(1)>"
TINY = f'''
import torch
import torch.nn as nn

EVIL = {EVIL!r}


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.add_module(EVIL, nn.Conv2d(16, 24, 1))
        self.dw = nn.Conv2d(24, 24, 3, padding=1, groups=24)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(24, 10)

    def forward(self, x):
        x = getattr(self, EVIL)(self.stem(x))
        return self.head(self.pool(torch.relu(self.dw(x))).flatten(1))


def build():
    return Tiny()
'''
SHAPE = "1,3,32,32"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    """A model reference (file.py:build) with a layer named like an HTML injection."""
    path = tmp_path_factory.mktemp("model") / "tiny.py"
    path.write_text(TINY)
    return f"{path}:build"


def embedded(page: str):
    """The data a page embeds, read back as another tool would."""
    found = re.search(f'<script type="application/json" id="{DATA_ID}">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


def command_json(monkeypatch, capsys, *args):
    code, out, err = run(monkeypatch, capsys, *args, "--format", "json")
    assert code in (0, 1, None), err  # lint exits 1 with findings
    return json.loads(out)


@pytest.fixture(scope="module")
def tiny_report(tiny, tmp_path_factory) -> str:
    """The HTML report of the tiny model on nvidia_t4 (in-process, as a user runs it)."""
    from deploylens.output import stdout_reserved
    from deploylens.report.collect import report_data

    with stdout_reserved():
        return report_page(report_data([tiny], "nvidia_t4", input_shape=SHAPE))


def test_report_embeds_exactly_what_analyze_predict_and_lint_print(monkeypatch, capsys, tiny, tmp_path):
    page = tmp_path / "r.html"
    code, out, err = run(monkeypatch, capsys, "report", tiny, "--target", "nvidia_t4", "-i", SHAPE, "-o", str(page))
    assert code in (0, None), err
    data = embedded(page.read_text())
    (model,) = data["models"]
    for command in ("analyze", "predict", "lint"):
        target = () if command == "analyze" else ("--target", "nvidia_t4")
        assert model[command] == command_json(monkeypatch, capsys, command, tiny, "-i", SHAPE, *target), command
    code, out, err = run(monkeypatch, capsys, "report", tiny, "--target", "nvidia_t4", "-i", SHAPE, "--format",
                         "json", "-o", "-")
    assert json.loads(out) == data
    assert data["target"]["hardware"] == command_json(monkeypatch, capsys, "hw", "show", "nvidia_t4")


def test_several_models_are_compared_on_latency_and_accuracy(tiny_report):
    entry = embedded(tiny_report)["models"][0]
    models = []
    for name, top1 in (("fast", 70.0), ("slow_better", 75.0), ("slow_worse", 69.0), ("unrated", None)):
        model = copy.deepcopy(entry)
        model["analyze"]["model"] = name
        model["predict"]["totals"]["latency_ms"] *= {"fast": 1, "slow_better": 2, "slow_worse": 3, "unrated": 1}[name]
        model["accuracy"] = None if top1 is None else {"top1": top1, "source": "paper"}
        models.append(model)
    page = report_page({"target": embedded(tiny_report)["target"], "models": models})
    scatter = re.search(r'<svg class="scatter".*?</svg>', page, re.S).group(0)
    assert scatter.count('class="mark"') == 3 and "unrated" not in scatter
    assert "no published top-1): unrated" in page
    assert len(re.search(r'points="([^"]*)"', scatter).group(1).split()) == 3  # fast, then up to slow_better
    assert page.count('<section id="model-') == 4


def test_a_target_without_catalogued_peaks_gets_no_roofline(tiny_report):
    data = embedded(tiny_report)
    page = report_page({"target": {"name": "nowhere", "hardware": None}, "models": data["models"]})
    assert "No roofline" in page and 'class="roofline"' not in page and 'class="bars"' in page


def test_measure_adds_the_measured_latency(tiny):
    from deploylens.bench.runner import StopRule
    from deploylens.output import stdout_reserved
    from deploylens.report.collect import report_data

    with stdout_reserved():
        data = report_data([tiny], "nvidia_t4", input_shape=SHAPE, measure=StopRule(min_time=0, max_time=0.05))
    (record,) = data["models"][0]["bench"]
    assert record["backend"] == "torch" and record["p50_ms"] > 0 and "samples_ms" not in record
    assert "measured latency" in report_page(data)


def test_deploy_reports_the_zoo_models_deploy_form(monkeypatch, capsys):
    data = command_json(monkeypatch, capsys, "report", "repvgg_a0", "--deploy", "-i", SHAPE, "--target",
                        "nvidia_t4", "-o", "-")
    (model,) = data["models"]
    assert {model[c]["model"] for c in ("analyze", "predict", "lint")} == {"repvgg_a0:deploy"}
    trained = command_json(monkeypatch, capsys, "analyze", "repvgg_a0", "-i", SHAPE)
    assert model["analyze"]["totals"]["params"] < trained["totals"]["params"]
    assert model["accuracy"]["top1"] > 70


def test_a_layer_named_like_html_is_text_everywhere(tiny_report):
    assert EVIL not in tiny_report.split(f'id="{DATA_ID}"')[0]  # nowhere as markup before the data
    assert escape(EVIL) in tiny_report
    assert "<img" not in tiny_report
    assert embedded(tiny_report)["models"][0]["analyze"]["kernels"][1]["name"] == EVIL


def test_script_json_cannot_close_its_script_element():
    text = script_json({"name": "</script><script>alert(1)</script>", "amp": "&"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"name": "</script><script>alert(1)</script>", "amp": "&"}


def test_the_page_is_self_contained_and_allows_only_its_own_script():
    page = document("t", "<p>x</p>", {"a": 1})
    policy = re.search(r'Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in policy and "unsafe-inline" not in policy and "script-src 'sha256-" in policy
    assert not re.search(r"(src|href)=\"(https?:)?//", page)


def test_one_roofline_mark_per_fused_kernel_and_the_time_bars_add_up(tiny_report):
    data = embedded(tiny_report)
    entry = data["models"][0]
    kernels = entry["predict"]["kernels"]
    fused = entry["analyze"]["kernels"]
    marks = kernel_marks(entry)
    # the eager runtime runs more kernels than the analysis fuses; each mark carries its members' time
    assert len(marks) == len(fused) > 3 and len(kernels) > len(fused)
    assert sum(m.size for m in marks) == pytest.approx(sum(k["time_ms"] for k in kernels))
    roofline = re.search(r'<svg class="roofline".*?</svg>', tiny_report, re.S).group(0)
    assert roofline.count('class="mark"') == len(fused)
    modules, groups, _ = time_bars(entry)
    total = sum(k["time_ms"] for k in kernels)
    assert sum(b.value for b in modules) == pytest.approx(total) == sum(b.value for b in groups)
    assert [b.value for b in modules] == sorted((b.value for b in modules), reverse=True)


def test_pareto_front_keeps_only_the_undominated():
    marks = [Mark(1.0, 70.0), Mark(2.0, 69.0), Mark(3.0, 75.0), Mark(0.5, 60.0), Mark(4.0, 74.0)]
    assert [(m.x, m.y) for m in charts.pareto_front(marks)] == [(0.5, 60.0), (1.0, 70.0), (3.0, 75.0)]


def test_scales_map_the_ends_and_tick_in_decades_or_steps():
    log = Scale(0.1, 1000.0, 0.0, 400.0, log=True)
    assert (log(0.1), log(1000.0), log(1.0)) == (0.0, 400.0, 100.0)
    assert log.ticks() == [0.1, 1.0, 10.0, 100.0, 1000.0]
    assert Scale(0.1, 1.0, 0, 1, log=True).ticks() == [0.1, 0.2, 0.5, 1.0]
    assert Scale(0.0, 10.0, 0, 1, log=False).ticks() == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert si(65.1e12) == "65.1 T" and si(320e9) == "320 G"


def test_findings_run_worst_first_time_then_bytes():
    findings = [{"impact": {"value": 10.0, "unit": "bytes"}}, {"impact": None},
                {"impact": {"value": 0.01, "unit": "ms"}}, {"impact": {"value": 500.0, "unit": "bytes"}},
                {"impact": {"value": 0.2, "unit": "ms"}}]
    ordered = [(f["impact"] or {}).get("value") for f in findings_by_impact(findings)]
    assert ordered == [0.2, 0.01, 500.0, 10.0, None]
    assert impact_text({"value": 0.1, "unit": "ms"}, 1.0) == "saves 0.1 ms (10.0% of 1 ms)"


def test_study_page_draws_each_ratio_with_its_interval_and_embeds_the_result():
    data = {"study": "g1", "claim": "c", "source": "s", "settings": {"device": "cpu"}, "environment": {},
            "arms": [{"name": EVIL, "flops": 1e6, "bytes": 2e6, "median_ms": 1.5, "samples": 9,
                      "input_shape": [1, 3, 8, 8]}],
            "comparisons": [{"a": EVIL, "b": "b", "ratio": 1.4, "ci_low": 1.2, "ci_high": 1.6, "paper_ratio": 1.3,
                             "verdict": "borne out", "reason": ""}],
            "verdict": "borne out", "notes": [], "paper": {}}
    page = study_page(data)
    assert embedded(page) == data and "<img" not in page
    assert page.count('class="interval"') == 1 and page.count('class="marker"') == 1


def test_bench_html_and_deploy_write_the_bench_json_as_a_page(monkeypatch, capsys, tmp_path):
    page, records = tmp_path / "b.html", tmp_path / "b.json"
    code, out, err = run(monkeypatch, capsys, "bench", "repvgg_a0", "--deploy", "-i", SHAPE, "--min-time", "0",
                         "--max-time", "0.05", "--no-store", "--format", "json", "-o", str(records),
                         "--html", str(page))
    assert code in (0, None), err
    data = embedded(page.read_text())
    assert data == json.loads(records.read_text()) and data[0]["model"] == "repvgg_a0:deploy"
    assert page.read_text().count('class="interval"') == 1


def test_study_html_writes_the_study_json_as_a_page(monkeypatch, capsys, tmp_path):
    page, result = tmp_path / "s.html", tmp_path / "s.json"
    code, out, err = run(monkeypatch, capsys, "study", "mac", "--budget", "0.5", "--threads", "1", "--no-store",
                         "--format", "json", "-o", str(result), "--html", str(page))
    assert code in (0, None), err
    data = embedded(page.read_text())
    assert data == json.loads(result.read_text()) and data["study"] == "mac"
    assert page.read_text().count('class="interval"') == len(data["comparisons"]) == 2


@pytest.mark.parametrize("args,message", [
    (("report", "no_such_model"), "no_such_model"),
    (("report", "resnet18", "--target", "nowhere"), "unknown target 'nowhere'"),
    (("report", "TINY", "--deploy"), "--deploy takes a zoo model's deploy form"),
    (("report", "resnet18", "--format", "xml"), "--format xml"),
    (("report", "resnet18", "-o", "EXISTING"), "exists: use --force"),
    (("bench", "TINY", "--deploy", "--no-store", "--html", "PAGE"), "--deploy takes a zoo model's deploy form"),
    (("bench", "resnet18", "-o", "PAGE", "--html", "PAGE"), "name the same file"),
    (("study", "--list", "--html", "PAGE"), "name a study instead of --list"),
])
def test_bad_input_is_one_line_and_writes_no_page(monkeypatch, capsys, tmp_path, tiny, args, message):
    existing = tmp_path / "existing.html"
    existing.write_text("mine")
    replaced = {"TINY": tiny, "EXISTING": str(existing), "PAGE": str(tmp_path / "page.html")}
    arguments = [replaced.get(a, a) for a in args]
    if "-o" not in arguments:
        arguments += ["-o", str(tmp_path / "out.html")]
    code, out, err = run(monkeypatch, capsys, *arguments)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.html"] and existing.read_text() == "mine"

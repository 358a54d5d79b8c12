"""The command line: outputs scripts rely on, and one clear line for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from cli_runner import run

JSON_TOTALS = {"flops", "macs", "params", "buffers", "bytes_eager", "bytes_fused", "unknown_ops", "complete"}
JSON_LAYER = {"name", "kind", "op", "inputs", "outputs", "flops", "macs", "params", "bytes_read", "bytes_written",
              "intensity", "kernel"}




def test_json_keys_are_the_documented_contract(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "analyze", "resnet18", "-i", "1,3,64,64", "--format", "json")
    assert code in (0, None)
    data = json.loads(out)
    assert {"model", "input_shapes", "dtype", "totals", "layers", "kernels"} <= set(data)
    assert JSON_TOTALS <= set(data["totals"])
    assert all(JSON_LAYER <= set(layer) for layer in data["layers"])
    assert data["input_shapes"] == [[1, 3, 64, 64]]
    assert data["totals"]["params"] == 11_689_512


def test_csv_and_table_views(monkeypatch, capsys, tmp_path):
    target = tmp_path / "kinds.csv"
    code, out, err = run(monkeypatch, capsys, "analyze", "resnet18", "-i", "1,3,32,32", "--by", "kind",
                         "--format", "csv", "-o", str(target))
    lines = target.read_text().splitlines()
    assert lines[0].startswith("kind,layers,flops,macs")
    assert any(line.startswith("conv,20,") for line in lines)
    code, out, err = run(monkeypatch, capsys, "analyze", "resnet18", "-i", "1,3,32,32", "--view", "fused",
                         "--sort", "macs", "--top", "3")
    assert "kernels 23" in out and "stem.0.conv" in out


def test_unknown_op_warning_line(monkeypatch, capsys, tmp_path):
    source = tmp_path / "cum.py"
    source.write_text("import torch\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
                      "        return torch.cumsum(x, 1)\ndef build():\n    return M()\n")
    code, out, err = run(monkeypatch, capsys, "analyze", f"{source}:build", "-i", "2,8", "--format", "json")
    assert err.strip() == "warning: no cost formula for aten.cumsum x1; totals are incomplete"
    assert json.loads(out)["totals"]["complete"] is False


def _bad_inputs(tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a protobuf\n" * 20)
    good = tmp_path / "good.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 4, 3), (torch.randn(1, 3, 8, 8),), str(good), dynamo=False)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[:200])
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_package_xyz\n")
    raising = tmp_path / "raising.py"
    raising.write_text("def build():\n    raise ValueError('boom')\n")
    return {
        "missing file": ["analyze", str(tmp_path / "missing.onnx")],
        "not onnx": ["analyze", str(text)],
        "truncated onnx": ["analyze", str(truncated)],
        "import fails": ["analyze", f"{broken}:build"],
        "factory raises": ["analyze", f"{raising}:build"],
        "module not found": ["analyze", "no_such_package_xyz.models:build"],
        "shape does not fit module": ["analyze", "resnet18", "-i", "1,5,32,32"],
        "shape does not fit onnx": ["analyze", str(good), "-i", "1,3,8"],
        "bad shape text": ["analyze", "resnet18", "-i", "1,three,32,32"],
        "unknown model": ["analyze", "not_a_model"],
        "unknown dtype": ["analyze", "resnet18", "--dtype", "float13"],
    }


def test_bad_input_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    for case, args in _bad_inputs(tmp_path).items():
        code, out, err = run(monkeypatch, capsys, *args)
        assert code == 2, case
        assert len(err.strip().splitlines()) == 1 and err.startswith("deploylens: error: "), (case, err)
        assert "Traceback" not in err


def test_console_script_reports_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "deploylens.cli", "analyze", str(tmp_path / "nope.onnx")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"deploylens: error: no such file: {tmp_path / 'nope.onnx'}"


def test_output_file_is_not_left_half_written(monkeypatch, capsys, tmp_path):
    target = tmp_path / "out.json"
    code, out, err = run(monkeypatch, capsys, "analyze", "resnet18", "-i", "1,5,32,32", "--format", "json",
                         "-o", str(target))
    assert code == 2 and not target.exists() and list(tmp_path.iterdir()) == []


def test_zoo_list_json_records(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "zoo", "list", "--family", "repvgg", "--format", "json")
    records = json.loads(out)
    assert [r["name"] for r in records][:2] == ["repvgg_a0", "repvgg_a1"]
    for r in records:
        assert {"name", "params", "macs", "published_params", "published_macs", "published_top1", "resolution",
                "source"} <= set(r)
        assert r["params_ok"] and r["macs_ok"]
    code, out, err = run(monkeypatch, capsys, "zoo", "show", "resnet18")
    assert "published_params: 11689512" in out and "stages" in out


def test_hw_calibrate_combine_takes_the_median_with_the_saved_profile(monkeypatch, capsys, tmp_path):
    from dataclasses import replace

    from calibrations import fake_profile

    from deploylens import calibration
    from deploylens.calibration import fit, networks
    from deploylens.hardware.calibration_profile import Machine, Probe
    from deploylens.hardware.local import cpu_info, vector_lanes

    info = cpu_info()

    def fake(seconds: float, quiet_share: float = 0.5):
        fixed = {"overhead call": 1e-5, "overhead chain": 2.5e-5, "overhead view": 0.0,
                 **{networks.label("residual", b): 0.01 for b in networks.BATCHES}}
        profile = fake_profile(vector_lanes=vector_lanes(info["isa"]), machine=Machine(info["model"]), rounds=3,
                               seconds_taken=1.0, fixed_s=fixed, probe=Probe(2.8e-4, 0.1, quiet_share, 0.45))
        for points in profile.points.values():
            points[0] = replace(points[0], seconds=seconds)
        fit.derive(profile)
        return profile

    timings = iter([2e-3, 1e-3, 3e-3, 2e-3])
    budgets = []
    monkeypatch.setattr(calibration, "calibrate", lambda *a, **k: budgets.append(k.get("budget_s")) or
                        fake(next(timings)))
    path = tmp_path / "profile.json"
    for flag in ([], ["--combine"], ["--combine"]):
        code, out, err = run(monkeypatch, capsys, "hw", "calibrate", "--threads", "1", "-o", str(path),
                             "--format", "json", *flag)
        assert code in (0, None), err
    saved = calibration.load(path)
    assert {p.seconds for points in saved.points.values() for p in points} == {2e-3}  # of 2, 1 and 3 ms
    assert saved.rounds == 9 and "busy" not in err
    assert budgets == [None, None, None]  # the device's own budget, unless --budget says otherwise
    code, out, err = run(monkeypatch, capsys, "hw", "calibrate", "--threads", "1", "-o", str(tmp_path / "b.json"),
                         "--budget", "30", "--format", "json")
    assert code in (0, None) and budgets[-1] == 30.0
    # a calibration that met few quiet spells says so on stderr, and still saves
    monkeypatch.setattr(calibration, "calibrate", lambda *a, **k: fake(1e-3, quiet_share=0.03))
    code, out, err = run(monkeypatch, capsys, "hw", "calibrate", "--threads", "1", "-o", str(path),
                         "--format", "json", "--force")  # the saved profile replaced: --force
    assert code in (0, None) and "the host was busy during this calibration (only 3%" in err
    assert json.loads(out)["quiet_share"] == 0.03
    # no ISA peak known: the ceiling is the fastest case, 1e8 FLOPs in 1 ms
    assert json.loads(out)["compute_ceiling_gflops"] == pytest.approx(100.0)
    # a saved profile of other threads is refused before the calibration runs, in one line
    monkeypatch.setattr(calibration, "calibrate", lambda *a, **k: pytest.fail("calibrated before refusing"))
    code, out, err = run(monkeypatch, capsys, "hw", "calibrate", "--threads", "2", "-o", str(path), "--combine")
    assert code == 2 and "differ in threads" in err and "Traceback" not in err


def test_a_table_goes_to_the_output_file_like_json_and_csv(monkeypatch, capsys, tmp_path):
    target = tmp_path / "kinds.txt"
    code, out, err = run(monkeypatch, capsys, "analyze", "resnet18", "-i", "1,3,32,32", "--by", "kind", "-o",
                         str(target))
    assert code in (0, None) and out == ""
    lines = target.read_text().splitlines()
    assert lines[0] == "resnet18  (torch)  inputs [[1, 3, 32, 32]]  float32"
    assert any(line.startswith("│ conv ") and " 20 │" in line for line in lines)


def test_deploy_json_reports_every_step_checked(monkeypatch, capsys, tmp_path):
    source = tmp_path / "net.py"
    source.write_text("import torch.nn as nn\ndef build():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), "
                      "nn.BatchNorm2d(8), nn.ReLU()).eval()\n")
    exported = tmp_path / "net.onnx"
    code, out, err = run(monkeypatch, capsys, "deploy", f"{source}:build", "-i", "1,3,16,16", "--fuse", "--onnx",
                         str(exported), "--format", "json")
    assert code in (0, None), err
    steps = json.loads(out)["steps"]
    assert [s["step"] for s in steps] == ["original", "fuse_bn", "export_onnx"]
    # conv 3->8 3x3 on 14x14 outputs: 8 * 27 * 196 MACs, and 8 * 27 + 8 params once BN is folded in
    assert [s["macs"] for s in steps] == [8 * 27 * 196] * 3 and steps[1]["params"] == 8 * 27 + 8
    assert steps[0]["max_rel_error"] == 0.0 and all(s["max_rel_error"] < 1e-5 for s in steps[1:])
    assert steps[2]["path"] == str(exported) and exported.exists()


def test_predict_this_without_a_calibration_says_how_to_make_one(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("DEPLOYLENS_CALIBRATION_DIR", str(tmp_path))
    code, out, err = run(monkeypatch, capsys, "predict", "resnet18", "--target", "this", "--threads", "1")
    assert code == 2 and out == "" and list(tmp_path.iterdir()) == []  # nothing calibrated, nothing written
    (line,) = err.strip().splitlines()
    assert "deploylens hw calibrate --backend torch --threads 1 --device cpu --dtype fp32" in line


@pytest.mark.parametrize("args,message", [
    (("predict", "resnet18", "--batch", "0"), "Invalid value for '--batch'"),
    (("hw", "calibrate", "--budget", "0"), "Invalid value for '--budget'"),
    (("analyze", "resnet18", "--no-such-option"), "No such option: --no-such-option"),
])
def test_a_bad_option_value_is_one_line_and_exit_2(monkeypatch, capsys, args, message):
    code, out, err = run(monkeypatch, capsys, *args)
    assert code == 2 and out == "" and err.count("\n") == 1  # one line, nothing before it
    assert err.startswith("deploylens: error: ") and message in err


# --- outputs: checked before the work, --force to overwrite --------------------------------------


def _refuse_work(monkeypatch):
    """Every command's work fails the test if it starts."""
    import importlib

    for module, name in (("deploylens.analysis.api", "analyze"), ("deploylens.bench.harness", "bench"),
                         ("deploylens.analysis.published", "compare"), ("deploylens.calibration", "calibrate"),
                         ("deploylens.capture.loader", "resolve_model")):
        monkeypatch.setattr(importlib.import_module(module), name,
                            lambda *a, _name=name, **k: pytest.fail(f"{_name} ran before the check"))


OUTPUT_COMMANDS = {
    "analyze": ["analyze", "resnet18", "-o"],
    "bench": ["bench", "resnet18", "--no-store", "-o"],
    "zoo list": ["zoo", "list", "--family", "resnet", "-o"],
    "hw calibrate": ["hw", "calibrate", "--threads", "1", "-o"],
    "deploy --onnx": ["deploy", "resnet18", "--onnx"],
    "deploy --int8-out": ["deploy", "resnet18", "--onnx", "{tmp}/fine.onnx", "--int8", "--int8-out"],
}


@pytest.mark.parametrize("command", list(OUTPUT_COMMANDS))
@pytest.mark.parametrize("destination,message", [
    ("/proc/x.json", "cannot write /proc/x.json: "),
    ("{tmp}/nodir/x.json", "cannot write {tmp}/nodir/x.json: no folder {tmp}/nodir"),
    ("{tmp}", "{tmp} is a folder: give a file name to write to"),
    ("{tmp}/old.json", "{tmp}/old.json exists: use --force to overwrite it"),
])
def test_a_bad_output_is_refused_in_one_line_before_the_work(monkeypatch, capsys, tmp_path, command, destination,
                                                             message):
    (tmp_path / "old.json").write_text("kept")
    _refuse_work(monkeypatch)
    args = [a.replace("{tmp}", str(tmp_path)) for a in OUTPUT_COMMANDS[command]] + \
        [destination.replace("{tmp}", str(tmp_path))]
    code, out, err = run(monkeypatch, capsys, *args)
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith("deploylens: error: " + message.replace("{tmp}", str(tmp_path))), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"] and (tmp_path / "old.json").read_text() == "kept"


def test_force_overwrites_an_output_whole(monkeypatch, capsys, tmp_path):
    target = tmp_path / "kinds.csv"
    target.write_text("old")
    code, out, err = run(monkeypatch, capsys, "analyze", "resnet18", "-i", "1,3,32,32", "--by", "kind",
                         "--format", "csv", "-o", str(target), "--force")
    assert code in (0, None) and out == "" and target.read_text().startswith("kind,layers,flops,macs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kinds.csv"]


def test_version_is_the_package_metadata(monkeypatch, capsys):
    from importlib.metadata import version

    code, out, err = run(monkeypatch, capsys, "--version")
    assert code in (0, None) and out == f"deploylens {version('deploylens')}\n" and err == ""


def test_a_model_that_prints_cannot_corrupt_json_on_stdout(monkeypatch, capsys, tmp_path):
    source = tmp_path / "chatty.py"
    source.write_text("import sys, torch.nn as nn\nprint('imported')\nclass M(nn.Module):\n"
                      "    def __init__(self):\n        super().__init__()\n        self.conv = nn.Conv2d(3, 4, 3)\n"
                      "    def forward(self, x):\n        print('forward', tuple(x.shape))\n"
                      "        sys.stdout.write('raw\\n')\n        return self.conv(x)\n"
                      "def build():\n    print('building')\n    return M()\n")
    code, out, err = run(monkeypatch, capsys, "analyze", f"{source}:build", "-i", "1,3,8,8", "--format", "json")
    assert code in (0, None) and json.loads(out)["totals"]["macs"] == 4 * 27 * 36
    assert "imported\nbuilding\n" in err and "forward (1, 3, 8, 8)\nraw\n" in err


# --- the results store: nothing made before the arguments are checked ------------------------


def test_a_refused_bench_leaves_no_results_store(monkeypatch, capsys, tmp_path):
    store = tmp_path / "deep" / "runs.sqlite"
    for args in (["--backend", "nope"], ["--batch", "0"], ["--dtype", "int4"]):
        code, out, err = run(monkeypatch, capsys, "bench", "resnet18", "--store", str(store), *args)
        assert code == 2 and err.count("\n") == 1, err
    code, out, err = run(monkeypatch, capsys, "bench", "not_a_model", "--store", str(store))
    assert code == 2 and "unknown model" in err
    code, out, err = run(monkeypatch, capsys, "runs", "list", "--store", str(store), "--format", "json")
    assert code in (0, None) and json.loads(out) == []
    code, out, err = run(monkeypatch, capsys, "runs", "show", "1", "--store", str(store))
    assert code == 2 and err == f"deploylens: error: no run 1: there is no results store at {store} yet\n"
    assert list(tmp_path.iterdir()) == []  # reading never creates one either


def _store_with_two_runs(path):
    from deploylens.bench.store import Store

    store = Store(path)
    for p50s in ((1.0, 2.0, 4.0), (1.05, 2.5, 5.0)):
        run_id = store.begin("net", {}, {})
        for (backend, batch), p50 in zip((("torch", 1), ("torch", 8), ("onnxruntime", 1)), p50s):
            store.add(run_id, {"backend": backend, "device": "cpu", "dtype": "fp32", "batch": batch,
                               "p50_ms": p50, "throughput": batch / p50 * 1e3})
        store.finish(run_id, "complete")


def test_runs_compare_fail_above_says_which_rows_regressed(monkeypatch, capsys, tmp_path):
    _store_with_two_runs(tmp_path / "runs.sqlite")
    args = ("runs", "compare", "1", "2", "--store", str(tmp_path / "runs.sqlite"), "--format", "json")
    code, out, err = run(monkeypatch, capsys, *args, "--fail-above", "1.10")
    assert code == 1 and [row["p50_ratio"] for row in json.loads(out)["rows"]] == [1.05, 1.25, 1.25]
    assert err == ("deploylens: run 2 vs 1: p50 above x1.1 of the baseline in 2 of 3 rows: torch cpu fp32 batch 8 "
                   "x1.250, onnxruntime cpu fp32 batch 1 x1.250\n")
    code, out, err = run(monkeypatch, capsys, *args, "--fail-above", "1.25")
    assert code in (0, None) and err == ""


def test_runs_compare_fail_above_with_nothing_in_common_is_an_error(monkeypatch, capsys, tmp_path):
    from deploylens.bench.store import Store

    store = Store(tmp_path / "runs.sqlite")
    for backend in ("torch", "onnxruntime"):
        run_id = store.begin("net", {}, {})
        store.add(run_id, {"backend": backend, "device": "cpu", "dtype": "fp32", "batch": 1, "p50_ms": 1.0,
                           "throughput": 1e3})
    code, out, err = run(monkeypatch, capsys, "runs", "compare", "1", "2", "--store", str(tmp_path / "runs.sqlite"),
                         "--fail-above", "1.1")
    assert code == 2 and out == "" and "share no (backend, device, dtype, batch)" in err


# --- tables at 80 columns ----------------------------------------------------------------------


def _render(renderable, width: int) -> list[str]:
    import io

    from rich.console import Console

    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue().splitlines()


def test_a_table_keeps_numbers_whole_and_the_end_of_names():
    from deploylens.report.tables import FitTable

    made = FitTable(("layer", "kind", "MACs", "bytes written"), left=("layer", "kind"))
    made.add_row("stages.3.1.conv_pw.conv", "conv", "118.01 M", "3.21 M")
    made.add_row("head.fc", "linear", "1.02 M", "4.00 k")
    assert _render(made, 80) == [
        "┏━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━━━━━━━━┓",
        "┃ layer                   ┃ kind   ┃     MACs ┃ bytes written ┃",
        "┡━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━━━━┩",
        "│ stages.3.1.conv_pw.conv │ conv   │ 118.01 M │        3.21 M │",
        "│ head.fc                 │ linear │   1.02 M │        4.00 k │",
        "└─────────────────────────┴────────┴──────────┴───────────────┘"]
    # 40 columns: a lighter frame, a number's header wraps between words, the name keeps its end
    assert _render(made, 40) == ["                                   bytes",
                                 "layer          kind        MACs  written",
                                 "────────────────────────────────────────",
                                 "…conv_pw.conv  conv    118.01 M   3.21 M",
                                 "head.fc        linear    1.02 M   4.00 k"]


def test_optional_columns_go_first_on_a_narrow_terminal():
    from deploylens.report.tables import FitTable

    made = FitTable(("name", "p50 ms", "p90 ms", "load ms", "stop"), left=("name", "stop"), optional=("load ms",))
    made.add_row("onnxruntime", "0.123", "0.456", "12.3", "stable")
    assert _render(made, 60)[1] == "┃ name        ┃ p50 ms ┃ p90 ms ┃ load ms ┃ stop   ┃"
    # number headers wrap before a column is dropped; then the optional one goes
    assert _render(made, 40) == ["               p50    p90   load        ",
                                 "name            ms     ms     ms  stop  ",
                                 "────────────────────────────────────────",
                                 "onnxruntime  0.123  0.456   12.3  stable"]
    assert _render(made, 30) == ["            p50    p90        ",
                                 "name         ms     ms  stop  ",
                                 "──────────────────────────────",
                                 "…runtime  0.123  0.456  stable"]


def test_analyze_fits_80_columns_with_whole_numbers(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run(monkeypatch, capsys, "analyze", "resnet18", "-i", "1,3,32,32", "--top", "10")
    lines = out.splitlines()
    assert code in (0, None) and max(len(line) for line in lines) <= 80
    assert not any("…" in line[1:] for line in lines)  # only a name, first, is ever shortened
    rows = [line.rstrip() for line in lines if line.startswith(("stem.", "…", "stages."))]
    # the stem conv: 3->64 7x7 stride 2 to 16x16, 9408 weights, 2,408,448 MACs; 3 significant digits;
    # a long name keeps its end, the op, output and kernel columns are left to --format csv
    assert len(rows) == 10
    assert rows[0] == "stem.0.conv         conv         4.82 M  2.41 M  9.41 k  49.9 k   65.5 k   41.72"
    assert rows[4] == "…es.0.0.conv1.conv  conv         4.72 M  2.36 M  36.9 k   164 k   16.4 k   26.18"
    assert lines[4].split() == ["bytes", "bytes"] and lines[5].split() == ["name", "kind", "flops", "macs", "params",
                                                                           "read", "written", "FLOP/B"]

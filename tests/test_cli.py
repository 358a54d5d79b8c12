"""The command line: outputs scripts rely on, and one clear line for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from deploylens.cli import main

JSON_TOTALS = {"flops", "macs", "params", "buffers", "bytes_eager", "bytes_fused", "unknown_ops", "complete"}
JSON_LAYER = {"name", "kind", "op", "inputs", "outputs", "flops", "macs", "params", "bytes_read", "bytes_written",
              "intensity", "kernel"}


def run(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["deploylens", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


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
                         "--format", "json")
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

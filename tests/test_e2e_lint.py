"""``lint``, ``predict`` and ``recommend`` driven as a user drives them: the installed
command in a subprocess, real model files and a real ``pyproject.toml``.

The model: a 3x3 conv 3->16 and a 1x1 conv 16->64. On the npu target (channel multiples
4 in / 16 out, INT8) the only finding is G1's warning on the 1x1 conv (ratio 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

MODEL = ("import torch.nn as nn\n\n\ndef build():\n"
         "    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 64, 1)).eval()\n")
SHAPE = ["-i", "1,3,32,32"]


def deploylens(root: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEPLOYLENS_CALIBRATION_DIR": str(root / "calibration")}  # a fresh machine
    env.pop("DEPLOYLENS_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "deploylens.cli", *args], capture_output=True, text=True,
                          cwd=cwd or root, env=env, timeout=300)


def commands(root: Path) -> dict[str, tuple[tuple[str, ...], Path]]:
    """Every command line the tests run (name: arguments, folder), with the files they read."""
    model = str(root / "net.py") + ":build"
    (root / "net.py").write_text(MODEL)
    (root / "pyproject.toml").write_text('[project]\nname = "demo"\n\n[tool.deploylens.lint]\nignore = ["PTQ"]\n\n'
                                         '[tool.deploylens.lint.options.G1]\nmin-ratio = 5.0\n')
    (root / "src" / "deep").mkdir(parents=True)
    (root / "calibration").mkdir()
    (root / "ci.toml").write_text('[tool.deploylens.lint]\nfail-on = "warning"\n\n[tool.deploylens.lint.options.G1]\n'
                                  'warning-ratio = 5\n')
    (root / "bad").mkdir()
    (root / "bad" / "pyproject.toml").write_text("[tool.deploylens.lint.options.G1]\nmax-ratio = 3\n")
    (root / "report.json").write_text("old")
    (root / "kept.json").write_text("mine")
    npu = ("--target", "npu", "--format", "json")
    return {
        "unconfigured": (("lint", model, *SHAPE, *npu, "--isolated"), root),
        "exit-zero": (("lint", model, *SHAPE, *npu, "--isolated", "--exit-zero", "--select", "G", "--ignore", "G2",
                       "-o", str(root / "report.json"), "--force"), root),
        "unknown prefix": (("lint", model, *SHAPE, "--select", "G,X9"), root),
        "kept": (("lint", model, *SHAPE, "-o", str(root / "kept.json")), root),
        "nearest pyproject": (("lint", model, *SHAPE, *npu), root / "src" / "deep"),
        "--config": (("lint", model, *SHAPE, *npu, "--config", str(root / "ci.toml")), root),
        "bad config": (("lint", model, *SHAPE), root / "bad"),
        "explain": (("lint", "--explain", "G1"), root),
        "predict": (("predict", model, *SHAPE, *npu), root),
        "recommend": (("recommend", "--models", "mobilenet_v2_050", "--format", "json"), root),
        "budget": (("recommend", "--budget-ms", "-5"), root),
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("project")


@pytest.fixture(scope="module")
def ran(project) -> dict[str, Future]:
    """Every command, started as soon as a core is free (each pays Python's and torch's
    start-up, ~2 s): a test waits for its own."""
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
    started = {name: pool.submit(deploylens, project, *args, cwd=cwd)
               for name, (args, cwd) in commands(project).items()}
    yield started
    pool.shutdown()


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2 and result.stdout == "", (result.stdout, result.stderr)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("deploylens: error: ")
    return line


@pytest.fixture(scope="module")
def unconfigured(ran):
    """lint on npu ignoring the configuration: the G1 finding, exit 1."""
    return ran["unconfigured"].result()


def test_findings_exit_1(unconfigured):
    assert unconfigured.returncode == 1, unconfigured.stderr
    report = json.loads(unconfigured.stdout)
    assert [(f["rule"], f["severity"], f["layer"]) for f in report["findings"]] == [("G1", "warning", "2")]
    assert "PTQ-RISK" in report["summary"]["rules_applied"]  # the npu deploys INT8, --int8 or not


def test_exit_zero_prefix_selection_and_force(project, ran):
    written = project / "report.json"  # it held "old"
    result = ran["exit-zero"].result()
    assert result.returncode == 0 and result.stdout == "", result.stderr
    report = json.loads(written.read_text())
    assert report["summary"]["rules_applied"] == ["G1", "G3", "G4"]
    assert [f["rule"] for f in report["findings"]] == ["G1"]


def test_an_unknown_prefix_is_one_line_exit_2(ran):
    line = one_error_line(ran["unknown prefix"].result())
    assert line.startswith("deploylens: error: unknown rule or prefix 'X9'; rules: G1, G2, G3, G4, CH-ALIGN")


def test_an_existing_output_is_not_overwritten_without_force(project, ran):
    kept = project / "kept.json"
    line = one_error_line(ran["kept"].result())
    assert line == f"deploylens: error: {kept} exists: use --force to overwrite it" and kept.read_text() == "mine"


def test_the_nearest_pyprojects_options_and_ignores_apply(ran, unconfigured):
    # run from a folder below the project: G1's min-ratio 5 drops the ratio-4 finding, PTQ-RISK is ignored
    result = ran["nearest pyproject"].result()
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["findings"] == [] and "PTQ-RISK" not in report["summary"]["rules_applied"]
    assert report["summary"]["rules_applied"] == [r for r in json.loads(unconfigured.stdout)["summary"]["rules_applied"]
                                                  if r != "PTQ-RISK"]


def test_config_names_a_file_whose_fail_on_and_options_decide_the_exit(ran):
    # ci.toml: fail-on = "warning", G1's warning-ratio 5
    result = ran["--config"].result()
    assert result.returncode == 0, result.stderr  # the finding is now info, below fail-on
    assert [(f["rule"], f["severity"]) for f in json.loads(result.stdout)["findings"]] == [("G1", "info")]


def test_a_bad_configuration_is_one_line_exit_2(project, ran):
    bad = project / "bad"
    line = one_error_line(ran["bad config"].result())
    assert line == (f"deploylens: error: {bad / 'pyproject.toml'} [tool.deploylens.lint.options]: G1 has no option "
                    "'max-ratio'; its options: min-ratio, warning-ratio")


def test_explain_prints_the_rule_with_the_configured_options(ran):
    result = ran["explain"].result()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "rule: G1",
        "rationale: Equal channel width minimizes memory access cost: at fixed FLOPs a 1x1 conv moves the fewest "
        "bytes when c_in == c_out.",
        "source: ShuffleNetV2 (ECCV 2018) section 2, Table 1",
        "applies to: every target",
        "platform classes: mobile-cpu, npu, nvidia-gpu (with --int8: mobile-cpu, npu, nvidia-gpu)",
        "options ([tool.deploylens.lint.options.G1] in pyproject.toml):",
        "  min-ratio = 5.0 (default 2.0): the ratio of a 1x1 conv's wider to narrower channel count from which it "
        "is reported (info)",
        "  warning-ratio = 4.0 (default): the ratio from which the finding is a warning",
        "measure it on this machine: deploylens study g1"]


def test_predict_takes_the_npu_as_lint_does(ran, unconfigured):
    result = ran["predict"].result()
    assert result.returncode == 0, result.stderr
    prediction = json.loads(result.stdout)
    assert (prediction["target"], prediction["dtype"]) == ("npu", "int8")
    assert prediction["totals"]["latency_ms"] == pytest.approx(
        json.loads(unconfigured.stdout)["summary"]["predicted_ms"], rel=1e-12)
    assert prediction["notes"][0] == "npu: numbers from rockchip_rk3588_npu (catalog)"


def test_recommend_alone_ranks_on_a_fresh_machine(project, ran):
    result = ran["recommend"].result()
    assert result.returncode == 0, result.stderr
    ranking = json.loads(result.stdout)
    assert ranking["target"] == "nvidia-gpu"
    assert ranking["target_default"] == ("no calibration of this machine (deploylens hw calibrate), so "
                                         "nvidia-gpu; --target to choose")
    assert [c["model"] for c in ranking["candidates"]] == ["mobilenet_v2_050"]
    assert ranking["candidates"][0]["latency_ms"] > 0
    assert list((project / "calibration").iterdir()) == []  # nothing calibrated


def test_a_negative_budget_is_one_line_exit_2(ran):
    line = one_error_line(ran["budget"].result())
    assert line == "deploylens: error: --budget-ms -5: a latency budget must be a positive number of milliseconds"

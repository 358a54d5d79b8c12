"""``--deploy`` on ``analyze`` and ``lint``: a zoo model's deploy (re-parameterized) form,
``NAME:deploy``; any other reference is one line on stderr and exit 2."""

from __future__ import annotations

import json

import pytest
from cli_runner import run

from deploylens.analysis.api import analyze
from deploylens.errors import UserError
from deploylens.lint import lint

NOT_ZOO = ("deploylens: error: --deploy takes a zoo model's deploy form; 'tests/e2e_models/missing.onnx' is not a zoo "
           "model: fold your own model with `deploylens deploy MODEL --reparam --fuse --onnx model.onnx` and give that "
           "file")


def test_analyze_deploy_counts_repvgg_a0_as_officially_deployed(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "analyze", "repvgg_a0", "--deploy", "--format", "json")
    assert (code, err) == (0, "")
    profile = json.loads(out)
    assert profile["model"] == "repvgg_a0:deploy"
    # the official deploy form (mmpretrain's deploy counts): 8,309,384 params, 1.36 GMACs
    assert (profile["totals"]["params"], profile["totals"]["macs"]) == (8_309_384, 1_361_451_008)
    train = analyze("repvgg_a0").totals  # the branched form carries the 1x1 and identity BN branches
    assert (train.params, train.macs) == (9_108_968, 1_512_581_120)


def test_lint_deploy_lints_the_folded_form(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "lint", "mobileone_s0", "--deploy", "--target", "npu",
                         "--select", "G1,PTQ-RISK", "--format", "json")
    assert (code, err) == (1, "")  # findings: G1
    report = json.loads(out)
    assert report["model"] == "mobileone_s0:deploy"
    # PTQ-RISK finds summed conv-BN branches: the branched form has 43, the folded form none
    assert report["summary"]["by_rule"] == {"G1": 3}
    assert lint("mobileone_s0", "npu", select=["G1", "PTQ-RISK"]).summary["by_rule"] == {"G1": 13, "PTQ-RISK": 43}


@pytest.mark.parametrize("command", ["analyze", "lint"])
def test_deploy_of_a_model_outside_the_zoo_is_one_line_exit_2(monkeypatch, capsys, command):
    code, out, err = run(monkeypatch, capsys, command, "tests/e2e_models/missing.onnx", "--deploy")
    assert (code, out, err) == (2, "", NOT_ZOO + "\n")


def test_the_api_refuses_deploy_of_a_module():
    import torch.nn as nn

    with pytest.raises(UserError, match="--deploy takes a zoo model's deploy form; Conv2d"):
        analyze(nn.Conv2d(3, 8, 3), (1, 3, 8, 8), deploy=True)

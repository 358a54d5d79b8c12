"""Re-parameterization and PTQ-RISK on RepVGG-A0 and MobileOne-S0 written the way the
official repositories write them (``tests/e2e_models``: branch sums that start from a
Python ``0``), on every form of a branch sum, and on blocks that must be left alone and
reported. The deploy-form counts are derived by hand below (one conv with bias per block)
and agree with the published deploy-form figures (mmpretrain: RepVGG-A0 8.31 M params /
1.36 G MACs, MobileOne-S0 2.08 M / 0.27 G; the issue's 1361.5 M and 275 M)."""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from e2e_models.mobileone_official import mobileone_s0
from e2e_models.repvgg_official import create_RepVGG_A0
from nets import randomize

from deploylens import analyze
from deploylens.deploy import reparameterize
from deploylens.deploy.transforms import reparameterize_report
from deploylens.lint import lint

MODELS = Path(__file__).parent / "e2e_models"
SMALL = (1, 3, 64, 64)  # output-equality checks
EXACT = 1e-5  # max |difference| relative to max |output|


def repvgg_a0_deploy_counts(size: int = 224) -> tuple[int, int]:
    """(params, MACs): one 3x3 conv with bias per block, widths 64*0.75 = 48 (stem, stage 1),
    128*0.75 = 96, 256*0.75 = 192, 512*2.5 = 1280; 1, 2, 4, 14, 1 blocks, the first of each
    with stride 2; then a 1280 -> 1000 linear layer."""
    layers = [(3, 48, 2)] + [(48, 48, 2), (48, 48, 1)] + [(48, 96, 2)] + [(96, 96, 1)] * 3 + \
        [(96, 192, 2)] + [(192, 192, 1)] * 13 + [(192, 1280, 2)]
    params = macs = 0
    for c_in, c_out, stride in layers:
        size //= stride
        params += c_out * c_in * 9 + c_out
        macs += size * size * c_out * c_in * 9
    return params + 1280 * 1000 + 1000, macs + 1280 * 1000


def mobileone_s0_deploy_counts(size: int = 224) -> tuple[int, int]:
    """(params, MACs): a 3x3 stride-2 stem 3 -> 48, then per unit a depthwise 3x3 and a
    pointwise 1x1 conv with bias; stages of 2, 8, 10, 1 units to 48, 128, 256, 1024
    channels (64*0.75, 128, 256, 512*2), the first unit of each with stride 2; then a
    1024 -> 1000 linear layer."""
    size //= 2
    params, macs = 48 * 3 * 9 + 48, size * size * 48 * 3 * 9
    c_in = 48
    for planes, units in ((48, 2), (128, 8), (256, 10), (1024, 1)):
        for unit in range(units):
            size //= 2 if unit == 0 else 1
            params += c_in * 9 + c_in + planes * c_in + planes
            macs += size * size * (c_in * 9 + planes * c_in)
            c_in = planes
    return params + 1024 * 1000 + 1000, macs + 1024 * 1000


def convs_and_batchnorms(model: nn.Module) -> tuple[list[nn.Conv2d], int]:
    return ([m for m in model.modules() if isinstance(m, nn.Conv2d)],
            sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()))


# deploy-form (params, MACs) at 224, as counted by hand above; rounded as the figures are
# published: RepVGG-A0 8.31 M / 1361.5 M, MobileOne-S0 2.08 M / 275 M
OFFICIAL = {"repvgg_a0": (8_309_384, 1_361_451_008), "mobileone_s0": (2_078_504, 275_110_400)}
PUBLISHED = {"repvgg_a0": (8.31, 1361.5), "mobileone_s0": (2.08, 275.0)}


@pytest.mark.parametrize("factory, blocks, kernels, by_hand", [
    (create_RepVGG_A0, 22, {(3, 3): 22}, repvgg_a0_deploy_counts),
    (mobileone_s0, 43, {(3, 3): 22, (1, 1): 21}, mobileone_s0_deploy_counts),
], ids=["repvgg_a0", "mobileone_s0"])
def test_official_code_deploys_to_the_official_counts(request, factory, blocks, kernels, by_hand):
    name = request.node.callspec.id
    counts = OFFICIAL[name]
    assert by_hand() == counts
    assert (round(counts[0] / 1e6, 2), round(counts[1] / 1e6, 1 if name == "repvgg_a0" else 0)) == PUBLISHED[name]
    model = randomize(factory())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deploy = reparameterize(model, SMALL)
    assert [w for w in caught if "re-parameterization" in str(w.message)] == []  # nothing left unfolded
    convs, batchnorms = convs_and_batchnorms(deploy)
    # every block one conv with bias, no BatchNorm left
    assert batchnorms == 0 and len(convs) == blocks and all(c.bias is not None for c in convs)
    assert Counter(c.kernel_size for c in convs) == kernels
    totals = analyze(deploy, (1, 3, 224, 224)).totals
    assert (totals.params, totals.macs) == counts
    x = torch.randn(SMALL)
    with torch.inference_mode():
        expected, got = model(x), deploy(x)
    assert ((got - expected).abs().max() / expected.abs().max()).item() <= EXACT


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("DEPLOYLENS_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "deploylens.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


UNFOLDED = [
    {"block": "groups", "reason": "branches with different groups: dense.conv has 2, one.conv has 1"},
    {"block": "strides", "reason": "branches with different stride: wide.conv has (1, 1), down.conv has (2, 2)"},
    {"block": "relu_branch", "reason": "a branch is not linear: relu after one.bn"},
    {"block": "gated", "reason": "a branch is not linear: a product of two tensors (a gate?) after dense.bn"},
    {"block": "untraceable", "reason": "torch.fx cannot trace its forward (symbolically traced variables cannot be "
                                       "used as inputs to control flow)"},
]


def test_the_deploy_command_folds_official_code_and_warns_once_per_unfolded_block():
    runs = {"repvgg_a0": ("repvgg_official.py:create_RepVGG_A0",),
            "mobileone_s0": ("mobileone_official.py:mobileone_s0",),
            "unfoldable": ("unfoldable_blocks.py:build", "-i", "1,8,16,16")}
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = {name: pool.submit(cli, "deploy", str(MODELS / model), *rest, "--reparam", "--format", "json")
                   for name, (model, *rest) in runs.items()}
        done = {name: future.result() for name, future in futures.items()}
    rows = {}
    for name, run in done.items():
        assert run.returncode == 0, run.stderr
        rows[name] = json.loads(run.stdout)["steps"][1]
        assert rows[name]["step"] == "reparameterize" and rows[name]["max_rel_error"] <= EXACT
    for name, blocks in (("repvgg_a0", 22), ("mobileone_s0", 43)):
        assert (rows[name]["params"], rows[name]["macs"]) == OFFICIAL[name]
        assert rows[name]["folded"] == blocks and rows[name]["unfolded"] == []
        assert "re-parameterization" not in done[name].stderr
    assert rows["unfoldable"]["folded"] == 2 and rows["unfoldable"]["unfolded"] == UNFOLDED
    assert [line for line in done["unfoldable"].stderr.splitlines() if "re-parameterization" in line] == [
        f"warning: re-parameterization left {u['block']} unfolded: {u['reason']}" for u in UNFOLDED]


def test_the_api_reports_what_it_could_not_fold():
    from e2e_models.unfoldable_blocks import build

    model = build()
    report = reparameterize_report(model, (1, 8, 16, 16))
    assert report.folded == ["folds", "gated"] and report.unfolded == UNFOLDED
    # folds: 3 branches -> one 3x3; gated: the 1x1 and the identity -> one 1x1 beside the gated 3x3
    assert isinstance(report.model.get_submodule("folds.reparam"), nn.Conv2d)
    assert report.model.get_submodule("gated.reparam").kernel_size == (1, 1)
    with pytest.warns(UserWarning) as caught:
        reparameterize(model, (1, 8, 16, 16))
    assert [str(w.message) for w in caught if "re-parameterization" in str(w.message)] == [
        f"re-parameterization left {u['block']} unfolded: {u['reason']}" for u in UNFOLDED]
    x = torch.randn(1, 8, 16, 16)
    with torch.inference_mode():
        assert torch.allclose(report.model(x), model(x), rtol=0, atol=EXACT * model(x).abs().max().item())


# --- every form of a branch sum ------------------------------------------------------------


def conv_bn(c_in: int, c_out: int, kernel, padding=None, groups: int = 1, dims: int = 2) -> nn.Sequential:
    conv, bn = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
    kernel = kernel if isinstance(kernel, tuple) else (kernel,) * dims
    padding = tuple(k // 2 for k in kernel) if padding is None else padding
    result = nn.Sequential()
    result.add_module("conv", conv(c_in, c_out, kernel, 1, padding, groups=groups, bias=False))
    result.add_module("bn", bn(c_out))
    return result


class Branches(nn.Module):
    """Branches over one 8-channel input, summed by ``form``."""

    def __init__(self, form, dims: int = 2, groups: int = 1):
        super().__init__()
        self.form = form
        self.k3, self.k1, self.k5 = (conv_bn(8, 8, k, groups=groups, dims=dims) for k in (3, 1, 5))
        self.row, self.column = conv_bn(8, 8, (1, 3), (0, 1)), conv_bn(8, 8, (3, 1), (1, 0))
        self.plain = nn.Conv2d(8, 8, 3, padding=1, bias=True)  # a conv whose BN an exporter folded
        self.bn = nn.BatchNorm1d(8) if dims == 1 else nn.BatchNorm2d(8)

    def forward(self, x):
        return self.form(self, x)


def mobileone_loop(m, x):
    """``MobileOneBlock.forward`` without a skip branch: ``identity_out = 0``, then ``+=``."""
    identity_out = 0
    scale_out = m.k1(x)
    out = scale_out + identity_out
    for branch in (m.k3, m.k5):
        out += branch(x)
    return out


FORMS = {
    # name: (forward, groups, dims, fused kernel)
    "zero_first": (lambda m, x: 0 + m.k3(x) + m.k1(x) + m.bn(x), 1, 2, (3, 3)),
    "repvgg_stride2_style": (lambda m, x: m.k3(x) + m.k1(x) + 0, 1, 2, (3, 3)),
    "zero_in_the_middle": (lambda m, x: m.k1(x) + 0 + m.k5(x) + x, 1, 2, (5, 5)),
    "mobileone_loop": (mobileone_loop, 1, 2, (5, 5)),
    "depthwise_iadd_from_zero": (mobileone_loop, 8, 2, (5, 5)),
    "builtin_sum": (lambda m, x: sum([m.bn(x), m.k3(x), m.k1(x)]), 1, 2, (3, 3)),
    "torch_add_alpha": (lambda m, x: torch.add(torch.add(m.k1(x), m.k3(x)), m.bn(x), alpha=0.5), 1, 2, (3, 3)),
    "subtraction": (lambda m, x: m.k3(x) - m.k1(x) - m.bn(x), 1, 2, (3, 3)),
    "scaled_and_shifted": (lambda m, x: 0.5 * m.k3(x) + m.k1(x) / 4 + 1.5, 1, 2, (3, 3)),
    "acnet_rows_and_columns": (lambda m, x: m.k3(x) + m.row(x) + m.column(x), 1, 2, (3, 3)),
    "bn_folded_conv_and_plain_identity": (lambda m, x: operator.add(m.plain(x), x) + 0, 1, 2, (3, 3)),
    "conv1d": (lambda m, x: 0 + m.k3(x) + m.k1(x) + m.bn(x), 1, 1, (3,)),
}


@pytest.mark.parametrize("name", list(FORMS))
def test_every_form_of_a_branch_sum_folds_into_one_conv(name):
    forward, groups, dims, kernel = FORMS[name]
    model = randomize(Branches(forward, dims, groups))
    shape = (1, 8, 16) if dims == 1 else (1, 8, 16, 16)
    report = reparameterize_report(model, shape)
    convs = [m for m in report.model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    assert report.folded == ["(model)"] and report.unfolded == []
    assert len(convs) == 1 and convs[0].kernel_size == kernel and convs[0].groups == groups
    assert convs[0].bias is not None
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in report.model.modules())
    x = torch.randn(shape)
    with torch.inference_mode():
        expected = model(x)
        assert ((report.model(x) - expected).abs().max() / expected.abs().max()).item() <= EXACT


# --- PTQ-RISK ---------------------------------------------------------------------------------


def ptq_risks(model) -> list:
    return [f for f in lint(model, "npu", None if isinstance(model, str) else (1, 3, 32, 32),
                            select=["PTQ-RISK"]).findings]


def test_ptq_risk_finds_every_repvgg_block_in_torch_and_in_both_onnx_exports(tmp_path):
    import onnx

    model = randomize(create_RepVGG_A0())
    assert len(ptq_risks(model)) == 22
    batchnorms = {}
    for folded in (False, True):
        path = str(tmp_path / f"repvgg_{folded}.onnx")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), path, dynamo=False, do_constant_folding=folded)
        batchnorms[folded] = sum(n.op_type == "BatchNormalization" for n in onnx.load(path).graph.node)
        assert len(ptq_risks(path)) == 22, f"do_constant_folding={folded}"
    # BN kept: 22 3x3 + 22 1x1 + 17 identities; folded: only the 17 BN-only identities stay
    assert batchnorms == {False: 61, True: 17}


def test_ptq_risk_finds_every_mobileone_block_and_nothing_on_resnets():
    found = ptq_risks(randomize(mobileone_s0()))
    # the stem, and a depthwise and a pointwise block per unit: 1 + 2 * (2 + 8 + 10 + 1)
    assert len(found) == 43
    assert found[0].message.startswith("2 parallel linear branches (2 conv)")  # the stem: 3x3 + 1x1
    assert sum(f.message.startswith("6 parallel") for f in found) == 17  # depthwise: 4 + 1x1 + identity
    assert ptq_risks("resnet18") == [] and ptq_risks("mobilenet_v2_050") == []

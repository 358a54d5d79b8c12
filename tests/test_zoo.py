"""Every zoo variant builds, runs, matches its published params and MACs, and the
re-parameterized families fold exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from deploylens import analyze, zoo
from deploylens.analysis.published import compare
from deploylens.zoo.registry import comparable_params, parse_figure
from deploylens.zoo.reparam import RepBranches, reparameterize

FAMILIES_WITH_REPARAM = {"repvgg", "mobileone"}


def nontrivial_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def test_the_issue_names_are_registered():
    expected = {f"mobilenet_v1_{w}" for w in ("100", "075", "050")} | \
        {f"mobilenet_v2_{w}" for w in ("100", "075", "050", "140")} | \
        {"mobilenet_v3_large_100", "mobilenet_v3_small_100", "shufflenet_v1_g3_100", "ghostnet_100"} | \
        {f"shufflenet_v2_{w}" for w in ("x0_5", "x1_0", "x1_5", "x2_0")} | \
        {f"repvgg_{v}" for v in ("a0", "a1", "a2", "b0", "b1", "b1g2", "b1g4", "b2", "b3")} | \
        {f"mobileone_s{i}" for i in range(5)} | {"cspresnet50", "cspdarknet53", "vovnet27_slim", "vovnet39",
                                                "vovnet57", "densenet121", "resnet18", "resnet50", "vgg16",
                                                "squeezenet1_0", "squeezenet1_1", "efficientnet_b0"}
    assert expected <= set(zoo.names())


@pytest.mark.parametrize("name", zoo.names())
def test_variant_matches_its_published_figures(name):
    record = compare(name)
    assert record["complete"]
    assert record["source"] and record["published_params"] is not None
    assert record["params_ok"] is True, record
    # a source that prints no MACs (the VoVNet paper tables) leaves the check undecided
    assert record["macs_ok"] is (True if record["published_macs"] is not None else None), record


@pytest.mark.parametrize("name", zoo.names())
def test_variant_runs_at_its_resolution_and_folds_exactly(name):
    torch.manual_seed(0)
    v = zoo.variant(name)
    model = nontrivial_batchnorm(zoo.create(name))
    x = torch.randn(1, 3, v.resolution, v.resolution)
    with torch.no_grad():
        before = model(x)
    assert before.shape == (1, 1000) and torch.isfinite(before).all()
    if v.family not in FAMILIES_WITH_REPARAM:
        return
    reparameterize(model)
    with torch.no_grad():
        after = model(x)
    assert (after - before).abs().max() <= 1e-4 * before.abs().max()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(m.fused is not None and not m.kxk for m in model.modules() if isinstance(m, RepBranches))


def test_create_deploy_returns_the_single_branch_form():
    train, deploy = zoo.create("repvgg_a0"), zoo.create("repvgg_a0", deploy=True)
    assert sum(p.numel() for p in train.parameters()) == 9_108_968  # mmpretrain train-time 9.11 M
    assert sum(p.numel() for p in deploy.parameters()) == 8_309_384  # deploy 8.31 M
    assert not train.training and not deploy.training


def test_repbranches_fold_a_grouped_block_with_every_branch():
    block = nontrivial_batchnorm(RepBranches(8, 8, 3, 1, groups=2, kxk_branches=3))
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        before = block(x)
        block.reparameterize()
        after = block(x)
    assert torch.allclose(before, after, atol=1e-5)
    assert block.fused.weight.shape == (8, 4, 3, 3)


def test_printed_figures_carry_their_precision():
    assert parse_figure("8.31M") == pytest.approx((8.31e6, 5e3))
    assert parse_figure("1.4M") == pytest.approx((1.4e6, 5e4))
    assert parse_figure("11689512") == (11689512.0, 0.5)
    assert parse_figure("0.39G") == pytest.approx((0.39e9, 5e6))


def test_counting_rules_of_sources():
    # TF's MobileNetV2 README counts conv/linear weights only; the TF-slim V1 checkpoint
    # counts BN shift and moving statistics but no BN scale
    profile = analyze(nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4), nn.Flatten(),
                                    nn.Linear(4 * 4, 2)), (1, 3, 2, 2))
    assert profile.totals.params == 12 + 8 + 34
    assert comparable_params(profile, "weights") == 12 + 34
    assert comparable_params(profile, "variables") == 12 + 12 + 34
    assert comparable_params(profile, "backbone") == 12 + 8


def test_unknown_zoo_name_lists_the_known_ones():
    with pytest.raises(Exception, match="unknown zoo model 'resnet1000'; known: cspdarknet53"):
        zoo.create("resnet1000")

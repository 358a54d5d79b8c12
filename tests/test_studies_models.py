"""Whole-network studies (deploylens.studies.models): each study's arms are the zoo models and
forms its claim names, with the analyzer's exact FLOPs and params beside the zoo's published
figures; the expectations refer to the study's own arms with the paper's ratios; the INT8
accuracy risk on a fixed seed; the summaries written after timing, on fake samples; and one
real quick run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import deploylens.studies.models as models
from deploylens import UserError, analyze
from deploylens.analysis.published import compare as published
from deploylens.studies import BORNE_OUT, CONTRADICTED, INCONCLUSIVE, STUDIES, run_study
from deploylens.studies.core import MIN_ROUNDS
from deploylens.studies.runner import Settings
from deploylens.zoo import create
from deploylens.zoo.reparam import RepBranches

CPU, GPU = Settings("cpu"), Settings("cuda")
NAMES = ("flops-vs-latency", "reparam", "int8", "latency-throughput", "gpu-util")
# the analyzer's FLOPs (2 per MAC, and the element-wise ops') of each flops-vs-latency arm at 1x3x112x112
FLOPS_112 = {"mobilenet_v1_050": 81_073_920, "mobilenet_v1_075": 174_400_128, "mobilenet_v1_100": 302_919_168,
             "mobilenet_v2_100": 170_955_584, "shufflenet_v2_x1_0": 82_435_192, "resnet18": 973_216_768,
             "repvgg_a0 (deploy)": 699_708_032}


def totals(arm):
    return analyze(arm.build().eval(), arm.input_shape).totals


def timed(design, medians_s: dict[str, float], flops: dict[str, int] | None = None) -> list[str]:
    """Hand each arm fake samples (and FLOPs) as the runner does after timing; the notes
    the design's summary then makes."""
    for arm in design.arms:
        arm.flops = (flops or {}).get(arm.name, arm.flops)
        arm.samples = [medians_s[arm.name]] * MIN_ROUNDS
    return design.summarize(design.arms) if design.summarize else []


def test_the_studies_are_registered_with_their_devices_and_expectations_on_their_own_arms():
    assert set(NAMES) <= set(STUDIES)
    assert STUDIES["int8"].devices == ("cpu",) and STUDIES["gpu-util"].devices == ("cuda",)
    for name in NAMES:
        assert STUDIES[name].claim and STUDIES[name].source
        for settings in (CPU, GPU) if name != "int8" else (CPU,):
            design = STUDIES[name].design(settings)
            names = [a.name for a in design.arms]
            assert len(set(names)) == len(names) and design.expectations
            for e in design.expectations:
                assert {e.a, e.b} <= set(names) and (e.paper_ratio is None or math.isfinite(e.paper_ratio))
                assert e.paper_ratio is not None or e.slower is not None  # a direction, at least


def test_flops_vs_latency_arms_are_the_papers_models_at_112_with_exact_flops():
    design = STUDIES["flops-vs-latency"].design(CPU)
    assert [a.name for a in design.arms] == list(FLOPS_112)
    assert {a.input_shape for a in design.arms} == {(1, 3, 112, 112)}
    assert {a.input_shape for a in STUDIES["flops-vs-latency"].design(GPU).arms} == {(8, 3, 224, 224)}
    for arm in design.arms:
        zoo_name = arm.name.split()[0]
        counted, record = totals(arm), published(zoo_name)
        assert counted.flops == FLOPS_112[arm.name] and counted.complete  # 2 per MAC, plus element-wise ops
        # the model is the zoo's, in the form its published params describe (RepVGG deploy)
        assert record["params_ok"] and counted.params == record["params"]
        if zoo_name in models.TABLE_8:  # Table 8's MFLOPs are MACs at 224: the zoo model's within 3%
            assert record["macs"] == pytest.approx(models.TABLE_8[zoo_name][0] * 1e6, rel=0.03)
    # the pairs: fewer FLOPs yet slower in the paper; equal FLOPs; one family at 3.7x the FLOPs
    assert FLOPS_112["mobilenet_v2_100"] < FLOPS_112["mobilenet_v1_075"]
    assert FLOPS_112["mobilenet_v1_050"] == pytest.approx(FLOPS_112["shufflenet_v2_x1_0"], rel=0.02)
    assert [(e.a, e.b, e.paper_ratio) for e in design.expectations[:3]] == [
        ("mobilenet_v2_100", "mobilenet_v1_075", pytest.approx(10.6 / 8.9)),
        ("mobilenet_v1_050", "shufflenet_v2_x1_0", pytest.approx(24.4 / 16.5)),
        ("mobilenet_v1_100", "mobilenet_v1_050", pytest.approx(16.5 / 6.5))]
    gpu = STUDIES["flops-vs-latency"].design(GPU).expectations
    assert [e.paper_ratio for e in gpu] == pytest.approx([314 / 180, 341 / 382, 382 / 247, 3256 / 2442])
    assert not gpu[1].expects_slower  # on the GPU mobilenet_v1_050 is the faster of the equal-FLOPs pair
    assert design.expectations[3].paper_ratio is None and design.expectations[3].slower  # RepVGG timed a GPU only


def test_spearman_and_the_papers_rank_correlations():
    assert models.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert models.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert models.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(math.sqrt(0.9))  # ties: mean ranks
    table = models.TABLE_8.values()
    # Table 8 by hand: GPU ranks differ by 1,1,2,1,1 (rho = 1 - 6*8/120), ARM by 0,0,1,1,0
    assert models.spearman([r[0] for r in table], [1 / r[1] for r in table]) == pytest.approx(0.6)
    assert models.spearman([r[0] for r in table], [1 / r[2] for r in table]) == pytest.approx(0.9)


def test_flops_vs_latency_summarizes_its_timed_arms():
    design = STUDIES["flops-vs-latency"].design(CPU)
    # latency in FLOPs order except that shufflenet_v2 is 3x slower than mobilenet_v1_050
    medians = {name: flops / 1e11 for name, flops in FLOPS_112.items()}
    medians["shufflenet_v2_x1_0"] = 3 * medians["mobilenet_v1_050"]
    added = timed(design, medians, FLOPS_112)
    assert added[0].startswith("Spearman rank correlation of FLOPs and median latency over the 7 arms: 0.89")
    assert "GPU 0.60, ARM 0.90" in added[0]
    assert "1.0 / 0.5 FLOPs ratio 3.74, measured time ratio 3.74" in added[1]
    assert "shufflenet_v2_x1_0 takes 3.00x the time of mobilenet_v1_050 with 1.02x its FLOPs" in added[2]
    assert len(added) == 3


def folded_away(model: torch.nn.Module) -> int:
    """Params re-parameterization removes, by hand: per block, every branch's BN (2 per
    channel), the extra kxk convs and the 1x1 conv, less the fused conv's bias."""
    total = 0
    for b in model.modules():
        if isinstance(b, RepBranches):
            kxk, per_group = b.c_out * (b.c_in // b.groups) * b.kernel ** 2, b.c_in // b.groups
            total += (len(b.kxk) - 1) * kxk + 2 * b.c_out * len(b.kxk) - b.c_out
            total += (b.c_out * per_group + 2 * b.c_out) if b.scale is not None else 0
            total += 2 * b.c_out if b.identity is not None else 0
    return total


def test_reparam_arms_are_train_and_deploy_forms_with_the_exact_params_folded_away():
    design = STUDIES["reparam"].design(CPU)
    assert [a.name for a in design.arms] == ["repvgg_a0 train", "repvgg_a0 deploy", "mobileone_s0 train",
                                             "mobileone_s0 deploy"]
    assert [(e.a, e.b, e.paper_ratio, e.slower) for e in design.expectations] == [
        ("repvgg_a0 train", "repvgg_a0 deploy", None, True), ("mobileone_s0 train", "mobileone_s0 deploy", None, True)]
    counted = {a.name: totals(a) for a in design.arms}
    for name, train, deploy in (("repvgg_a0", 9_108_968, 8_309_384), ("mobileone_s0", 5_293_272, 2_078_504)):
        assert counted[f"{name} train"].params == train and counted[f"{name} deploy"].params == deploy
        assert train - deploy == folded_away(create(name))
        assert published(name)["params"] == deploy and published(name)["params_ok"]  # the zoo's 8.31M / 2.08M
        assert counted[f"{name} deploy"].flops < counted[f"{name} train"].flops
        assert design.paper["params M (train / deploy)"][f"{name} deploy"] == round(deploy / 1e6, 2)
        assert design.paper["params M (train / deploy)"][f"{name} train"] == round(train / 1e6, 2)
    assert 9_108_968 - 8_309_384 == 799_584 and 5_293_272 - 2_078_504 == 3_214_768
    for arm in design.arms:  # as the runner costs each arm
        arm.params, arm.peak_activation_bytes = counted[arm.name].params, counted[arm.name].peak_activation_bytes
    summary = timed(design, {a.name: 0.01 for a in design.arms})
    peaks = [n for n in summary if "peak activation memory" in n]
    assert peaks[0] == "repvgg_a0 train: 9,108,968 params, peak activation memory 1.81 MB (the analyzer's, as the " \
                       "runner costed the arm: ops run eagerly in order)" and "0.75 MB" in peaks[1] and len(peaks) == 4


def test_int8_times_onnx_runtime_sessions_and_refuses_what_it_cannot_honour():
    design = STUDIES["int8"].design(CPU)
    assert [(a.name, a.input_shape) for a in design.arms] == [
        ("repvgg_a0 FP32", (1, 3, 112, 112)), ("repvgg_a0 INT8", (1, 3, 112, 112)),
        ("small RepVGG FP32", (1, 3, 32, 32)), ("small RepVGG INT8", (1, 3, 32, 32))]
    assert [(e.a, e.b, e.slower) for e in design.expectations] == [("repvgg_a0 FP32", "repvgg_a0 INT8", True),
                                                                   ("small RepVGG FP32", "small RepVGG INT8", True)]
    assert design.paper[next(iter(design.paper))] == {"repvgg_a0 FP32": 72.41, "repvgg_a0 INT8": 52.2}
    with pytest.raises(UserError, match="study int8 times ONNX Runtime sessions"):
        STUDIES["int8"].design(Settings("cpu", "onnxruntime"))
    with pytest.raises(UserError, match="study int8 runs on --device cpu"):
        run_study("int8", device="cuda")


def test_int8_accuracy_risk_on_a_fixed_seed():
    risk = models.quantization_risk()  # the study's own: 60 steps, seed 0
    assert risk.images.shape == (512, 3, 32, 32) and set(np.unique(risk.labels)) == set(range(10))
    fp32 = models.run_onnx(risk.fp32, risk.images)
    with torch.no_grad():  # the deploy form's ONNX is the torch deploy form
        assert np.allclose(fp32, risk.model(torch.from_numpy(risk.images)).numpy(), rtol=1e-4, atol=1e-4)
    int8 = models.run_onnx(risk.int8, risk.images)
    row = risk.rows["deploy form, per-channel"]
    assert row["agreement"] == np.mean(fp32.argmax(1) == int8.argmax(1))  # recomputed: exactly the same
    assert row["sqnr_db"] == models.sqnr_db(fp32, int8) and row["accuracy"] == np.mean(int8.argmax(1) == risk.labels)
    assert risk.fp32_accuracy >= 0.9
    for subject, measured in risk.rows.items():  # a small net on easy data: agreed thresholds
        assert measured["agreement"] >= 0.95 and measured["sqnr_db"] >= 20, subject
    # the arm the runner times: ONNX Runtime's outputs, the FP32 net's costs
    module = models.OnnxRuntimeModule(risk.model, risk.int8, 1)
    x = torch.from_numpy(risk.images[:1])
    assert np.allclose(module(x).numpy(), int8[:1], atol=1e-5)
    assert analyze(module, (1, 3, 32, 32)).totals.flops == analyze(risk.model, (1, 3, 32, 32)).totals.flops
    # seeded: the same training and quantization give the same figures
    small = models.quantization_risk.__wrapped__
    assert small(3, 1).rows == small(3, 1).rows


def test_latency_throughput_arms_sweep_the_batch_and_run_the_largest_one_by_one():
    design = STUDIES["latency-throughput"].design(CPU)
    assert [(a.name, a.input_shape[0]) for a in design.arms] == [("batch 1", 1), ("batch 2", 2), ("batch 4", 4),
                                                                 ("batch 8", 8), ("8 x batch 1", 8)]
    assert {a.input_shape[1:] for a in design.arms} == {(3, 112, 112)}
    one = totals(design.arms[0]).flops
    assert one == FLOPS_112["mobilenet_v2_100"]
    assert [totals(a).flops for a in design.arms[1:]] == [2 * one, 4 * one, 8 * one, 8 * one]
    assert [(e.a, e.b, e.slower) for e in design.expectations] == [("batch 8", "batch 1", True),
                                                                   ("8 x batch 1", "batch 8", True)]
    model, x = create("mobilenet_v2_100"), torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(models.OneByOne(model)(x), model(x), atol=1e-5)
    gpu = STUDIES["latency-throughput"].design(GPU)
    assert [a.name for a in gpu.arms][-1] == "64 x batch 1" and gpu.arms[0].input_shape == (1, 3, 224, 224)
    summary = timed(design, {"batch 1": 0.01, "batch 2": 0.012, "batch 4": 0.02, "batch 8": 0.038,
                             "8 x batch 1": 0.08})
    assert summary[-1] == ("latency and throughput: batch 1: 10.00 ms, 100 samples/s, batch 2: 12.00 ms, 167 "
                                "samples/s, batch 4: 20.00 ms, 200 samples/s, batch 8: 38.00 ms, 211 samples/s; "
                                "throughput gains under 10% past batch 4")


def test_gpu_util_design_and_its_notes_on_fake_measurements():
    design = STUDIES["gpu-util"].design(CPU)  # its design needs no GPU; its run does
    assert [(a.name, a.input_shape) for a in design.arms] == [
        ("batch 1", (1, 3, 224, 224)), ("batch 8", (8, 3, 224, 224)), ("batch 64", (64, 3, 224, 224)),
        ("64 x batch 1", (64, 3, 224, 224))]
    assert [(e.a, e.b) for e in design.expectations] == [("batch 64", "batch 1"), ("64 x batch 1", "batch 64")]
    with pytest.raises(UserError, match="study gpu-util runs on --device cuda"):
        run_study("gpu-util")
    arm = design.arms[0]
    arm.flops, arm.bytes, arm.samples = 3_600_000_000, 50_000_000, [0.002] * MIN_ROUNDS
    util = {"batch 1": {"gpu_util_mean": 97.0, "gpu_util_max": 100, "samples": 20}}
    assert models.utilization_notes([arm], util, 60e12, 4e12) == [
        "batch 1: GPU-Util 97% (max 100%); achieved 1.80 TFLOP/s = 3.0% of peak, 25 GB/s = 0.6% of peak"]
    assert models.utilization_notes([arm], {}, None, None) == [
        "batch 1: GPU-Util not sampled; achieved 1.80 TFLOP/s, 25 GB/s"]


def test_a_real_quick_run_of_the_cheapest_study():
    result = run_study("latency-throughput", threads=1, quick=True, budget_s=5)
    data = result.to_dict()
    assert {"study", "claim", "source", "settings", "environment", "arms", "comparisons", "verdict", "notes"} <= \
        set(data)
    assert [a["name"] for a in data["arms"]] == ["batch 1", "batch 2", "batch 4", "batch 8", "8 x batch 1"]
    assert [a["flops"] for a in data["arms"]] == [FLOPS_112["mobilenet_v2_100"] * b for b in (1, 2, 4, 8, 8)]
    assert all(a["samples"] >= MIN_ROUNDS and a["median_ms"] > 0 for a in data["arms"])
    assert {c["verdict"] for c in data["comparisons"]} <= {BORNE_OUT, CONTRADICTED, INCONCLUSIVE}
    assert any(note.startswith("latency and throughput: batch 1:") for note in data["notes"])
    assert "measured on" in data["notes"][-1]

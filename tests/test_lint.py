"""Each rule fires on a minimal network and not on its near-twin; impacts by hand."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn as nn
from nets import TinyShuffleNet, randomize

from deploylens import UserError
from deploylens.hardware.spec import Figure, HardwareSpec
from deploylens.lint import lint, to_sarif
from deploylens.recommend import pareto, recommend
from deploylens.hardware.targets import Target

F32 = 4


def spec(overhead_us: float | None = None) -> HardwareSpec:
    return HardwareSpec("bench-gpu", "gpu", "test", {"fp32": Figure(1e12, ("x",))}, bandwidth=Figure(1e11, ("x",)),
                        overhead=Figure(overhead_us * 1e-6, ("x",)) if overhead_us else None)


def target(**traits) -> Target:
    base = dict(name="test-gpu", device_class="gpu", spec=spec(), dtype="fp32")
    base.update(traits)
    return Target(**base)


def findings(model, shape, rule, tgt=None):
    return [f for f in lint(model, tgt or target(), shape, select=[rule]).findings]


def test_g1_fires_on_unequal_widths_with_the_bytes_it_costs():
    (f,) = findings(nn.Conv2d(16, 64, 1, bias=False), (1, 16, 8, 8), "G1")
    # hw(c1+c2)+c1c2 - (hw*2c + c^2) with c = sqrt(16*64) = 32: 5120+1024 - (4096+1024) = 1024 elements
    assert f.impact == {"value": 1024 * F32, "unit": "bytes"} and f.severity == "warning"
    assert findings(nn.Conv2d(32, 32, 1, bias=False), (1, 32, 8, 8), "G1") == []


def test_g2_fires_on_grouped_conv_not_dense_nor_depthwise():
    (f,) = findings(nn.Conv2d(16, 16, 3, padding=1, groups=4), (1, 16, 8, 8), "G2")
    assert f.impact["value"] == pytest.approx(64 * 32 * (1 - 1 / math.sqrt(4)) * F32)
    assert findings(nn.Conv2d(16, 16, 3, padding=1), (1, 16, 8, 8), "G2") == []
    assert findings(nn.Conv2d(16, 16, 3, padding=1, groups=16), (1, 16, 8, 8), "G2") == []


def fragmented():
    return nn.Sequential(nn.Sequential(*[nn.Conv2d(4, 4, 1) for _ in range(5)])).eval()


def test_g3_fires_when_launch_overhead_dominates_a_block():
    (f,) = findings(fragmented(), (1, 4, 2, 2), "G3", target(spec=spec(overhead_us=10)))
    assert f.layer == "0" and f.impact == {"value": pytest.approx(4 * 0.01), "unit": "ms"}
    assert findings(fragmented(), (1, 4, 2, 2), "G3", target(spec=spec())) == []  # overhead unknown: no verdict
    few = nn.Sequential(nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1))).eval()
    assert findings(few, (1, 4, 2, 2), "G3", target(spec=spec(overhead_us=10))) == []


class ShuffleAdd(nn.Module):
    """Standalone element-wise work no conv absorbs: a shuffle copy and a two-way add."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        from nets import channel_shuffle

        y = self.conv(x)
        return channel_shuffle(y, 2) + torch.sigmoid(y)


class Pointwise(nn.Module):
    def forward(self, x):
        return torch.relu(x) * 2 + 1


def test_g4_fires_on_standalone_elementwise_kernels():
    # relu, mul, add fuse into one element-wise kernel that no conv absorbs: it reads x and
    # writes the result once, 2 x 2048 floats, all of the model's fused bytes
    (f,) = findings(Pointwise(), (1, 8, 16, 16), "G4")
    assert f.impact == {"value": 2 * 2048 * F32, "unit": "bytes"}
    assert findings(ShuffleAdd(), (1, 8, 16, 16), "G4")[0].impact["value"] > 0
    fused = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()).eval()
    assert findings(fused, (1, 8, 16, 16), "G4") == []


def test_channel_alignment_exempts_the_input_and_the_classifier():
    model = nn.Sequential(nn.Conv2d(3, 12, 3), nn.Conv2d(12, 24, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(24, 10)).eval()
    aligned = target(channel_multiple=(8, 8))
    first, second = findings(model, (1, 3, 16, 16), "CH-ALIGN", aligned)
    # conv 0: its 3 input channels are the network input (exempt), its 12 outputs pad to 16
    assert first.layer == "0"
    assert first.impact == {"value": pytest.approx(12 * 3 * 9 * 14 * 14 * (16 / 12 - 1)), "unit": "MACs"}
    # conv 1: 12 inputs pad to 16; the classifier's 10 outputs are exempt
    assert second.layer == "1"
    assert second.impact == {"value": pytest.approx(24 * 12 * 9 * 12 * 12 * (16 / 12 - 1)), "unit": "MACs"}
    twin = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 24, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(24, 10)).eval()
    assert findings(twin, (1, 3, 16, 16), "CH-ALIGN", aligned) == []


def test_this_cpu_aligns_channels_to_its_simd_width(monkeypatch):
    import deploylens.hardware.local as environment
    from deploylens.hardware.targets import resolve

    for isa, multiple in ((["avx2", "avx512f"], (16, 16)), (["avx", "avx2"], (8, 8)), ([], None)):
        monkeypatch.setattr(environment, "cpu_info", lambda isa=isa: {"model": "test cpu", "isa": isa, "mhz": 2000.0,
                                                                       "cores": 2})
        assert resolve("this").channel_multiple == multiple


def test_depthwise_fires_on_gpu_and_npu_not_on_mobile_cpu():
    shape = (1, 3, 64, 64)
    for platform in ("nvidia-gpu", "npu"):
        assert lint("mobilenet_v2_050", platform, shape).summary["by_rule"].get("DW-ACCEL", 0) == 17
    mobile = lint("mobilenet_v2_050", "mobile-cpu", shape).summary
    assert "DW-ACCEL" not in mobile["by_rule"] and "DW-ACCEL" not in mobile["rules_applied"]
    assert "EARLY-SEP" not in mobile["rules_applied"] and "KERNEL-3X3" not in mobile["rules_applied"]
    dw = findings(nn.Conv2d(16, 16, 3, padding=1, groups=16), (1, 16, 8, 8), "DW-ACCEL",
                  target(depthwise_optimized=False))
    assert len(dw) == 1 and dw[0].impact["unit"] == "ms"
    assert findings(nn.Conv2d(16, 16, 3, padding=1), (1, 16, 8, 8), "DW-ACCEL", target(depthwise_optimized=False)) == []


def separable(c: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                         nn.Conv2d(c, 2 * c, 1, bias=False)).eval()


def test_early_separable_conv_against_the_regular_conv_it_could_be():
    # a roofline GPU with a T4's ridge (65 TFLOP/s, 320 GB/s), in fp32
    t4_like = target(spec=HardwareSpec("ridge-gpu", "gpu", "test", {"fp32": Figure(65e12, ("x",))},
                                       bandwidth=Figure(320e9, ("x",))))
    (f,) = [f for f in lint(separable(16), t4_like, (1, 16, 56, 56), select=["EARLY-SEP"]).findings]
    # the regular 3x3 16->32 conv: 28.9 MFLOP at 65 TFLOP/s vs 620 kB at 320 GB/s
    dense_ms = max(2 * 56 * 56 * 16 * 32 * 9 / 65e12, F32 * (56 * 56 * 48 + 16 * 32 * 9) / 320e9) * 1e3
    assert f"a regular 3x3 conv {dense_ms:.3f} ms" in f.message and f.impact["value"] > 0
    assert lint(separable(128), t4_like, (1, 128, 56, 56), select=["EARLY-SEP"]).findings == []


def test_kernel_3x3_on_gpu_with_the_alternatives_cost():
    (f,) = findings(nn.Conv2d(16, 16, 7, padding=3), (1, 16, 32, 32), "KERNEL-3X3")
    now = max(2 * 1024 * 16 * 16 * 49 / 1e12, F32 * (1024 * 32 + 16 * 16 * 49 + 16) / 1e11)
    three = max(2 * 1024 * 16 * 16 * 9 / 1e12, F32 * (1024 * 32 + 16 * 16 * 9) / 1e11)
    assert f.impact == {"value": pytest.approx((now - three) * 1e3, rel=1e-3), "unit": "ms"}
    assert findings(nn.Conv2d(16, 16, 3, padding=1), (1, 16, 32, 32), "KERNEL-3X3") == []
    assert "KERNEL-3X3" not in lint(nn.Conv2d(16, 16, 7), "mobile-cpu", (1, 16, 32, 32)).summary["rules_applied"]


class Dense(nn.Module):
    def __init__(self, layers=4, growth=8):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(8 + i * growth, growth, 3, padding=1) for i in range(layers))

    def forward(self, x):
        features = [x]
        for conv in self.convs:
            features.append(conv(torch.cat(features, 1)))
        return torch.cat(features, 1)


class OSA(nn.Module):
    def __init__(self, layers=4, width=8):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(8, width, 3, padding=1) for _ in range(layers))

    def forward(self, x):
        outputs = [x]
        for conv in self.convs:
            outputs.append(conv(outputs[-1]))
        return torch.cat(outputs, 1)


def test_dense_concatenation_versus_one_shot_aggregation():
    found = findings(Dense(), (1, 8, 8, 8), "DENSE-CONCAT")
    # the first conv's output is re-read by the concatenations of layers 2, 3, 4 and the block output
    first = next(f for f in found if f.layer.startswith("convs.0"))
    assert first.impact == {"value": (4 - 1) * 8 * 64 * F32, "unit": "bytes"}
    assert findings(OSA(), (1, 8, 8, 8), "DENSE-CONCAT") == []


def test_op_support_flags_channel_shuffle_where_the_list_lacks_it():
    lacking = target(supported_ops=frozenset({"Conv", "BatchNormalization", "Relu", "Concat", "Reshape", "Split",
                                              "GlobalAveragePool", "Gemm", "MatMul", "ReduceMean", "Slice"}),
                     ops_source="a test list")
    found = findings(TinyShuffleNet(), (1, 3, 32, 32), "OP-SUPPORT", lacking)
    assert {f.message.split()[0] for f in found} == {"Transpose"} and all(f.severity == "error" for f in found)
    complete = target(supported_ops=lacking.supported_ops | {"Transpose"})
    assert findings(TinyShuffleNet(), (1, 3, 32, 32), "OP-SUPPORT", complete) == []


def test_ptq_risk_on_multi_branch_blocks_meant_for_int8():
    from deploylens.zoo.reparam import RepBranches

    block = nn.Sequential(RepBranches(8, 8, 3)).eval()
    assert len(findings(block, (1, 8, 8, 8), "PTQ-RISK", target(int8=True))) == 1
    assert findings(nn.Conv2d(8, 8, 3, padding=1), (1, 8, 8, 8), "PTQ-RISK", target(int8=True)) == []
    assert "PTQ-RISK" not in lint(block, target(), (1, 8, 8, 8)).summary["rules_applied"]


def test_int8_means_the_same_on_every_target():
    # PTQ-RISK runs where the model is deployed in INT8: asked for with int8 on any target, always on the npu
    from deploylens.zoo.reparam import RepBranches

    block = nn.Sequential(RepBranches(8, 8, 3)).eval()
    for platform in ("mobile-cpu", "nvidia-gpu", "npu"):
        report = lint(block, platform, (1, 8, 8, 8), int8=True)
        assert report.summary["by_rule"].get("PTQ-RISK") == 1, platform
    for platform, runs in (("mobile-cpu", False), ("nvidia-gpu", False), ("npu", True)):
        assert ("PTQ-RISK" in lint(block, platform, (1, 8, 8, 8)).summary["rules_applied"]) is runs, platform


def plain_vgg():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(64, 10)).eval()


def test_a_clean_plain_3x3_network_has_no_warnings_on_nvidia_gpu():
    report = lint(plain_vgg(), "nvidia-gpu", (1, 3, 32, 32))
    assert [f for f in report.findings if f.severity != "info"] == []


def test_shufflenet_and_densenet_in_the_zoo():
    assert lint("densenet121", "nvidia-gpu", (1, 3, 64, 64)).summary["by_rule"]["DENSE-CONCAT"] > 0
    npu = lint("shufflenet_v2_x0_5", "npu", (1, 3, 64, 64), select=["OP-SUPPORT"])
    assert npu.findings == []  # the RKNN list has Transpose and Reshape: shuffles convert


def test_same_rules_same_layers_on_the_module_and_its_onnx_export(tmp_path):
    model = randomize(nn.Sequential(nn.Conv2d(3, 12, 7, padding=3), nn.BatchNorm2d(12), nn.ReLU(),
                                    nn.Conv2d(12, 12, 3, padding=1, groups=12), nn.Conv2d(12, 96, 1),
                                    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(96, 10)))
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), str(path), dynamo=False, do_constant_folding=False)
    module_report = lint(model, "nvidia-gpu", (1, 3, 32, 32))
    onnx_report = lint(str(path), "nvidia-gpu")
    as_set = lambda report: {(f.rule, f.module) for f in report.findings}  # noqa: E731
    assert as_set(module_report) == as_set(onnx_report)
    assert {rule for rule, _ in as_set(module_report)} >= {"G1", "CH-ALIGN", "DW-ACCEL", "KERNEL-3X3"}


def test_sarif_and_bad_input():
    report = lint("resnet18", "nvidia-gpu", (1, 3, 64, 64))
    sarif = to_sarif(report)
    assert sarif["version"] == "2.1.0" and len(sarif["runs"][0]["results"]) == len(report.findings)
    with pytest.raises(UserError, match="unknown rule or prefix 'G9'"):
        lint("resnet18", "nvidia-gpu", select=["G9"])
    with pytest.raises(UserError, match="unknown target 'tpu'; one of: mobile-cpu, npu, nvidia-gpu, this"):
        lint("resnet18", "tpu")


def test_recommend_ranks_and_finds_the_pareto_front():
    assert pareto([{"model": "a", "latency_ms": 1, "top1": 70}, {"model": "b", "latency_ms": 2, "top1": 69},
                   {"model": "c", "latency_ms": 3, "top1": 75}]) == ["a", "c"]
    result = recommend("nvidia-gpu", budget_ms=1.0, models=["repvgg_a0", "mobilenet_v2_100", "resnet50"])
    latencies = [c["latency_ms"] for c in result["candidates"]]
    assert latencies == sorted(latencies)
    assert [c["model"] for c in result["candidates"]] == ["repvgg_a0", "mobilenet_v2_100", "resnet50"]
    # MobileNetV2 is slower and less accurate (71.8%) than RepVGG-A0 (72.41%): off the front
    assert result["pareto"] == ["repvgg_a0", "resnet50"]
    assert result["within_budget"] == ["repvgg_a0", "mobilenet_v2_100"]  # ResNet-50: 1.70 ms
    assert "NVIDIA GPU" in result["advice"] and "repvgg" in result["advice"]
    # the verdict pairs models of comparable top-1 (72.41% and 71.8%); ResNet is neither kind
    assert [(p["favoured"], p["other"]) for p in result["verdict"]["pairs"]] == [("repvgg_a0", "mobilenet_v2_100")]
    assert [c["form"] for c in result["candidates"]] == ["deploy", "as built", "as built"]
    with pytest.raises(UserError, match="--measure times the models on this machine"):
        recommend("nvidia-gpu", measure=True)


def test_lint_deploy_checks_the_folded_form():
    # RepVGG-A0's four widening 1x1 branches (3->48 in the stem, 48->96, 96->192, 192->1280: G1) fold into 3x3s
    assert lint("repvgg_a0", "nvidia-gpu", select=["G1"]).summary["by_rule"] == {"G1": 4}
    report = lint("repvgg_a0", "nvidia-gpu", select=["G1"], deploy=True)
    assert (report.model, report.summary["by_rule"]) == ("repvgg_a0:deploy", {})
    with pytest.raises(UserError, match="--deploy takes a zoo model's deploy form; Conv2d is not a zoo model"):
        lint(nn.Conv2d(3, 8, 3), "nvidia-gpu", (1, 3, 8, 8), deploy=True)


def test_alignment_and_depthwise_findings_cite_the_targets_own_source():
    model = nn.Sequential(nn.Conv2d(3, 12, 3), nn.Conv2d(12, 12, 3, groups=12), nn.Conv2d(12, 24, 1)).eval()
    report = lint(model, "nvidia-gpu", (1, 3, 32, 32))
    sources = {f.rule: f.source for f in report.findings if f.rule in ("CH-ALIGN", "DW-ACCEL")}
    assert sources["CH-ALIGN"].startswith("NVIDIA Deep Learning Performance Guide, Tensor Core requirements")
    assert sources["DW-ACCEL"].startswith("G-GhostNet (IJCV 2022)")


# --- targets: one resolver for every command ---------------------------------------------


def test_platform_classes_and_catalog_devices_resolve_to_the_same_device_and_precision():
    from deploylens.hardware.targets import RKNN_UNSUPPORTED, resolve

    npu = resolve("npu")
    assert (npu.spec.name, npu.dtype, npu.int8, npu.channel_multiple) == ("rockchip_rk3588_npu", "int8", True, (4, 16))
    assert npu.unsupported_ops == RKNN_UNSUPPORTED == resolve("rockchip_rk3588_npu").unsupported_ops
    gpu, gpu8 = resolve("nvidia-gpu"), resolve("nvidia-gpu", "int8")
    assert (gpu.spec.name, gpu.dtype, gpu.channel_multiple) == ("nvidia_t4", "fp16", (8, 8))
    assert (gpu8.dtype, gpu8.int8, gpu8.channel_multiple) == ("int8", True, (16, 16))
    assert (resolve("nvidia_t4").dtype, resolve("horizon_journey3").dtype, resolve("snapdragon_888").dtype) == \
        ("fp16", "int8", "fp32")
    # the mobile CPU deployed in INT8: INT8, but the catalog has no INT8 peak for it, so bytes only
    mobile8 = resolve("mobile-cpu", "int8")
    assert (mobile8.spec.name, mobile8.dtype, mobile8.int8) == ("snapdragon_855", "int8", True)
    assert mobile8.notes == ["numbers from snapdragon_855 (catalog)",
                             "snapdragon_855 has no int8 peak in the catalog: impacts in bytes only"]
    with pytest.raises(UserError, match="snapdragon_855 has no int8 peak in the catalog"):
        mobile8.latency_model()


def test_this_without_a_calibration_says_how_to_make_one(monkeypatch, tmp_path):
    from deploylens.hardware.targets import resolve

    monkeypatch.setenv("DEPLOYLENS_CALIBRATION_DIR", str(tmp_path))
    this = resolve("this", threads=3)
    assert this.calibration is None and this.notes == [
        "no fp32 calibration for this machine: impacts in bytes only (deploylens hw calibrate)"]
    with pytest.raises(UserError, match=r"run `deploylens hw calibrate --backend torch --threads 3 --device cpu "
                                        r"--dtype fp32` first, or give a catalogued --target \(e.g. nvidia-gpu\)"):
        this.latency_model()


# --- choosing rules: id prefixes, as ruff does ----------------------------------------------


def test_select_and_ignore_match_rule_id_prefixes():
    from deploylens.lint import select_rules

    assert select_rules(["G"]) == ["G1", "G2", "G3", "G4"]
    assert select_rules(["d", "ch"]) == ["CH-ALIGN", "DW-ACCEL", "DENSE-CONCAT"]  # case-insensitive
    assert select_rules(["G"], ["G2"]) == ["G1", "G3", "G4"]
    assert select_rules(["G1"], ["G"]) == ["G1"]  # the more specific entry decides
    assert select_rules(["G1"], ["G1"]) == []  # a tie: ignore wins
    assert select_rules(None, ["G", "OP", "PTQ"]) == ["CH-ALIGN", "DW-ACCEL", "EARLY-SEP", "KERNEL-3X3",
                                                      "DENSE-CONCAT"]
    assert select_rules(["ALL"], ["K"]) == [r for r in select_rules() if r != "KERNEL-3X3"]
    with pytest.raises(UserError, match=r"unknown rule or prefix 'X'; rules: G1, G2"):
        select_rules(["X"])
    with pytest.raises(UserError, match="unknown rule or prefix 'Q'"):
        select_rules(None, ["Q"])


def test_the_command_lines_select_replaces_the_files_choice_and_its_ignore_adds():
    from deploylens.lint.config import LintConfig

    config = LintConfig(select=["G"], ignore=["G2"])
    assert config.selection(None, None) == (["G"], ["G2"])
    assert config.selection(None, ["G3"]) == (["G"], ["G2", "G3"])
    assert config.selection(["G2"], None) == (["G2"], [])


# --- rule options ----------------------------------------------------------------------


def with_options(model, shape, rule, options, tgt=None):
    return lint(model, tgt or target(), shape, select=[rule], options=options).findings


def test_g1_thresholds_are_options():
    conv = nn.Conv2d(16, 64, 1, bias=False)  # ratio 4
    assert [f.severity for f in with_options(conv, (1, 16, 8, 8), "G1", {"G1": {"warning-ratio": 4.5}})] == ["info"]
    assert with_options(conv, (1, 16, 8, 8), "G1", {"G1": {"min-ratio": 4.5}}) == []
    assert len(with_options(nn.Conv2d(16, 24, 1), (1, 16, 8, 8), "G1", {"G1": {"min-ratio": 1.5}})) == 1


def test_every_other_threshold_is_an_option_that_moves_the_verdict():
    overhead = target(spec=spec(overhead_us=10))
    assert len(with_options(fragmented(), (1, 4, 2, 2), "G3", {"G3": {"min-kernels": 5}}, overhead)) == 1
    assert with_options(fragmented(), (1, 4, 2, 2), "G3", {"G3": {"min-kernels": 6}}, overhead) == []
    assert with_options(fragmented(), (1, 4, 2, 2), "G3", {"G3": {"max-launch-share": 1.0}}, overhead) == []
    # the shuffle-add model's standalone kernels move 71% of its fused bytes
    assert len(with_options(ShuffleAdd(), (1, 8, 16, 16), "G4", {"G4": {"max-share": 0.7}})) == 1
    assert with_options(ShuffleAdd(), (1, 8, 16, 16), "G4", {"G4": {"max-share": 0.72}}) == []
    depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
    assert with_options(depthwise, (1, 16, 8, 8), "DW-ACCEL", {"DW-ACCEL": {"ridge-fraction": 0.0}},
                        target(depthwise_optimized=False)) == []
    assert lint(separable(16), "nvidia-gpu", (1, 16, 56, 56), select=["EARLY-SEP"],
                options={"EARLY-SEP": {"max-channels": 15}}).findings == []
    assert with_options(nn.Conv2d(16, 16, 7, padding=3), (1, 16, 32, 32), "KERNEL-3X3",
                        {"KERNEL-3X3": {"max-kernel": 7}}) == []
    assert len(with_options(nn.Conv2d(16, 16, 5, padding=2), (1, 16, 32, 32), "KERNEL-3X3",
                            {"KERNEL-3X3": {"max-kernel": 4}})) == 1
    # Dense(): the first and second convs' outputs are read by 4 and 3 concatenations
    assert [f.layer for f in findings(Dense(), (1, 8, 8, 8), "DENSE-CONCAT")] == ["convs.0", "convs.1"]
    assert [f.layer for f in with_options(Dense(), (1, 8, 8, 8), "DENSE-CONCAT",
                                          {"DENSE-CONCAT": {"min-readers": 4}})] == ["convs.0"]
    assert with_options(Dense(), (1, 8, 8, 8), "DENSE-CONCAT", {"DENSE-CONCAT": {"min-readers": 5}}) == []


def test_bad_options_are_one_clear_error():
    from deploylens.lint import check_options

    assert check_options({"g1": {"min-ratio": 3}}) == {"G1": {"min-ratio": 3}}
    for options, message in (
            ({"G9": {"x": 1}}, "unknown rule 'G9'"),
            ({"G1": {"max-ratio": 3}}, "where: G1 has no option 'max-ratio'; its options: min-ratio, warning-ratio"),
            ({"G2": {"x": 1}}, "where: G2 has no option 'x'; it has none"),
            ({"G1": {"min-ratio": "3"}}, "where: G1.min-ratio = '3': expected a number"),
            ({"G1": {"min-ratio": True}}, "where: G1.min-ratio = True: expected a number"),
            ({"G3": {"min-kernels": 4.5}}, "where: G3.min-kernels = 4.5: expected an integer"),
            ({"G1": {"min-ratio": 0.5}}, "where: G1.min-ratio = 0.5: must be at least 1"),
            ({"G4": {"max-share": 2}}, "where: G4.max-share = 2: must be between 0 and 1")):
        with pytest.raises(UserError) as raised:
            check_options(options, "where")
        assert message in str(raised.value), (options, str(raised.value))


def test_explain_says_rationale_source_options_and_targets():
    from deploylens.lint import explain

    g1 = explain("g1", {"G1": {"min-ratio": 3.0}})
    assert g1["id"] == "G1" and g1["source"] == "ShuffleNetV2 (ECCV 2018) section 2, Table 1"
    assert [(o["name"], o["default"], o["value"]) for o in g1["options"]] == [("min-ratio", 2.0, 3.0),
                                                                               ("warning-ratio", 4.0, 4.0)]
    assert g1["platforms"] == {"default": ["mobile-cpu", "npu", "nvidia-gpu"],
                               "int8": ["mobile-cpu", "npu", "nvidia-gpu"]}
    ptq = explain("PTQ-RISK")
    assert ptq["platforms"] == {"default": ["npu"], "int8": ["mobile-cpu", "npu", "nvidia-gpu"]}
    assert ptq["applies"].startswith("targets that deploy INT8: any target with --int8") and ptq["options"] == []
    assert explain("KERNEL-3X3")["platforms"]["default"] == ["nvidia-gpu"]
    assert explain("G2")["study"] == "deploylens study g2"
    with pytest.raises(UserError, match="unknown rule 'G9'"):
        explain("G9")


# --- configuration: [tool.deploylens.lint] -----------------------------------------------


def test_the_nearest_pyproject_with_a_deploylens_table_is_the_configuration(tmp_path, monkeypatch):
    from deploylens.lint.config import discover, find_config, load_config

    (tmp_path / "pyproject.toml").write_text('[tool.deploylens.lint]\nselect = ["G"]\nignore = ["G2"]\n'
                                             'fail-on = "warning"\n[tool.deploylens.lint.options.CH-ALIGN]\n'
                                             '[tool.deploylens.lint.options.G1]\nmin-ratio = 3.0\n')
    inner = tmp_path / "pkg" / "sub"
    inner.mkdir(parents=True)
    (tmp_path / "pkg" / "pyproject.toml").write_text('[project]\nname = "x"\n')  # no deploylens table: skipped
    assert find_config(inner) == tmp_path / "pyproject.toml"
    monkeypatch.chdir(inner)
    config = discover()
    assert (config.path, config.select, config.ignore, config.fail_on) == (tmp_path / "pyproject.toml", ["G"],
                                                                           ["G2"], "warning")
    assert config.options == {"CH-ALIGN": {}, "G1": {"min-ratio": 3.0}}
    assert discover(isolated=True).path is None
    other = tmp_path / "ci.toml"
    other.write_text('[tool.deploylens.lint]\nignore = ["G"]\n')
    assert discover(other).ignore == ["G"]
    for text, message in (('[tool.deploylens.lint]\nselct = ["G"]\n', "unknown key 'selct' in [tool.deploylens.lint]"),
                          ('[tool.deploylens.lint]\nselect = "G"\n', "select: expected a list of rule ids"),
                          ('[tool.deploylens.lint]\nfail-on = "fatal"\n', "fail-on = 'fatal': one of info, warning"),
                          ('[tool.deploylens.lint]\noptions = 3\n', "options: one table per rule"),
                          ("[tool.deploylens.lint\n", "is not valid TOML")):
        other.write_text(text)
        with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
            load_config(other)
    with pytest.raises(UserError, match="no such configuration file"):
        discover(tmp_path / "missing.toml")


def test_a_crash_inside_lint_exits_2_not_1(monkeypatch, capsys):
    # ruff's convention: 1 means findings, so an internal fault must not exit 1
    import deploylens.lint as lint_package
    from deploylens.cli import main

    def crash(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(lint_package, "lint", crash)
    monkeypatch.setattr("sys.argv", ["deploylens", "lint", "resnet18", "--isolated"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == ("deploylens: internal error: RuntimeError: boom (set DEPLOYLENS_DEBUG=1 "
                                               "for the traceback)")


# --- recommend ---------------------------------------------------------------------------


def test_recommend_without_a_target_ranks_for_nvidia_gpu_on_a_fresh_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("DEPLOYLENS_CALIBRATION_DIR", str(tmp_path))
    result = recommend(models=["mobilenet_v2_050"])
    assert result["target"] == "nvidia-gpu" and result["target_default"].startswith("no calibration of this machine")
    assert result["candidates"][0]["latency_source"] == "predicted (device model nvidia_gpu/fp16/eager, nvidia-gpu)"
    assert list(tmp_path.iterdir()) == []


def test_recommend_without_a_target_ranks_for_this_machine_once_calibrated(monkeypatch, tmp_path):
    import torch
    from calibrations import fake_profile

    from deploylens.hardware import calibration_profile as stored

    monkeypatch.setenv("DEPLOYLENS_CALIBRATION_DIR", str(tmp_path))
    threads = torch.get_num_threads()
    stored.save(fake_profile(threads=threads), stored.profile_path("torch", threads))
    result = recommend(models=["mobilenet_v2_050"])
    assert (result["target"], result["target_default"]) == ("this", "this machine's calibration")
    assert result["candidates"][0]["latency_source"] == "predicted (calibrated)"


@pytest.mark.parametrize("budget", [-5, 0, float("nan")])
def test_a_budget_must_be_positive(budget):
    with pytest.raises(UserError, match="a latency budget must be a positive number of milliseconds"):
        recommend("nvidia-gpu", budget_ms=budget, models=["mobilenet_v2_050"])


def test_recommend_refuses_an_unknown_model_before_any_work():
    with pytest.raises(UserError, match="unknown zoo model 'nope'"):
        recommend("nvidia-gpu", models=["mobilenet_v2_050", "nope"])


def test_explain_names_the_study_that_measures_the_rule():
    from deploylens.lint import CHECKED_BY, RULES, explain
    from deploylens.studies import STUDIES

    assert explain("G1")["study"] == "deploylens study g1" and explain("OP-SUPPORT")["study"] is None
    assert set(CHECKED_BY) <= set(RULES) and set(CHECKED_BY.values()) <= set(STUDIES)


def test_g3_says_when_it_cannot_judge_a_target():
    model = nn.Sequential(*(nn.Conv2d(8, 8, 1) for _ in range(6))).eval()
    unknown = lint(model, "rockchip_rk3588_npu", (1, 8, 8, 8), select=["G3"])  # no per-kernel overhead in the catalog
    assert unknown.findings == [] and "no known per-kernel overhead" in unknown.summary["not_judged"]["G3"]

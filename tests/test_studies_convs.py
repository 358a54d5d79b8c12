"""The convolution studies: their arms are what the claims say (kernel sizes, channels,
groups; equal FLOPs within every compared pair, FLOPs and bytes from the analyzer against
the hand formulas), their expectations name their own arms, the roofline note reads a
stored calibration, and the cheapest study runs for real within a few seconds."""

from __future__ import annotations

import pytest
import torch.nn as nn

from study_arms import costs

import deploylens.studies.convs as convs
from deploylens.hardware import calibration_profile as stored
from deploylens.hardware.calibration_profile import CalibrationPoint
from deploylens.hardware.local import this_cpu
from deploylens.studies import BORNE_OUT, CONTRADICTED, INCONCLUSIVE, STUDIES, run_study
from deploylens.studies.core import MIN_ROUNDS
from deploylens.studies.runner import Settings

from calibrations import fake_profile

CPU, GPU = Settings("cpu", threads=1), Settings("cuda")
NAMES = ("depthwise", "kernel-density", "channel-align", "early-sep")




def convs_of(arm) -> list[nn.Conv2d]:
    return [m for m in arm.build().modules() if isinstance(m, nn.Conv2d)]


@pytest.fixture
def no_calibration(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYLENS_CALIBRATION_DIR", str(tmp_path))
    return tmp_path


def test_depthwise_pairs_depthwise_and_dense_3x3_at_equal_flops(no_calibration):
    design = STUDIES["depthwise"].design(CPU)
    by_name = {a.name: a for a in design.arms}
    measured = costs(design)
    depthwise = {(16, 112), (64, 56), (256, 28), (1024, 14)}
    dense = {(16, 28), (32, 14), (64, 7)}
    for a in design.arms:
        _, c, h, w = a.input_shape
        layers = convs_of(a)
        assert len(layers) == 10 and all(m.kernel_size == (3, 3) and m.stride == (1, 1) and m.padding == (1, 1)
                                         and m.in_channels == m.out_channels == c for m in layers)
        flops, nbytes = measured[a.name]
        if a.name.startswith("depthwise"):
            assert (c, h) in depthwise and all(m.groups == c for m in layers)
            assert flops == 10 * 2 * 9 * c * h * w  # 9 c h w MACs a layer
            assert nbytes == 10 * 4 * (2 * c * h * w + 9 * c)  # map in, map out, c 3x3 filters
        else:
            assert (c, h) in dense and all(m.groups == 1 for m in layers)
            assert flops == 10 * 2 * 9 * c * c * h * w  # 9 c^2 h w MACs a layer
            assert nbytes == 10 * 4 * (2 * c * h * w + 9 * c * c)
    assert len(design.arms) == 7 and {f for f, _ in measured.values()} == {10 * 2 * 9 * 200704}
    # every comparison: a depthwise arm against a dense one, the depthwise expected slower per FLOP
    assert len(design.expectations) == 4
    for e in design.expectations:
        assert e.a.startswith("depthwise") and e.b.startswith("dense") and e.paper_ratio is None and e.expects_slower
        assert by_name[e.a].input_shape[1] == by_name[e.b].input_shape[1] or \
            by_name[e.a].input_shape[2:] == by_name[e.b].input_shape[2:]  # same channels, or same map
    assert design.paper == {}
    # the GPU's arms are the same layers at a batch that outlasts a launch; the same claim
    gpu = STUDIES["depthwise"].design(GPU)
    assert [a.input_shape[1:] for a in gpu.arms] == [a.input_shape[1:] for a in design.arms]
    assert {a.input_shape[0] for a in gpu.arms} == {128} and all(e.expects_slower for e in gpu.expectations)


def test_the_roofline_note_places_the_arms_against_the_ridge_of_a_stored_calibration(no_calibration):
    assert convs.conv_intensity(16, 16, 3, 112, groups=16) == pytest.approx(2 * 9 * 16 * 112 ** 2
                                                                            / (4 * (2 * 16 * 112 ** 2 + 9 * 16)))
    layers = {"depthwise": 2.2, "dense": 33.0}
    unknown = convs.roofline_note(CPU, layers)
    assert "ridge point is unknown" in unknown and "deploylens hw calibrate" in unknown
    # a calibration whose largest copy moves 64 MB in 6.4 ms: 10 GB/s
    profile = fake_profile()
    profile.points["copy"] = [CalibrationPoint("cat small", 0, 10**6, 1e-5, [1]),
                              CalibrationPoint("cat large", 0, 64 * 10**6, 6.4e-3, [1])]
    stored.save(profile, stored.profile_path("torch", 1, "cpu", "fp32"))
    assert convs.copy_bandwidth(CPU)[0] == pytest.approx(1e10)
    peak = this_cpu(1).peak_flops("fp32")
    if not peak:  # no clock or ISA to derive a peak from: the ridge stays unknown
        assert convs.ridge_point(CPU)[0] is None
        return
    ridge = peak / 1e10
    assert convs.ridge_point(CPU)[0] == pytest.approx(ridge)
    note = convs.roofline_note(CPU, layers)
    assert f"ridge point is {ridge:.1f} FLOPs/byte" in note and "10.0 GB/s" in note
    assert ("memory-bound below it: depthwise, dense" if ridge > 33 else "memory-bound below it: depthwise;") in note


def test_kernel_density_times_1x1_to_7x7_at_equal_flops_against_repvggs_4x():
    design = STUDIES["kernel-density"].design(CPU)
    measured = costs(design)
    sides = {1: 105, 3: 35, 5: 21, 7: 15}
    assert [convs_of(a)[0].kernel_size[0] for a in design.arms] == [1, 3, 5, 7]
    for a in design.arms:
        k = convs_of(a)[0].kernel_size[0]
        _, c, h, _ = a.input_shape
        assert c == 64 and h == sides[k] and len(convs_of(a)) == 4
        assert all(m.groups == 1 and m.in_channels == m.out_channels == 64 and m.padding == (k // 2, k // 2)
                   for m in convs_of(a))
        assert measured[a.name] == (4 * 2 * k * k * 64 * 64 * h * h, 4 * 4 * (2 * 64 * h * h + k * k * 64 * 64))
    assert {f for f, _ in measured.values()} == {4 * 2 * 64 * 64 * 105 * 105}  # k h = 105 for every k
    three = design.arms[1].name
    # RepVGG §2.4 (V2): 3x3's density is around 4x the others': each other kernel ~4x the time per FLOP
    assert [(e.a, e.b, e.paper_ratio) for e in design.expectations] == \
        [(a.name, three, 4.0) for a in design.arms if a.name != three]
    tflops = next(v for column, v in design.paper.items() if "U" in column)
    assert tflops == {design.arms[0].name: 9.96, three: 38.10, design.arms[3].name: 9.38}  # Table 1, U: shown only
    assert [a.input_shape[:2] for a in STUDIES["kernel-density"].design(GPU).arms] == [(32, 256)] * 4


@pytest.mark.parametrize("isa,judged", [(["avx2", "fma", "avx512f"], {62, 66, 56, 126}),
                                        (["avx", "avx2", "fma"], {62, 66, 126}),
                                        (["asimd"], {62, 66, 126})])
def test_channel_align_pairs_aligned_and_misaligned_counts_at_equal_flops(monkeypatch, isa, judged):
    monkeypatch.setattr(convs, "cpu_info", lambda: {"isa": isa})
    design = STUDIES["channel-align"].design(CPU)
    arms = {a.name: a for a in design.arms}
    measured = costs(design)
    for e in design.expectations:
        slow, fast = arms[e.a], arms[e.b]
        assert e.paper_ratio is None and e.expects_slower  # the misaligned count is the slower
        assert slow.input_shape[1] % 8 and not fast.input_shape[1] % 16 or slow.input_shape[1] == 56
        assert slow.input_shape[1] * slow.input_shape[2] == fast.input_shape[1] * fast.input_shape[2]
        assert measured[e.a][0] == measured[e.b][0]  # equal FLOPs: c x side equal in a pair
        layers = len(convs_of(slow))
        assert layers == len(convs_of(fast)) and all(m.kernel_size == (3, 3) for m in convs_of(slow))
        c, h = slow.input_shape[1], slow.input_shape[2]
        assert measured[e.a] == (layers * 2 * 9 * c * c * h * h, layers * 4 * (2 * c * h * h + 9 * c * c))
    assert {arms[e.a].input_shape[1] for e in design.expectations} == judged
    assert len(design.arms) == 2 * len(judged) <= 8
    # tensor cores want multiples of 8: 56 is one, so that pair is neither judged nor timed there
    gpu = STUDIES["channel-align"].design(GPU)
    assert {a.input_shape[1] for a in gpu.arms} == {64, 62, 66, 128, 126}
    assert any("TF32" in note for note in gpu.notes)


def test_early_sep_pairs_a_regular_conv_with_a_separable_pair_of_the_same_channels():
    design = STUDIES["early-sep"].design(CPU)
    measured = costs(design)
    assert len(design.arms) == 8
    for regular, separable in zip(design.arms[::2], design.arms[1::2]):
        assert regular.input_shape == separable.input_shape
        _, c, h, w = regular.input_shape
        assert (c, h) in {(16, 112), (32, 112), (32, 56), (64, 56)}
        assert all(m.kernel_size == (3, 3) and m.groups == 1 and m.out_channels == c for m in convs_of(regular))
        kinds = [(m.kernel_size[0], m.groups) for m in convs_of(separable)]
        assert kinds == [(3, c), (1, 1)] * 10  # a depthwise 3x3 then a pointwise 1x1, ten times
        flops_regular, bytes_regular = measured[regular.name]
        flops_separable, bytes_separable = measured[separable.name]
        assert flops_regular == 10 * 2 * 9 * c * c * h * w
        assert flops_separable == 10 * 2 * (9 * c + c * c) * h * w
        assert flops_regular * (9 + c) == flops_separable * 9 * c  # the ratio 9c / (9 + c) exactly
        assert bytes_regular == 10 * 4 * (2 * c * h * w + 9 * c * c)
        assert bytes_separable == 10 * 4 * ((2 * c * h * w + 9 * c) + (2 * c * h * w + c * c))  # two kernels
    # the claim on an accelerator: the regular conv faster; on a CPU it predicts the separable pair faster
    assert [(e.a, e.b) for e in design.expectations] == [(r.name, s.name) for r, s in
                                                          zip(design.arms[::2], design.arms[1::2])]
    assert all(e.expects_slower for e in design.expectations)
    assert not any(e.expects_slower for e in STUDIES["early-sep"].design(GPU).expectations)


@pytest.mark.parametrize("name", NAMES)
def test_every_conv_study_compares_its_own_arms(name, no_calibration):
    registered = STUDIES[name]
    assert registered.claim and registered.source and registered.devices == ("cpu", "cuda")
    for settings in (CPU, GPU):
        design = registered.design(settings)
        names = [a.name for a in design.arms]
        assert len(set(names)) == len(names) <= 8 and design.expectations
        for e in design.expectations:
            assert {e.a, e.b} <= set(names)
        for column in design.paper.values():
            assert set(column) <= set(names)


def test_kernel_density_runs_for_real_within_seconds(no_calibration):
    result = run_study("kernel-density", threads=1, quick=True, budget_s=4)
    data = result.to_dict()
    assert data["study"] == "kernel-density" and len(data["arms"]) == 4
    assert {a["flops"] for a in data["arms"]} == {4 * 2 * 64 * 64 * 105 * 105}
    assert all(a["samples"] >= MIN_ROUNDS and a["median_ms"] > 0 for a in data["arms"])
    assert [c["paper_ratio"] for c in data["comparisons"]] == [4.0] * 3
    assert {c["verdict"] for c in data["comparisons"]} | {data["verdict"]} <= {BORNE_OUT, CONTRADICTED, INCONCLUSIVE}
    assert all(c["ci_low"] <= c["ratio"] <= c["ci_high"] for c in data["comparisons"])
    assert any("(cpu, torch, fp32, 1 threads)" in note for note in data["notes"])

"""The calibration: its cases, runner, time budget and fits, the typed profile it makes
(JSON, migration), and real calibrations of both backends, cut to seconds."""

from __future__ import annotations

import copy
import math
from dataclasses import astuple, replace

import pytest
import torch
import torch.nn as nn
from calibrations import TWO_STYLES, fake_profile, steady

from deploylens import UserError, analyze
from deploylens.calibration import run
from deploylens.calibration import cases as case_set
from deploylens.calibration.budget import (
    DERIVE_PER_ANALYSIS,
    DERIVE_S,
    FLOOR_S,
    NETWORK,
    NETWORK_SHARE,
    QUICK,
    SETTINGS,
    SLACK_S,
    Budget,
    budgeted,
    slack,
)
from deploylens.calibration.cases import blocked_layout, cases, conv_relu_onnx, runtime_cases
from deploylens.calibration.fit import boundary_times, combine, compute_ceiling, context_fit, fit_context, overheads
from deploylens.calibration.networks import BATCHES, STYLES, label, synthetic_network
from deploylens.calibration.sessions import boundary_reorder_bytes, case_runner, launch_per_op, launch_seconds
from deploylens.hardware.calibration_profile import Bounds, CalibrationPoint, CalibrationProfile, Overheads, Probe
from deploylens.hardware.kernel_classes import channel_alignment, conv_geometry
from deploylens.predict import predict_profile



def conv_unit(c: int = 16) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()).eval()


def points_of(profile: CalibrationProfile) -> list[CalibrationPoint]:
    return [p for points in profile.points.values() for p in points]


# -- the calibration set ------------------------------------------------------------------

def test_calibration_cases_span_every_channel_alignment():
    made = cases(lanes=16)
    levels = {channel_alignment(g["c_in"], g["c_out"], g["groups"], 16) for g in (c.geometry for c in made) if g}
    assert levels == {0, 1, 2}
    assert len(cases(lanes=1)) < len(made)  # no misaligned grid without SIMD


def test_calibration_cases_add_batched_convs():
    gpu, cpu = cases(SETTINGS["cuda"], 8), cases(SETTINGS["cpu"], 16)
    for made in (gpu, cpu):
        assert len({c.label for c in made}) == len(made)  # labels key the timings
    assert {c.shapes[0][0] for c in cpu} == {1, 8} and {c.shapes[0][0] for c in gpu} == {1, 16}
    (big,) = [c for c in gpu if c.label == "conv3x3 128->128 g1 s1 @56 b16"]  # 14.8 GFLOP
    assert big.geometry["pixels"] == 16 * 56 * 56  # the batch is part of the GEMM's M dimension
    labels = {c.label for c in cpu}
    # on a CPU, batch 8 for dense and pointwise convs of outputs 14 wide or more, and 1x1 maps
    assert {"conv3x3 64->64 g1 s1 @56 b8", "conv1x1 64->64 g1 s1 @14 b8", "conv1x1 64->16 g1 s1 @1 b8"} <= labels
    assert "conv3x3 64->64 g1 s1 @7 b1" in labels and "conv3x3 64->64 g1 s1 @7 b8" not in labels
    assert "conv3x3 96->96 g96 s1 @56 b1" in labels and "conv3x3 96->96 g96 s1 @56 b8" not in labels
    # and within the FLOP limit: 3.7 GFLOP at batch 1, 29.6 at batch 8
    assert "conv3x3 128->128 g1 s1 @112 b1" in labels and "conv3x3 128->128 g1 s1 @112 b8" not in labels
    # the strided pointwise and the 1x1 depthwise convs of shortcuts and MobileOne's branches
    assert {"conv1x1 64->128 g1 s2 @56 b1", "conv1x1 96->96 g96 s1 @56 b1"} <= labels


def test_built_conv_case_graph_is_what_the_exporter_makes(tmp_path):
    import numpy as np
    import onnx
    import onnxruntime as ort

    from deploylens.onnx_runtime import export_for_runtime

    geometry = conv_geometry(8, 16, 2, 3, 2, 5 * 5)
    built = onnx.load_from_string(conv_relu_onnx(geometry, (2, 8, 10, 10)))  # batch 2
    model = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1, groups=2, bias=False), nn.BatchNorm2d(16), nn.ReLU()).eval()
    export_for_runtime(model, [torch.randn(1, 8, 10, 10)], tmp_path / "case.onnx")
    exported = onnx.load(str(tmp_path / "case.onnx"))
    assert [n.op_type for n in built.graph.node] == [n.op_type for n in exported.graph.node] == ["Conv", "Relu"]

    def attributes(node) -> dict:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute if a.name != "dilations"}

    assert attributes(built.graph.node[0]) == attributes(exported.graph.node[0]) == {
        "group": 2, "kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}
    (out,) = ort.InferenceSession(built.SerializeToString()).run(None, {"input0": np.ones((2, 8, 10, 10), np.float32)})
    assert out.shape == (2, 16, 5, 5) and out.min() >= 0


def test_runtime_cases_run_the_nodes_they_calibrate(tmp_path):
    import onnx

    made = {case.label: case for case in runtime_cases()}
    # reorders at both batch sizes, at channel counts padded to whole blocks too
    if blocked_layout():
        assert {"reorder 24@112 b1", "reorder 24@112 b8", "reorder 512@7 b8"} <= set(made)
        assert made["reorder 24@112 b8"].cost == (0, 16 * 8 * 24 * 112 * 112, 2)
    for name, node, cost in (("slice 8192 b8", "Slice", (0, 8 * 8 * 8192, 1)), ("silu 8192 b1", "QuickGelu", None)):
        case = made[name]
        optimized = str(tmp_path / f"{node}.onnx")
        case_runner("onnxruntime", case.build().eval(), [torch.randn(s) for s in case.shapes], 1, str(tmp_path),
                    optimized=optimized)
        assert [n.op_type for n in onnx.load(optimized).graph.node] == [node]
        assert case.cost == cost
    assert "slice 8388608 b1" not in made  # its 2**24-element input is past the limit


def test_synthetic_networks_hold_the_block_types_they_stand_for():
    """Concatenation where the field's networks concatenate (SqueezeNet's fire, GhostNet,
    VoVNet, DenseNet, ShuffleNet), residual adds only in the residual styles."""
    concatenating = {"split_shuffle", "fire", "ghost", "aggregation", "dense_growth"}
    residual = {"inverted_residual", "residual", "squeeze_excite", "bottleneck", "ghost"}
    assert len(STYLES) == 11
    for style in STYLES:
        network = synthetic_network(style).eval()
        ops = {layer.native for layer in analyze(network, (1, 3, 64, 64)).layers}
        assert ("aten.cat" in ops) == (style in concatenating), style
        assert ("aten.add" in ops) == (style in residual), style
        assert network(torch.randn(1, 3, 64, 64)).shape == (1, 100)
    assert label("fire", 8) == "fire batch 8"
    with pytest.raises(ValueError, match="unknown synthetic network style"):
        synthetic_network("transformer")


# -- running the cases ----------------------------------------------------------------------

def test_onnxruntime_case_runner_writes_into_bound_buffers(tmp_path):
    import numpy as np
    import onnxruntime as ort

    graph = conv_relu_onnx(conv_geometry(4, 8, 1, 3, 1, 36), (1, 4, 6, 6))
    runner = case_runner("onnxruntime", None, [torch.randn(1, 4, 6, 6)], 1, str(tmp_path), graph)
    arrays, _ = runner()
    arrays[0][:] = np.random.default_rng(1).standard_normal((1, 4, 6, 6))  # a new input in the bound buffer
    runner()  # writes its output into the bound output buffer
    (expected,) = ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, {"input0": arrays[0]})
    assert arrays[-1].shape == (1, 8, 6, 6) and np.allclose(arrays[-1], expected, atol=1e-5) and expected.any()


def test_launch_seconds_time_calls_launched_back_to_back(monkeypatch):
    from deploylens.calibration import sessions

    events: list[str] = []
    block_means = iter([0.002, 0.003, 0.001, 0.005, 0.0025])  # the warm-up block is not timed
    clock = [0.0]

    def fake_clock():  # read at a block's start and end: its three calls took 3 x its mean
        if events[-1] == "run":
            clock[0] += 3 * next(block_means)
        return clock[0]

    monkeypatch.setattr(sessions.time, "perf_counter", fake_clock)
    seconds = launch_seconds(lambda: events.append("run"), lambda: events.append("sync"), calls=3, blocks=5)
    assert seconds == pytest.approx(0.0025)  # the median of the five timed blocks' means
    # a sync before each block, the block's calls back to back; a last sync leaves the device idle
    assert events == (["sync"] + ["run"] * 3) * 6 + ["sync"]


def test_launch_per_op_takes_out_the_call_and_keeps_an_elementwise_launch():
    fixed = Overheads(kernel=8e-6, call=12e-6)  # as run.calibrate passes them
    # a conv-BN-ReLU case (3 ops) whose call took 72 us: (72 - 12) / 3 = 20 us per op
    assert launch_per_op(72e-6, 3, fixed) == pytest.approx(20e-6)
    # a call quicker than the call overhead plus its ops' launches: the element-wise floor
    assert launch_per_op(14e-6, 2, fixed) == pytest.approx(8e-6)


# -- the time budget ------------------------------------------------------------------------

def test_budgeted_rounds_share_the_seconds_left():
    rule = QUICK  # 20 ms to 100 ms per case
    assert budgeted(rule, 100.0, 500) is rule  # 200 ms each: the usual cap
    tight = budgeted(rule, 20.0, 500)  # 40 ms each
    assert (tight.min_time, tight.max_time) == (pytest.approx(0.02), pytest.approx(0.04))
    late = budgeted(rule, -3.0, 10)  # past the deadline: the 10 ms floor
    assert (late.min_time, late.max_time) == (0.01, 0.01) and late.ci_target == rule.ci_target


def test_the_budget_leaves_time_for_the_networks_to_come_and_each_rounds_fixed_cost():
    # 100 s of timing (the deadline less the derived figures' time), 2 network rounds and 10 case rounds
    budget = Budget(deadline=100.0 + DERIVE_S, case_rounds=10, network_rounds=2)
    assert budget.end == 100.0
    assert budget.network_rule("plain batch 1", now=0.0) is NETWORK
    budget.spent(network=True, seconds=20.0, cap=NETWORK.max_time, name="plain batch 1")  # 20 s, one to come
    rule = budget.case_rule(first_round=True, now=20.0)  # 80 s - 20 s (a network) = 60 s for 10 cases
    assert rule is QUICK  # 6 s each: the usual 100 ms cap
    budget.spent(network=False, seconds=3.0, cap=rule.max_time)  # the first: the process's start, not counted
    assert budget.case_rule(first_round=True, now=23.0) is QUICK
    budget.spent(network=False, seconds=5.1, cap=rule.max_time)  # 5 s beyond its cap: building a session
    # 100 - 28.1 - 20 (a network) - 8 x 5 (beyond the cap) = 11.9 s for 8 rounds: 1.5 s each
    assert budget.case_rule(first_round=False, now=28.1) is QUICK
    budget.spent(network=False, seconds=5.0, cap=0.1)  # 2 rounds, 9.9 s beyond their caps: 4.95 each
    # 100 - 90 - 20 - 7 x 4.95 < 0: a later round is skipped; a first one still fits (10 s > 4.95 s)
    assert budget.case_rule(first_round=False, now=90.0) is None
    assert budget.case_rule(first_round=True, now=90.0).max_time == FLOOR_S
    # 4 s left, a round costs 4.95 s: a first round is skipped too, unless it is the minimum viable calibration's
    assert budget.case_rule(first_round=True, now=96.0) is None
    assert budget.case_rule(first_round=True, now=96.0, essential=True).max_time == FLOOR_S
    # a network round that does not fit the time left (its last one took 20 s) is skipped, and
    # one that would take the networks past NETWORK_SHARE of the budget (20 + 20 s of 101 s)
    assert budget.network_rule("plain batch 1", now=85.0) is None
    assert budget.network_rule("residual batch 1", now=0.0) is None and 20.0 < NETWORK_SHARE * 101 < 40.0
    # each synthetic network analysed adds to the time kept for the fit, in the share of
    # the cases timed so far (4 first rounds of 10)
    budget.analysed(0.5)
    assert budget.end == pytest.approx(100.0 - DERIVE_PER_ANALYSIS * 0.5 * 0.4)
    # a budget of seconds from a start; None: no deadline and nothing kept aside
    assert Budget.of(10.0, 8.0, 1, 1).end == pytest.approx(10.0 + 8.0 - DERIVE_S)
    assert Budget.of(10.0, None, 1, 1).case_rule(first_round=False, now=1e9) is QUICK
    assert slack(60.0) == pytest.approx(SLACK_S + 3.0)


# -- calibrations with every measurement faked: the runner's orchestration -----------------

@pytest.fixture
def few_cases(monkeypatch):
    """The calibration set cut to the first two cases of each class: these tests check
    how cases are timed, not the cases (the real calibrations below run them all)."""
    def first_two(made: list) -> list:
        kept: list = []
        for case in made:
            if sum(1 for c in kept if c.kernel_class == case.kernel_class) < 2:
                kept.append(case)
        return kept

    monkeypatch.setattr(run, "cases", lambda setting, lanes: first_two(case_set.cases(setting, lanes)))
    monkeypatch.setattr(run, "runtime_cases", lambda setting: first_two(case_set.runtime_cases(setting)))


def fake_measures(monkeypatch) -> list[tuple]:
    """Makes the calibration's every measurement 1 ms; returns the (run, rule) of each."""
    calls: list[tuple] = []

    def fake_measure(runner, rule, sync, probe):
        calls.append((runner, rule))
        return steady(1e-3)

    monkeypatch.setattr(run, "measure", fake_measure)
    return calls


def test_a_calibration_past_its_budget_keeps_the_minimum_viable_calibration(monkeypatch, few_cases):
    calls = fake_measures(monkeypatch)
    # 1 ms, less than the time kept for the derived figures: past the deadline from the start
    profile = run.calibrate("torch", threads=1, max_flops=1e6, rounds=3, budget_s=0.001, styles=TWO_STYLES)
    assert profile.budget_s == 0.001 and profile.rounds == 3
    rules = [rule for _, rule in calls]
    # the minimum viable calibration only: the overheads and one case of each kernel class,
    # once each at the 10 ms floor; no synthetic network, no later round
    assert NETWORK not in rules and {r.max_time for r in rules} == {FLOOR_S}
    assert len(rules) == len(points_of(profile)) + 3
    assert {klass for klass, points in profile.points.items() if points} == {
        c.kernel_class for c in run.cases(SETTINGS["cpu"], 16)}
    assert all(len(points) <= 1 for points in profile.points.values())
    # the rest is listed, and noted; the whole-network factor stays 1 without networks
    assert {label(s, b) for s in TWO_STYLES for b in BATCHES} <= set(profile.skipped)
    assert len(profile.skipped) == len(run.cases(SETTINGS["cpu"], 16)) - len(points_of(profile)) + 4
    assert profile.notes[-1].startswith("partial calibration: its 0.001 s budget ran out before")
    assert profile.context_factor == {"1": 1.0, "8": 1.0}
    prediction = predict_profile(analyze(conv_unit(), [(1, 16, 8, 8)]), profile)
    assert prediction.totals["latency_ms"] > 0


def test_the_minimum_viable_calibration_is_one_middle_case_per_class():
    made = cases(replace(SETTINGS["cpu"], max_flops=1e8), 16)
    picked = run.essentials(made)
    by_label = {c.label: c for c in made}
    assert [by_label[name].kernel_class for name in picked] == list(dict.fromkeys(c.kernel_class for c in made))
    assert all(by_label[name].shapes[0][0] == 1 for name in picked)  # batch 1
    # spread: a prefix of the order covers the whole list, not its first part
    order = run._spread([str(i) for i in range(100)])
    assert sorted(order, key=int) == [str(i) for i in range(100)] and max(map(int, order[:10])) > 80


def test_the_budget_is_a_parameter_recorded_in_the_profile(monkeypatch, few_cases):
    from types import SimpleNamespace

    clock, rules = [0.0], []
    monkeypatch.setattr(run, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def busy_measure(runner, rule, sync, probe):  # a busy host: every round runs to its time cap
        rules.append(rule)
        clock[0] += rule.max_time
        return steady(1e-3)

    monkeypatch.setattr(run, "measure", busy_measure)

    def calibrate(budget_s):
        rules.clear()
        began = clock[0]
        profile = run.calibrate("torch", threads=1, max_flops=1e6, rounds=1, budget_s=budget_s, styles=("plain",))
        return profile, [rule for rule in rules if rule is not NETWORK], clock[0] - began

    unbounded, case_rules, seconds = calibrate(math.inf)
    assert unbounded.budget_s is None and set(case_rules) == {QUICK} and unbounded.skipped == []
    assert seconds == pytest.approx(2 * NETWORK.max_time + len(case_rules) * QUICK.max_time)
    # 1 s beyond the time kept for the derived figures: every round charged to it (the
    # networks' too), the case rounds in equal shares of what is left; the timing ends in time
    small, case_rules, seconds = calibrate(DERIVE_S + 1.0)
    assert small.budget_s == DERIVE_S + 1.0 and seconds <= 1.0 + FLOOR_S
    assert rules.count(NETWORK) == 2 and all(FLOOR_S <= r.max_time < QUICK.max_time for r in case_rules)
    assert len(case_rules) == len(points_of(small)) + 3
    assert calibrate(None)[0].budget_s == SETTINGS["cpu"].budget_s == 105.0  # the device's
    for budget_s in (0, -1.0, math.nan):
        with pytest.raises(UserError, match="time budget must be positive"):
            run.calibrate("torch", threads=1, budget_s=budget_s)
    with pytest.raises(UserError, match="unknown synthetic network transformer"):
        run.calibrate("torch", threads=1, styles=("plain", "transformer"))


def test_a_round_past_the_end_of_the_budget_stops_at_its_next_call(monkeypatch, few_cases):
    from types import SimpleNamespace

    clock = [0.0]
    monkeypatch.setattr(run, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def slow_measure(runner, rule, sync, probe):  # each call 2 s: far longer than any cap
        for _ in range(5):
            clock[0] += 2.0
            runner()
        return steady(2.0)

    monkeypatch.setattr(run, "measure", slow_measure)
    profile = run.calibrate("torch", threads=1, max_flops=1e6, rounds=1, budget_s=DERIVE_S + 5.0, styles=("plain",))
    # the minimum viable calibration ran whole; every other round stopped at the end or was skipped
    assert len(points_of(profile)) == len(run.essentials(run.cases(SETTINGS["cpu"], 16)))
    assert set(profile.fixed_s) == {"overhead call", "overhead chain", "overhead view"}


def test_onnxruntime_calibration_runs_each_case_back_to_back(monkeypatch, few_cases):
    from deploylens.calibration import fit

    calls = fake_measures(monkeypatch)

    def export_again(*args, **kwargs):
        raise AssertionError("the whole-network fit exported a synthetic network again")
    # the fit reads the kernels ONNX Runtime adds from the graphs the networks' sessions saved
    monkeypatch.setattr(fit, "added_kernels", export_again)
    profile = run.calibrate("onnxruntime", threads=1, max_flops=1e6, rounds=2, styles=TWO_STYLES)
    seen = [runner for runner, _ in calls]
    # a session's rounds in a row (the session is dropped after them), one session per case
    assert all(seen[i] is seen[i + 1] for i in range(0, len(seen), 2))
    assert len({id(runner) for runner in seen}) == len(seen) // 2
    networks = 2 * len(TWO_STYLES) * len(BATCHES)
    essential = 2 * (2 + len(run.essentials(run.cases(SETTINGS["cpu"], 16) + run.runtime_cases(SETTINGS["cpu"]))))
    # the minimum viable calibration, then the synthetic networks, then the other cases
    assert NETWORK not in {rule for _, rule in calls[:essential]}
    assert all(rule is NETWORK for _, rule in calls[essential:essential + networks])
    assert NETWORK not in {rule for _, rule in calls[essential + networks:]}
    assert set(profile.context_factor) == {"1", "8"}


def test_calibration_keeps_each_case_quietest_round(monkeypatch, few_cases):
    seen: list = []

    def fake_measure(runner, rule, sync, probe):
        # the second of three rounds is the quiet one for every case (no probe readings)
        seconds = (2e-3, 1e-3, 3e-3)[sum(1 for r in seen if r is runner)]
        seen.append(runner)
        return steady(seconds)

    monkeypatch.setattr(run, "measure", fake_measure)
    profile = run.calibrate("torch", threads=1, max_flops=1e6, rounds=3, styles=TWO_STYLES)
    assert {p.seconds for p in points_of(profile)} == {1e-3} and profile.rounds == 3
    # one op and a chain of 16 both took 1 ms: no per-kernel overhead, 1 ms per call
    assert profile.overhead_s.kernel == 0.0 and profile.overhead_s.call == 1e-3
    networks = len(TWO_STYLES) * len(BATCHES)  # every synthetic network at batch 1 and 8
    assert len(seen) == 3 * (len(points_of(profile)) + 3 + networks)  # cases, three overheads, the networks
    # round-robin: the first round measures every case before the second begins
    assert len(set(map(id, seen[: len(seen) // 3]))) == len(seen) // 3
    with pytest.raises(UserError, match="at least one round"):
        run.calibrate("torch", threads=1, max_flops=1e6, rounds=0)


def test_calibration_adjusts_busy_samples_and_times_networks_longer(monkeypatch, few_cases):
    from deploylens.bench.stats import Timing, summarize

    busy_ms = 4 ** 0.45  # a sample slowed as the default exponent says when the probe reads 4x its level
    rules = []

    def fake_measure(runner, rule, sync, probe):
        # every round: three samples of 1 ms while the probe read 0.25 ms (quiet) and three
        # of 4^0.45 ms while it read 1 ms (a neighbour busy)
        samples, readings = [1e-3] * 3 + [busy_ms * 1e-3] * 3, [0.25e-3] * 3 + [1e-3] * 3
        probe.readings.extend(readings)
        rules.append(rule)
        return Timing(samples, 1, 6, 2, "max_time", summarize(samples), [], readings)

    monkeypatch.setattr(run, "measure", fake_measure)
    profile = run.calibrate("torch", threads=1, max_flops=1e6, rounds=2, styles=("plain",))
    cases_timed = len(points_of(profile))
    assert [p.seconds for p in points_of(profile)] == pytest.approx([1e-3] * cases_timed)
    assert profile.probe == Probe(pytest.approx(0.25e-3), 0.1, 1.0, 0.45)
    # the synthetic network at two batch sizes, in both rounds, with the longer rule
    assert rules.count(NETWORK) == 2 * 1 * len(BATCHES)
    assert NETWORK.min_time > QUICK.max_time

    # a calibration in a busy spell throughout, against the level known from an earlier one
    def busy_measure(runner, rule, sync, probe):
        samples, readings = [2e-3] * 6, [1e-3] * 6
        probe.readings.extend(readings)
        return Timing(samples, 1, 6, 2, "max_time", summarize(samples), [], readings)

    monkeypatch.setattr(run, "measure", busy_measure)
    busy = run.calibrate("torch", threads=1, max_flops=1e6, rounds=1, probe_level=0.25e-3, styles=("plain",))
    # 2 ms x (1/4) ^ 0.45, none of its cases quiet
    assert busy.probe.quiet_share == 0.0 and busy.probe.level_s == 0.25e-3
    assert [p.seconds for p in points_of(busy)] == pytest.approx([2e-3 * 0.25 ** 0.45] * cases_timed)


# -- the figures derived from the timings ---------------------------------------------------

def test_overheads_split_per_kernel_and_per_call():
    # one op 16 us, sixteen ops 31 us: 1 us per extra kernel, 15 us per call
    seconds = {"overhead call": 16e-6, "overhead chain": 31e-6, "overhead view": 2e-6}
    # a CPU point's time holds a kernel's and a call's overhead; a CUDA graph replay's none
    assert astuple(overheads(seconds, "cpu")) == pytest.approx((1e-6, 15e-6, 2e-6, 16e-6))
    del seconds["overhead view"]  # a runtime's graph has no view ops
    assert astuple(overheads(seconds, "cuda")) == pytest.approx((1e-6, 15e-6, 0.0, 0.0))
    # a chain no slower than one op: no per-kernel overhead, all of it the call's
    assert astuple(overheads({"overhead call": 16e-6, "overhead chain": 15e-6}, "cpu")) == \
        pytest.approx((0.0, 16e-6, 0.0, 16e-6))


def test_compute_ceiling_is_the_isa_peak_or_the_fastest_case():
    # the fake points run 1e8 FLOPs in 1 ms: 100 GFLOP/s
    assert compute_ceiling(fake_profile(isa_peak_flops=8e10)) == 1e11  # turbo beat the ISA
    assert compute_ceiling(fake_profile(isa_peak_flops=3e11)) == 3e11
    assert compute_ceiling(fake_profile(isa_peak_flops=None)) == 1e11
    assert compute_ceiling(fake_profile(device="cuda")) is None
    # never above the physical bound
    assert compute_ceiling(fake_profile(isa_peak_flops=3e11, bounds=Bounds(2e11, 1e12, 1e11, 10**5))) == 2e11


def test_rates_faster_than_the_physical_bounds_are_capped_and_noted():
    # compute points 100 GFLOP/s against a 50 GFLOP/s bound; memory points move 1 MB (beyond
    # a 100 kB L1) at 10 GB/s against 5 GB/s, except the copy's, within the bound
    profile = fake_profile(bounds=Bounds(5e10, 1e12, 5e9, 10**5, "1 core x 1 GHz x 50"))
    profile.points["copy"][0].seconds = 1e-3  # 1 GB/s
    notes = run.capped(profile)
    dense = profile.points["conv_dense"][0]
    assert dense.seconds == pytest.approx(2e-3) and dense.measured_s == 1e-3  # 50 GFLOP/s, the timing kept
    assert profile.points["elementwise"][0].seconds == pytest.approx(2e-4)
    assert profile.points["copy"][0].seconds == 1e-3 and profile.points["copy"][0].measured_s is None
    assert len(notes) == len([k for k, points in profile.points.items() if points]) - 1
    assert "conv_dense: 1 of 1 points timed faster than the physical bound, capped at it: p at 100 GFLOP/s " \
           "against 50 GFLOP/s (1 core x 1 GHz x 50)" in notes
    assert run.capped(profile) == []  # capped once: nothing faster is left
    assert run.capped(fake_profile()) == []  # no bounds (a GPU): nothing capped
    # within L1 the looser bound holds: 1 MB in 0.1 ms is 10 GB/s, under 1 TB/s
    in_l1 = fake_profile(bounds=Bounds(5e11, 1e12, 5e9, 10**7))
    assert run.capped(in_l1) == []


def test_a_busy_probe_reading_adjusts_a_sample_at_most_so_far():
    from deploylens.bench.interference import InterferenceProbe
    from deploylens.bench.stats import Timing, summarize

    probe = InterferenceProbe(workload=lambda: None)
    probe.readings = [1e-4] * 20  # its quiet level: 0.1 ms
    # a descheduled probe thread: readings 400x the level beside samples of 1 ms
    samples, readings = [1e-3] * 5, [4e-2] * 5
    timing = Timing(samples, 1, 5, 2, "max_time", summarize(samples), [], readings)
    seconds, _ = run._seconds({"case": [timing]}, probe)
    # counted as MAX_PROBE_RATIO (4) times the level: x 4 ^ -0.45, not x 400 ^ -0.45
    assert seconds["case"] == pytest.approx(1e-3 * run.MAX_PROBE_RATIO ** -0.45)
    moderate = Timing(samples, 1, 5, 2, "max_time", summarize(samples), [], [2e-4] * 5)  # 2x: as it was
    assert run._seconds({"case": [moderate]}, probe)[0]["case"] == pytest.approx(1e-3 * 2 ** -0.45)


def test_conv_cases_lose_the_reorders_onnxruntime_ran_around_them(tmp_path):
    import onnxruntime as ort

    if not blocked_layout():
        pytest.skip("ONNX Runtime runs no channel-blocked (NCHWc) layout on this CPU")
    geometry = conv_geometry(16, 16, 1, 1, 1, 8 * 8)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(conv_relu_onnx(geometry, (1, 16, 8, 8)), options, providers=["CPUExecutionProvider"])
    # into the blocked layout and out of it: 16x8x8 float32 elements each, read and written
    assert boundary_reorder_bytes(options.optimized_model_filepath,
                                  {"input0": 1024, "output": 1024, "conv": 1024}) == 2 * (2 * 4 * 1024)
    # a point's boundary time is taken out of its time: 1 ms with 0.5 ms of reorders is a 2x rate
    profile = fake_profile(backend="onnxruntime")
    analysis = analyze(conv_unit(), (1, 16, 32, 32))
    (plain,) = predict_profile(analysis, profile, "onnxruntime").kernels
    point = profile.points["conv_pointwise"][0]
    point.boundary_s = 0.5e-3
    (freed,) = predict_profile(analysis, profile, "onnxruntime").kernels
    assert freed.compute_ms == pytest.approx(plain.compute_ms / 2)
    # and the calibration derives it from the batch-1 reorder points of its channel alignment:
    # 4096 bytes at their rate (not at the 8x slower rate of the batch-8 point or the 4x
    # slower one of 24 channels, of the same size), for a batch-8 case too
    point.reorder_bytes, point.boundary_s, point.input_shape = 4096, 0.0, [8, 16, 4, 4]
    profile.points["reorder"] = [
        CalibrationPoint(f"r{i}", 0, 4096, seconds, shape)
        for i, (seconds, shape) in enumerate(((2e-6, [1, 32, 2, 2]), (16e-6, [8, 16, 4, 4]), (8e-6, [1, 24, 4, 4])))]
    boundary_times(profile)
    assert point.boundary_s == pytest.approx(2e-6)
    assert all(p.boundary_s == 0.0 for p in points_of(profile) if p is not point)  # no reorders: nothing taken out


def test_whole_network_fit_by_hand():
    # measured = 2 x predicted + 10 us per kernel, exactly: both recovered
    networks = [(2 * p + 10e-6 * n, p, n) for p, n in ((5e-3, 30), (3e-3, 50), (8e-3, 15), (4e-3, 40))]
    factor, per_kernel = fit_context(networks)
    assert factor == pytest.approx(2.0) and per_kernel == pytest.approx(10e-6)
    # the factor alone: when asked, or when the per-kernel term would be negative
    assert fit_context(networks, per_kernel=False)[1] == 0.0
    shrinking = [(2 * p - 1e-6 * n, p, n) for p, n in ((5e-3, 30), (3e-3, 50), (8e-3, 15))]
    assert fit_context(shrinking)[1] == 0.0
    assert fit_context([(2 * p, p, n) for p, n in ((5e-3, 30), (3e-3, 50))]) == pytest.approx((2.0, 0.0))


def network_totals(profile: CalibrationProfile, styles, backend: str) -> dict[str, dict]:
    """Each network's prediction from ``profile`` without a whole-network factor."""
    bare = replace(profile, context_factor={})
    return {style: predict_profile(analyze(synthetic_network(style).eval(), (1, 3, 224, 224)), bare, backend).totals
            for style in styles}


def test_the_whole_network_fit_takes_the_networks_a_profile_timed():
    # a profile lacking some networks' timings (as one edited by hand) fits on the others:
    # here the prediction is linear in the factor, so the first round's fit is the result
    measured = {"plain": 5e-3, "residual": 4e-3}
    profile = fake_profile(fixed_s={label(style, 1): seconds for style, seconds in measured.items()})
    totals = network_totals(profile, measured, "torch")
    expected = fit_context([(seconds, totals[style]["latency_ms"] / 1e3, totals[style]["kernels"])
                            for style, seconds in measured.items()])
    assert expected[0] != pytest.approx(1.0)  # the fit has something to correct
    assert context_fit(profile, 1) == pytest.approx(expected, rel=1e-6)


def test_the_whole_network_fit_takes_the_added_kernels_it_is_given(monkeypatch):
    from deploylens.calibration import fit

    def export_again(*args, **kwargs):
        raise AssertionError("exported a synthetic network again")
    monkeypatch.setattr(fit, "added_kernels", export_again)
    # ONNX Runtime on a CPU without the blocked layout adds no kernel to a network: an empty
    # list read at timing is an answer, not a reason to export the network again
    measured = {"plain": 5e-3, "residual": 4e-3}
    profile = fake_profile(backend="onnxruntime",
                           fixed_s={label(style, 1): seconds for style, seconds in measured.items()})
    totals = network_totals(profile, measured, "onnxruntime")
    expected = fit_context([(seconds, totals[style]["latency_ms"] / 1e3, totals[style]["kernels"])
                            for style, seconds in measured.items()])
    none_added = {name: [] for name in profile.fixed_s}
    assert context_fit(profile, 1, added=none_added) == pytest.approx(expected, rel=1e-6)


def test_combine_takes_the_median_of_every_timing_and_derives_again():
    fixed = {"overhead call": 16e-6, "overhead chain": 31e-6, "overhead view": 2e-6,
             **{label(style, b): 0.01 for style in TWO_STYLES for b in BATCHES}}
    first = fake_profile(rounds=3, fixed_s=fixed)
    second, third = copy.deepcopy(first), copy.deepcopy(first)
    second.points["conv_dense"][0].seconds = 0.5e-3  # first 1 ms
    third.points["conv_dense"][0].seconds = 4e-3
    second.fixed_s["overhead call"], third.fixed_s["overhead call"] = 11e-6, 12e-6
    two = combine(first, second)
    assert two.points["conv_dense"][0].seconds == pytest.approx(0.75e-3)  # the median of two: their mean
    merged = combine(two, third)
    dense = merged.points["conv_dense"][0]
    assert dense.seconds_each == [1e-3, 0.5e-3, 4e-3] and dense.seconds == 1e-3
    assert merged.points["pool"][0].seconds == first.points["pool"][0].seconds
    assert merged.rounds == 9 and merged.fixed_each["overhead call"] == [16e-6, 11e-6, 12e-6]
    # derived again from the median overheads: a chain of 16 at 31 us beside one op at 12 us
    assert merged.fixed_s["overhead call"] == 12e-6
    assert merged.overhead_s.kernel == pytest.approx(19e-6 / 15)
    assert set(merged.context_factor) == {"1", "8"}
    assert third.points["conv_dense"][0].seconds_each is None and third.overhead_s == Overheads()  # inputs untouched
    with pytest.raises(UserError, match="differ in threads"):
        combine(first, replace(second, threads=2))
    with pytest.raises(UserError, match="differ in device, dtype"):
        combine(first, replace(second, device="cuda", dtype="fp16"))

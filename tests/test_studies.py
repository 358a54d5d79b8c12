"""Studies: the arms are what the papers built (equal FLOPs, bytes by the hand formulas),
the verdict logic on fake timings, the interleaved timing on a fake clock, and one real
study run within a budget of seconds."""

from __future__ import annotations

import math

import pytest

from study_arms import costs

from deploylens import UserError
from deploylens.studies import BORNE_OUT, CONTRADICTED, INCONCLUSIVE, STUDIES, run_study
from deploylens.studies.core import MIN_ROUNDS, Arm, Comparison, Expectation, compare, overall, time_interleaved
from deploylens.studies.runner import Settings

CPU, GPU = Settings("cpu"), Settings("cuda")


def arm(name: str, samples: list[float]) -> Arm:
    return Arm(name, lambda: None, (1,), samples=samples)




def test_g1_arms_are_table_1_at_equal_flops_with_the_papers_mac():
    design = STUDIES["g1"].design(CPU)
    assert [a.name for a in design.arms] == ["c1:c2 1:1 (64,64)", "c1:c2 1:2 (44,88)", "c1:c2 1:6 (26,156)",
                                             "c1:c2 1:12 (18,216)"]
    for a, (flops, nbytes) in zip(design.arms, costs(design).values()):
        c1, c2 = a.input_shape[1], int(a.name.split(",")[1].rstrip(")"))
        hw = 56 * 56
        assert flops == 10 * 2 * 2 * hw * c1 * c2  # 10 blocks of two 1x1 convs, 2 FLOPs a MAC
        # the fused view of a chain moves each conv's MAC once less the map it hands on in memory:
        # conv c1->c2 reads hw*c1 + c1*c2 and writes hw*c2; the next reads it back
        assert nbytes == 4 * 10 * 2 * (hw * (c1 + c2) + c1 * c2)
    flops = [f for f, _ in costs(design).values()]
    assert max(flops) / min(flops) < 1.06  # the paper's own widths hold FLOPs within 6%
    # the paper's ARM x2 speeds: 1:12 takes 21.7 / 15.1 times as long as 1:1
    assert design.expectations[-1].paper_ratio == pytest.approx(21.7 / 15.1)
    assert STUDIES["g1"].design(GPU).arms[0].input_shape == (8, 512, 56, 56)  # GPU x4: 128 x 4, batch 8


def test_g2_and_g3_hold_flops_equal_and_mac_equal_flops_exactly():
    for name, spread in (("g2", 1.02), ("g3", 1.04)):
        flops = [f for f, _ in costs(STUDIES[name].design(CPU)).values()]
        assert max(flops) / min(flops) < spread
    mac = costs(STUDIES["mac"].design(CPU))
    assert len({f for f, _ in mac.values()}) == 1  # 224^2 x 16^2 = 56^2 x 64^2 = 14^2 x 256^2
    # ten convs, each reading its map and weights and writing its map; in the fused view the
    # chain writes only its last map and reads only its first
    for (c, hw), (_, nbytes) in zip(((256, 14), (64, 56), (16, 224)), mac.values()):
        assert nbytes == 4 * 10 * (hw * hw * 2 * c + c * c)


def test_g4_arms_drop_relu_and_shortcut():
    design = STUDIES["g4"].design(CPU)
    flops = {a: f for a, (f, _) in costs(design).items()}
    # removing the ReLUs (3 per unit) and the add (1 per unit) removes their FLOPs only
    relu_flops = 10 * (16 * 56 * 56 * 2 + 64 * 56 * 56)
    add_flops = 10 * 64 * 56 * 56
    assert flops["ReLU and shortcut"] - flops["neither"] == relu_flops + add_flops
    assert flops["ReLU and shortcut"] - flops["ReLU only"] == add_flops


def test_a_verdict_reads_the_interval_of_the_paired_ratios():
    slower = Expectation("a", "b", 1.5)
    steady = [1.0] * 10
    assert compare(arm("a", [1.5] * 10), arm("b", steady), slower).verdict == BORNE_OUT
    assert compare(arm("a", [0.7] * 10), arm("b", steady), slower).verdict == CONTRADICTED
    # a rises and falls with b (the same neighbour slowed both): the pairing cancels it
    noisy_b = [1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 1.0, 3.0, 1.0, 3.0]
    paired = compare(arm("a", [1.2 * b for b in noisy_b]), arm("b", noisy_b), slower)
    assert paired.verdict == BORNE_OUT and paired.ratio == pytest.approx(1.2)
    mixed = compare(arm("a", [0.9, 1.1] * 5), arm("b", steady), slower)
    assert mixed.verdict == INCONCLUSIVE and "holds 1" in mixed.reason
    small = compare(arm("a", [1.03] * 10), arm("b", steady), slower)  # consistent, but under the 5% margin
    assert small.verdict == INCONCLUSIVE and "within 5% of 1" in small.reason
    assert compare(arm("a", [1.06] * 10), arm("b", steady), slower).verdict == BORNE_OUT
    few = compare(arm("a", [2.0] * (MIN_ROUNDS - 1)), arm("b", [1.0] * (MIN_ROUNDS - 1)), slower)
    assert few.verdict == INCONCLUSIVE and "too few" in few.reason
    # without a paper ratio the expectation says the direction
    assert compare(arm("a", [0.5] * 10), arm("b", steady), Expectation("a", "b", None, slower=False)).verdict == \
        BORNE_OUT


def test_the_study_verdict_is_what_most_comparisons_say():
    def of(*verdicts: str) -> list[Comparison]:
        return [Comparison("a", "b", 1.0, 1.0, 1.0, None, v) for v in verdicts]

    assert overall(of(BORNE_OUT, BORNE_OUT, INCONCLUSIVE)) == BORNE_OUT
    assert overall(of(BORNE_OUT, INCONCLUSIVE, INCONCLUSIVE)) == INCONCLUSIVE  # under half
    assert overall(of(CONTRADICTED, CONTRADICTED, BORNE_OUT)) == CONTRADICTED
    assert overall(of(CONTRADICTED, BORNE_OUT)) == INCONCLUSIVE


def test_arms_are_timed_in_rotated_interleaved_rounds():
    now, calls = [0.0], []

    def clock() -> float:
        return now[0]

    def runner(name: str, seconds: float):
        def run():
            calls.append(name)
            now[0] += seconds
        return run

    samples = time_interleaved([runner("a", 0.004), runner("b", 0.01)], budget_s=0.5, clock=clock)
    # warm-up: two calls each; a block is ~20 ms: 5 of a's 4 ms iterations, 2 of b's 10 ms
    assert calls[:4] == ["a", "a", "b", "b"]
    rounds = calls[4:]
    assert rounds[:7] == ["a"] * 5 + ["b"] * 2 and rounds[7:14] == ["b"] * 2 + ["a"] * 5  # rotated
    assert len(samples[0]) == len(samples[1]) >= MIN_ROUNDS
    assert samples[0][0] == pytest.approx(0.004) and samples[1][0] == pytest.approx(0.01)


def test_a_study_runs_and_says_which_device_it_speaks_for():
    result = run_study("mac", threads=1, quick=True, budget_s=4)
    data = result.to_dict()
    assert {"study", "claim", "source", "settings", "environment", "arms", "comparisons", "verdict", "notes"} <= \
        set(data)
    assert [a["flops"] for a in data["arms"]] == [2 * 10 * 14 * 14 * 256 * 256] * 3
    assert all(a["samples"] >= MIN_ROUNDS and a["median_ms"] > 0 for a in data["arms"])
    assert {c["verdict"] for c in data["comparisons"]} <= {BORNE_OUT, CONTRADICTED, INCONCLUSIVE}
    assert any("measured on" in note and "(cpu, torch, fp32, 1 threads)" in note for note in data["notes"])


@pytest.mark.parametrize("kwargs,message", [({"name": "g9"}, "unknown study 'g9'"),
                                            ({"backend": "nope"}, "unknown backend 'nope'"),
                                            ({"budget_s": -1.0}, "budget must be positive")])
def test_bad_study_input_is_one_user_error(kwargs, message):
    arguments = {"name": "g1", **kwargs}
    with pytest.raises(UserError, match=message):
        run_study(**arguments)


def test_every_study_has_a_claim_a_source_and_expectations_on_its_own_arms():
    for name, registered in STUDIES.items():
        assert registered.claim and registered.source
        for settings in (CPU, GPU) if "cuda" in registered.devices else (CPU,):
            design = registered.design(settings)
            names = {a.name for a in design.arms}
            assert len(names) == len(design.arms), name
            for e in design.expectations:
                assert {e.a, e.b} <= names and (e.paper_ratio is None or math.isfinite(e.paper_ratio))


def test_a_guideline_claims_slower_even_where_the_papers_own_timing_shows_no_slowdown():
    # Table 3, ARM c=128: 2- and 4-fragment-series ran at the 1-fragment's 10.1 images/s
    series = [e for e in STUDIES["g3"].design(CPU).expectations if "series" in e.a]
    assert [e.paper_ratio for e in series] == [1.0, 1.0] and all(e.expects_slower for e in series)


def test_a_device_timer_times_the_blocks_where_given():
    timed_blocks = []

    def events(block) -> float:  # a fake CUDA-event timer: 3 ms for every block it runs
        block()
        timed_blocks.append(1)
        return 0.003

    now = [0.0]

    def clock() -> float:
        now[0] += 0.001  # the host clock moves on, but the samples come from the device timer
        return now[0]

    samples = time_interleaved([lambda: None], budget_s=0.05, clock=clock, device_timer=events)
    assert len(timed_blocks) == len(samples[0]) >= MIN_ROUNDS
    # the warm-up sized a block by the host clock: 20 ms / 1 ms per call = 20 iterations
    assert samples[0][0] == pytest.approx(0.003 / 20)

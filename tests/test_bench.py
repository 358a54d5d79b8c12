"""The benchmark harness: statistics, the stopping rule, backends, store, bad input."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from deploylens import UserError
from deploylens.hardware.local import cpu_info
from deploylens.bench.gpu import NvmlSampler, utilization_context
from deploylens.bench.harness import bench
from deploylens.bench.interference import (
    InterferenceProbe,
    adjusted,
    adjusted_median,
    fit_exponent,
    is_quiet,
    quiet_median,
    quiet_samples,
)
from deploylens.bench.runner import BLOCK_TARGET_S, StopRule, measure, quietest
from deploylens.bench.stats import median_ci, percentile, reachable_share, summarize
from deploylens.bench.store import Store

QUICK = StopRule(warmup_iters=2, warmup_time=0.0, min_iters=5, min_time=0.05, max_time=0.3)


class FakeClock:
    """A clock that advances only when the fake workload runs."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def workload(clock: FakeClock, durations):
    it = iter(durations)

    def run():
        clock.now += next(it)

    return run


def test_reachable_share_follows_the_scatter_between_passes():
    # two rows of two passes, each pair e^0.1 apart in log: per-pass deviation
    # sqrt((2 x 0.05^2 x 2) / 2) = 0.0707, a two-pass reference 0.05; within log(1.1) = 0.0953
    # of it: erf(0.0953 / (0.05 sqrt 2)) = 0.9434
    rows = [[1.0, math.exp(0.1)], [5.0, 5.0 * math.exp(-0.1)]]
    assert reachable_share(rows) == pytest.approx(0.9434, abs=1e-4)
    assert reachable_share(rows, tolerance=0.20) > reachable_share(rows)  # a wider band holds more
    assert reachable_share([[3.0, 3.0, 3.0]]) == 1.0  # passes that agree exactly bound nothing
    assert reachable_share([[3.0], [4.0]]) is None  # one pass: no scatter to read


def test_percentiles_and_summary_by_hand():
    samples = [5.0, 1.0, 4.0, 2.0, 3.0]
    ordered = sorted(samples)
    assert percentile(ordered, 50) == 3.0
    assert percentile(ordered, 90) == pytest.approx(4.6)  # position 3.6 between 4 and 5
    assert percentile(ordered, 25) == 2.0
    s = summarize(samples)
    assert (s.p50, s.mean, s.min, s.max, s.iqr) == (3.0, 3.0, 1.0, 5.0, 2.0)
    assert s.std == pytest.approx(1.5811, abs=1e-4)  # sample std of 1..5


def test_median_confidence_interval_uses_order_statistics():
    ordered = [float(i) for i in range(100)]
    # ranks 50 -/+ 1.96*10/2 = 9.8 -> [40, 59]
    assert median_ci(ordered) == (40.0, 59.0)


def test_stops_when_the_median_is_stable():
    clock = FakeClock()
    timing = measure(workload(clock, [0.01] * 10_000), QUICK, clock=clock)
    assert timing.stop_reason == "stable"
    assert timing.summary.p50 == pytest.approx(0.01)
    assert timing.warmup_iterations == 2
    # 0.05 s of 10 ms samples at least, and the 5 samples the rule asks for
    assert len(timing.samples) == 5 and timing.block == 1


def test_noisy_workload_runs_to_the_time_cap_and_is_flagged():
    clock = FakeClock()
    noisy = [0.01 if i % 2 else 0.03 for i in range(10_000)]
    timing = measure(workload(clock, noisy), QUICK, clock=clock)
    assert timing.stop_reason == "max_time"
    assert timing.noisy


def test_tiny_workloads_are_timed_in_blocks():
    clock = FakeClock()
    timing = measure(workload(clock, [1e-5] * 100_000), QUICK, clock=clock)
    assert timing.block == round(BLOCK_TARGET_S / 1e-5)
    assert timing.iterations == timing.block * len(timing.samples)
    assert timing.summary.p50 == pytest.approx(1e-5)


def test_iteration_cap():
    clock = FakeClock()
    rule = StopRule(warmup_iters=1, warmup_time=0, min_iters=5, min_time=100, max_time=1000, max_iters=20)
    noisy = [0.01 if i % 2 else 0.05 for i in range(1000)]
    assert measure(workload(clock, noisy), rule, clock=clock).stop_reason == "max_iters"


def test_device_timer_samples_are_kept_beside_host_time():
    clock = FakeClock()
    run = workload(clock, [0.01] * 1000)

    def device_timer(block):  # a fake CUDA event pair: the device ran 8 ms per iteration
        before = clock.now
        block()
        return (clock.now - before) * 0.8

    timing = measure(run, QUICK, clock=clock, device_timer=device_timer)
    assert timing.device_samples and all(d == pytest.approx(0.008) for d in timing.device_samples)


def test_nvml_sampler_with_a_fake_library():
    readings = iter(range(10, 1000, 10))
    fake = SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetHandleByIndex=lambda i: "gpu0",
        nvmlDeviceGetUtilizationRates=lambda h: SimpleNamespace(gpu=next(readings)),
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=2_000_000_000),
        nvmlDeviceGetClockInfo=lambda h, kind: 1500, NVML_CLOCK_SM=1)
    sampler = NvmlSampler(fake, interval=10.0)
    with sampler:
        pass
    report = sampler.report()
    assert report["samples"] == 2 and report["gpu_util_mean"] == 15 and report["gpu_util_max"] == 20
    assert report["memory_used_max_mb"] == 2000
    context = utilization_context(report, 8.0, 100.0, 65.0, 320.0)
    assert context["gpu_util_max"] == 20
    assert context["fraction_of_peak_flops"] == pytest.approx(8 / 65)
    assert context["fraction_of_peak_bandwidth"] == pytest.approx(100 / 320)


def test_cpu_info_parses_isa():
    info = cpu_info("model name\t: Test CPU\nflags\t\t: fpu avx2 fma avx512f amx_tile\ncpu MHz\t: 2100.0\n")
    assert info["model"] == "Test CPU"
    assert info["isa"] == ["avx2", "fma", "avx512f", "amx_tile"]
    assert info["mhz"] == 2100.0


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 4)).eval()


def test_backends_agree_and_are_measured(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    results = bench(small_net(), ["torch", "torch-compile", "onnxruntime"], [1, 2], input_shape=(1, 3, 16, 16),
                    rule=QUICK, store=store)
    assert [(r.backend, r.batch) for r in results] == [("torch", 1), ("torch-compile", 1), ("onnxruntime", 1),
                                                         ("torch", 2), ("torch-compile", 2), ("onnxruntime", 2)]
    for r in results:
        # torch eager runs the very reference computation; the others agree far inside the
        # 1e-3 tolerance (a bench over it raises before timing)
        assert r.max_rel_error == 0.0 if r.backend == "torch" else r.max_rel_error < 1e-5
        # the figures are those of the samples kept (one round: its samples)
        assert r.p50_ms == pytest.approx(statistics.median(r.samples_ms)) and r.min_ms == min(r.samples_ms)
        assert r.throughput == pytest.approx(r.batch / r.p50_ms * 1e3)
        assert r.scenario == ("latency" if r.batch == 1 else "throughput")
        assert set(r.cold_ms) == {"load", "first_inference"}
        assert r.flops == r.batch * (2 * 8 * 27 * 256 + 2 * 8 * 4) + r.batch * (8 * 256 * 3 + 8 * 256 + 4 * 0)
    run = store.run(store.runs()[0]["id"])
    assert run["status"] == "complete" and len(run["measurements"]) == 6
    assert run["environment"]["threads"] == results[0].threads


def test_quietest_round_is_the_lowest_median():
    clock = FakeClock()
    # a neighbour slows the second round down 1.6x; the third is quiet again but noisier
    rounds = [measure(workload(clock, [d] * 10_000), QUICK, clock=clock) for d in (0.010, 0.016, 0.0105)]
    assert quietest(rounds) is rounds[0]
    with pytest.raises(ValueError):
        quietest([])


def test_rounds_run_round_robin_and_keep_the_quietest(monkeypatch):
    import deploylens.bench.harness as harness

    order, medians = [], iter([0.004, 0.002, 0.003, 0.005, 0.001, 0.006])

    def fake_measure(run, rule, **kwargs):
        order.append(run)
        clock = FakeClock()
        return measure(workload(clock, [next(medians)] * 10_000), rule, clock=clock)

    monkeypatch.setattr(harness, "measure", fake_measure)
    results = bench(small_net(), ["torch", "onnxruntime"], [1], input_shape=(1, 3, 8, 8), rule=QUICK, rounds=3)
    # backends alternate within every round
    assert [order.index(run) for run in order] == [0, 1, 0, 1, 0, 1]
    assert [r.rounds_p50_ms for r in results] == [pytest.approx([4.0, 3.0, 1.0]), pytest.approx([2.0, 5.0, 6.0])]
    assert [r.p50_ms for r in results] == [pytest.approx(1.0), pytest.approx(2.0)]
    with pytest.raises(UserError, match="--rounds must be at least 1"):
        bench(small_net(), ["torch"], [1], input_shape=(1, 3, 8, 8), rule=QUICK, rounds=0)


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is an optional extra")
def test_openvino_when_installed():
    result = bench(small_net(), ["openvino"], [1, 2], input_shape=(1, 3, 16, 16), rule=QUICK)
    assert [r.batch for r in result] == [1, 2] and all(r.max_rel_error < 1e-4 for r in result)


def test_module_factory_and_layers(tmp_path):
    source = tmp_path / "net.py"
    source.write_text("import torch.nn as nn\ndef build():\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())\n")
    results = bench(f"{source}:build", ["torch", "onnxruntime"], [1], input_shape="1,3,12,12", rule=QUICK,
                    layers=True)
    torch_layers = {row["layer"]: row for row in results[0].layers}
    assert torch_layers["0"]["kind"] == "conv" and torch_layers["0"]["flops"] == 2 * 4 * 27 * 100
    assert any(row["kind"] == "conv" for row in results[1].layers)


def test_an_interrupted_run_is_marked_and_the_store_stays_consistent(tmp_path, monkeypatch):
    store = Store(tmp_path / "runs.sqlite")
    import deploylens.bench.harness as harness

    calls = {"n": 0}
    real_measure = harness.measure

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_measure(*args, **kwargs)

    monkeypatch.setattr(harness, "measure", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench(small_net(), ["torch"], [1, 2], input_shape=(1, 3, 8, 8), rule=QUICK, store=store)
    run = store.run(store.runs()[0]["id"])
    assert run["status"] == "interrupted" and len(run["measurements"]) == 1


def test_compare_runs(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    for scale in (1.0, 1.5):
        run = store.begin("m", {}, {})
        store.add(run, {"backend": "torch", "device": "cpu", "dtype": "fp32", "batch": 1, "p50_ms": 10 * scale,
                        "throughput": 100 / scale})
        store.finish(run, "complete")
    rows = store.compare(1, 2)["rows"]
    assert rows[0]["p50_ratio"] == pytest.approx(1.5)
    assert rows[0]["throughput_ratio"] == pytest.approx(1 / 1.5)


class WrongExport(nn.Module):
    """Different outputs in eager mode and in the exported graph."""

    def forward(self, x):
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return x * 2
        return x


@pytest.mark.parametrize("kwargs,message", [
    ({"backends": ["nope"]}, "unknown backend 'nope'"),
    ({"backends": ["openvino"]}, "openvino"),
    ({"backends": ["torch-cudagraph"]}, "backend 'torch-cudagraph' runs on --device cuda, not cpu"),
    ({"batches": [0]}, "batch sizes must be positive"),
    ({"device": "cuda"}, "no CUDA GPU"),
    ({"input_shape": (1, 4, 8, 8)}, "rejects batch 1"),
])
def test_bad_input_writes_nothing(tmp_path, kwargs, message):
    if kwargs.get("backends") == ["openvino"] and importlib.util.find_spec("openvino"):
        pytest.skip("openvino is installed here")
    store = Store(tmp_path / "runs.sqlite")
    arguments = {"backends": ["torch"], "batches": [1], "input_shape": (1, 3, 8, 8), "rule": QUICK, "store": store}
    arguments.update(kwargs)
    if kwargs.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match=message):
        bench(small_net(), **arguments)
    assert store.runs() == []


def test_outputs_that_differ_between_backends_are_never_timed(tmp_path):
    store = Store(tmp_path / "runs.sqlite")
    with pytest.raises(UserError, match="outputs of onnxruntime differ from torch eager"):
        bench(WrongExport(), ["torch", "onnxruntime"], [1], input_shape=(1, 4), rule=QUICK, store=store)
    assert store.runs() == []


def test_bench_cli_json(monkeypatch, capsys, tmp_path):
    from deploylens.cli import main

    monkeypatch.setattr(sys, "argv", ["deploylens", "bench", "resnet18", "-i", "1,3,32,32", "--min-time", "0.05",
                                      "--max-time", "0.2", "--store", str(tmp_path / "r.sqlite"), "--format", "json"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code in (0, None)
    records = json.loads(capsys.readouterr().out)
    assert {"backend", "device", "batch", "threads", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms",
            "throughput", "iterations", "cold_ms", "stop_reason"} <= set(records[0])
    assert records[0]["quiet"] is None and "samples_ms" not in records[0]


def test_bench_cli_probe_table_and_json(monkeypatch, capsys, tmp_path):
    from deploylens.cli import main
    from deploylens.hardware import calibration_profile as calibration

    # a saved calibration of this CPU knew a quiet probe level of 1 us: the run measures against it
    monkeypatch.setenv("DEPLOYLENS_CALIBRATION_DIR", str(tmp_path))
    saved = calibration.profile_path("torch", 1, folder=tmp_path)
    saved.write_text(json.dumps({"format": calibration.FORMAT, "probe": {"level_s": 1e-6}}))
    common = ["deploylens", "bench", "resnet18", "-i", "1,3,32,32", "--min-time", "0.05", "--max-time", "0.2",
              "--no-store", "--probe", "--threads", "1"]
    for fmt in ("table", "json"):
        monkeypatch.setattr(sys, "argv", common + ["--format", fmt])
        with pytest.raises(SystemExit) as done:
            main()
        assert done.value.code in (0, None)
        out = capsys.readouterr().out
        if fmt == "table":
            assert "quiet p50 ms" in out and "adjusted p50 ms" in out and "within 10% of its quiet time" in out
            assert "^ 0.45" in out
        else:
            [record] = json.loads(out)
            assert set(record["quiet"]) == {"p50_ms", "samples", "share", "adjusted_p50_ms", "probe_level_ms",
                                            "tolerance", "exponent"}
            assert record["quiet"]["probe_level_ms"] == pytest.approx(1e-3) and record["quiet"]["samples"] == 0
            assert "probe_ms" not in record


def test_probe_reading_is_the_fastest_of_three_calls_and_its_level_a_low_percentile():
    clock = FakeClock()
    probe = InterferenceProbe(workload(clock, [0.5, 0.3, 0.4] + [0.2] * 3 + [0.6, 0.7, 0.8]), clock=clock)
    assert [probe(), probe(), probe()] == pytest.approx([0.3, 0.2, 0.6])
    probe.readings = [1.0] * 98 + [2.0, 0.5]
    # the 2nd percentile of 100 sorted readings: position 1.98, between 1.0 and 1.0
    assert probe.level() == 1.0
    assert probe.is_quiet(1.1) and not probe.is_quiet(1.11)
    assert is_quiet(1.1, 1.0) and not is_quiet(1.11, 1.0) and is_quiet(1.2, 1.0, tolerance=0.2)
    assert quiet_samples([5.0, 6.0, 9.0], [1.0, 1.05, 1.5], probe) == [5.0, 6.0]
    assert quiet_median([5.0, 6.0]) is None and quiet_median([3.0, 1.0, 2.0]) == 2.0  # at least 3 quiet samples
    with pytest.raises(ValueError):
        InterferenceProbe(lambda: None).level()


def test_each_sample_keeps_the_slower_probe_reading_around_it():
    clock = FakeClock()
    readings = iter([1.0, 1.0, 2.0, 1.0, 1.0, 1.0])

    class Probe(InterferenceProbe):
        def __call__(self):
            clock.now += 0.001
            self.readings.append(next(readings))
            return self.readings[-1]

    # samples of 30 ms and a probe interval of 50 ms: a reading after every second sample
    rule = StopRule(warmup_iters=1, warmup_time=0.0, min_iters=1, min_time=0.0, max_time=0.15, ci_target=0.0)
    timing = measure(workload(clock, [0.03] * 100), rule, clock=clock, probe=Probe(lambda: None), probe_interval=0.05)
    assert len(timing.probe_readings) == len(timing.samples) == 5
    # readings 1 (start), 1 (after 2 samples), 2 (after 4), 1 (at the end, after 5)
    assert timing.probe_readings == [1.0, 1.0, 2.0, 2.0, 2.0]


def test_busy_samples_adjusted_to_the_quiet_level_by_hand():
    # level 1; readings 1, 4 and 0.5: x 1, x (1/4)^0.5 = 0.5, and x 1 (a lucky reading changes nothing)
    assert adjusted([2.0, 4.0, 3.0], [1.0, 4.0, 0.5], 1.0, 0.5) == [2.0, 2.0, 3.0]
    assert adjusted_median([2.0, 4.0, 3.0], [1.0, 4.0, 0.5], 1.0, 0.5) == 2.0
    assert adjusted_median([], [], 1.0) is None
    # five measurements: 1 ms quiet (reading 1), 2 ms busy (reading 4): exponent 0.5 brings them together
    group = ([1.0] * 3 + [2.0] * 3, [1.0] * 3 + [4.0] * 3)
    assert fit_exponent([group] * 5, 1.0) == 0.5
    # busy samples as fast as quiet ones: the host's interference does not reach the workload
    assert fit_exponent([([1.0] * 6, [1.0] * 3 + [4.0] * 3)] * 5, 1.0) == 0.0
    # too few measurements with both quiet and busy samples to fit on
    assert fit_exponent([group] * 4 + [([1.0] * 6, [1.0] * 6)] * 3, 1.0) is None


def test_a_busy_host_is_timed_on_samples_adjusted_to_its_quiet_level():
    clock = FakeClock()

    def busy_then_quiet():
        return iter([4.0] * 20 + [1.0] * 1000)  # the neighbour leaves after ~20 readings
    readings = busy_then_quiet()

    class Probe(InterferenceProbe):
        def __call__(self):
            self.readings.append(next(readings))
            return self.readings[-1]

    # while the probe reads 4x its quiet time, the workload takes 2x (exponent 0.5)
    durations = [0.02] * 100 + [0.01] * 100_000
    probe = Probe(lambda: None, exponent=0.5)
    probe.readings = [1.0] * 50  # its quiet level, known from earlier readings
    timing = measure(workload(clock, durations), QUICK, clock=clock, probe=probe, probe_interval=0.005)
    assert timing.stop_reason == "stable" and min(timing.samples) == pytest.approx(0.02)  # stopped while busy
    assert adjusted_median(timing.samples, timing.probe_readings, probe.level(), 0.5) == pytest.approx(0.01)
    # without the adjustment the busy samples are stable too, at twice the time
    readings = busy_then_quiet()
    probe.readings = [1.0] * 50
    timing = measure(workload(clock, durations), replace(QUICK, probe_adjusted=False), clock=clock, probe=probe,
                     probe_interval=0.005)
    assert timing.stop_reason == "stable" and timing.summary.p50 == pytest.approx(0.02)


def test_a_known_level_is_the_probe_level_when_lower():
    probe = InterferenceProbe(lambda: None, known_level=0.5)
    probe.readings = [1.0] * 10
    assert probe.level() == 0.5
    probe.known_level = 2.0
    assert probe.level() == 1.0


def test_bench_with_a_probe_reports_the_quiet_samples():
    probe = InterferenceProbe()
    [result] = bench(small_net(), ["torch"], [1], input_shape=(1, 3, 8, 8), rule=QUICK, probe=probe)
    assert len(result.probe_ms) == len(result.samples_ms) and probe.readings
    quiet = result.quiet
    assert quiet["probe_level_ms"] == pytest.approx(probe.level() * 1e3) and quiet["tolerance"] == 0.1
    assert quiet["adjusted_p50_ms"] == pytest.approx(adjusted_median(result.samples_ms, result.probe_ms,
                                                                     probe.level() * 1e3, 0.45))
    assert quiet["adjusted_p50_ms"] <= result.p50_ms  # the adjustment only ever takes interference out
    quiet_ones = quiet_samples(result.samples_ms, result.probe_ms, probe, probe.level() * 1e3)
    assert quiet["samples"] == len(quiet_ones) and quiet["share"] == len(quiet_ones) / len(result.samples_ms)
    expected = quiet_median(quiet_ones)
    assert quiet["p50_ms"] == (None if expected is None else pytest.approx(expected))

"""``recommend``: it ranks and lints RepVGG / MobileOne in the deploy form whose latency it
ranks, and its verdict on the guide's advice compares the favoured and the disfavoured
families at comparable top-1 on the predicted latency, so it can fail."""

from __future__ import annotations

import io
import json

import pytest
import torch
from cli_runner import run
from rich.console import Console

from deploylens import zoo
from deploylens.cli.recommend import _render
from deploylens.hardware.spec import Figure, HardwareSpec
from deploylens.predict import predict
from deploylens.recommend import recommend
from deploylens.recommend.verdict import judge, pairs

PAIR = ["repvgg_a0", "mobilenet_v2_100"]  # 72.41% and 71.8% top-1: comparable (within 1 point)


def device(depthwise: float, dense: float) -> HardwareSpec:
    """A GPU device model (T4-like FP16 peak and bandwidth; a family of its own, so that no
    fitted model rates it) whose depthwise and dense convs reach these fractions of peak,
    every other kernel the roofline at peak."""
    figure = lambda value: Figure(value, ("test",))  # noqa: E731
    return HardwareSpec("test_gpu", "gpu", "test", {"fp16": figure(65e12)}, bandwidth=figure(320e9),
                        efficiency={"conv_depthwise": figure(depthwise), "conv_dense": figure(dense)})


@pytest.mark.parametrize("depthwise, dense, verdict", [(1.0, 0.1, "not borne out"), (0.05, 1.0, "borne out")])
def test_the_gpu_verdict_follows_the_device_model(depthwise, dense, verdict):
    spec = device(depthwise, dense)
    result = recommend(spec, models=PAIR)
    assert result["target"] == "test_gpu"
    judged = result["verdict"]
    assert (judged["verdict"], judged["platform"], judged["favoured"]["families"]) == (verdict, "NVIDIA GPU",
                                                                                      ["repvgg"])
    [pair] = judged["pairs"]
    assert (pair["favoured"], pair["other"]) == ("repvgg_a0", "mobilenet_v2_100")
    assert judged["speedup"] == pytest.approx(pair["other_ms"] / pair["favoured_ms"], rel=1e-12)
    assert (judged["speedup"] < 1 / 1.1) if verdict == "not borne out" else (judged["speedup"] > 1.1)
    if verdict == "not borne out":  # the latencies are predict's on that device model, in its deploy precision
        with torch.device("meta"):  # shapes only, as recommend analyses them
            dense, depthwise = zoo.create("repvgg_a0", deploy=True), zoo.create("mobilenet_v2_100")
        dense_ms, depthwise_ms = (predict(m, spec, dtype="fp16", input_shape=(1, 3, 224, 224)).totals["latency_ms"]
                                  for m in (dense, depthwise))
        assert (pair["favoured_ms"], pair["other_ms"]) == pytest.approx((dense_ms, depthwise_ms), rel=1e-12)
    assert result["advice"].startswith("the guide's advice for NVIDIA GPU (repvgg over depthwise-separable nets) is "
                                       f"{verdict} on test_gpu: at comparable top-1 (within 1 point) repvgg ran ")
    forms = {c["model"]: c["form"] for c in result["candidates"]}
    assert forms == {"repvgg_a0": "deploy", "mobilenet_v2_100": "as built"}


def rows(*specs) -> list[dict]:
    return [{"model": m, "family": f, "latency_ms": ms, "top1": top1} for m, f, ms, top1 in specs]


def test_pairs_take_the_nearest_top1_within_one_point():
    candidates = rows(("a", "repvgg", 1.0, 72.0), ("b", "repvgg", 2.0, 75.0), ("c", "repvgg", 3.0, 80.0),
                      ("x", "mobilenet_v2", 1.5, 72.5), ("y", "mobilenet_v2", 0.9, 71.5),
                      ("z", "shufflenet_v2", 4.0, 75.9), ("w", "resnet", 0.1, 75.0))
    found = pairs(candidates[:3], candidates[3:6])
    # a: x and y both 0.5 away, y is faster; b: z is 0.9 away; c: nobody within 1 point; w is neither kind
    assert [(p["favoured"], p["other"], p["speedup"]) for p in found] == [("a", "y", 0.9), ("b", "z", 2.0)]
    judged = judge("gpu", "t", candidates)
    assert judged["speedup"] == pytest.approx((0.9 * 2.0) ** 0.5)  # 1.342: beyond the 10% margin
    assert judged["verdict"] == "borne out"


def test_the_verdict_is_inconclusive_within_the_margin_or_without_a_pair():
    close = rows(("a", "repvgg", 1.0, 72.0), ("x", "mobilenet_v1", 1.09, 72.0))
    assert judge("gpu", "t", close)["verdict"] == "inconclusive"  # 9% apart: within the 10% margin
    assert judge("gpu", "t", rows(("a", "repvgg", 1.0, 72.0), ("x", "mobilenet_v1", 1.11, 72.0)))["verdict"] == \
        "borne out"
    apart = judge("gpu", "t", rows(("a", "repvgg", 1.0, 72.0), ("x", "mobilenet_v1", 9.0, 73.5)))
    assert (apart["verdict"], apart["pairs"], apart["speedup"]) == ("inconclusive", [], None)
    assert apart["reason"].endswith("no two models of the two kinds within 1 top-1 point of each other")
    # mobile CPU: the guide favours MobileNetV1 / ShuffleNetV2 over plain dense 3x3 nets
    alone = judge("cpu", "mobile-cpu", rows(("x", "mobilenet_v1", 1.0, 70.0)))
    assert alone["reason"] == ("the guide's advice for mobile CPU (mobilenet_v1 / shufflenet_v2 over plain dense 3x3 "
                               "nets) is inconclusive on mobile-cpu: no plain dense 3x3 nets (repvgg / vgg) in this "
                               "ranking")
    slower = judge("cpu", "mobile-cpu", rows(("x", "mobilenet_v1", 2.0, 70.0), ("v", "vgg", 1.0, 70.5)))
    assert (slower["verdict"], slower["speedup"]) == ("not borne out", 0.5)


def test_recommend_ranks_and_lints_the_deploy_form(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "recommend", "--target", "npu", "--models", "mobileone_s0,repvgg_a0",
                         "--format", "json")
    assert (code, err) == (0, "")
    result = json.loads(out)
    mobileone = next(c for c in result["candidates"] if c["model"] == "mobileone_s0")
    assert (mobileone["form"], mobileone["params"]) == ("deploy", 2_078_504)
    # on the INT8 NPU the branched form has 43 PTQ-RISK findings and 13 G1; the deploy form ranked has none and 3
    assert "PTQ-RISK" not in mobileone["findings"] and mobileone["findings"]["G1"] == 3
    # 72.41% against 71.4%: more than a point apart, so no comparable pair
    assert (result["verdict"]["verdict"], result["verdict"]["pairs"]) == ("inconclusive", [])
    shown = Console(file=io.StringIO(), width=200)
    _render(shown, result)  # the table of the same result
    out = shown.file.getvalue()
    assert "form: mobileone, repvgg ranked and linted in the deploy form (branches folded)\n" in out
    assert ("advice: the guide's advice for NPU (cspnet / repvgg over depthwise-separable nets) is inconclusive on "
            "npu: no two models of the two kinds within 1 top-1 point of each other; fastest overall: ") in out

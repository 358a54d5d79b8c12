"""Device models fitted on measured whole networks: the format, the fit, hw fit, and how
predict rates a catalogued device with them."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from deploylens.analysis.api import analyze
from deploylens.calibration.published import (DesignFit, MeasuredRow, design_vector, fit_design, fit_rows, parameters, read_rows,
                                              row_sums, to_model)
from deploylens.errors import UserError
from deploylens.hardware import device_model
from deploylens.hardware.device_model import COMPUTE_CLASSES, MEMORY_CLASSES, FamilyModel, FittedDevice, FittedOn
from deploylens.hardware.spec import load_catalog
from deploylens.hardware.targets import resolve
from deploylens.predict import predict
from deploylens.predict.core import predict_profile
from deploylens.zoo import create
from tests.cli_runner import run

CATALOG = load_catalog()
# small networks that together hold every class a family model rates
NETWORKS = ("resnet18", "mobilenet_v2_050", "efficientnet_b0", "shufflenet_v1_g3_100", "squeezenet1_1",
            "ghostnet_100", "mobilenet_v3_small_100", "repvgg_b1g4", "vovnet27_slim", "shufflenet_v2_x0_5",
            "cspresnet50", "mobilenet_v1_050")


def known_model() -> FamilyModel:
    """A family model unlike the generic prior in every parameter."""
    count = len(COMPUTE_CLASSES) + len(MEMORY_CLASSES)
    inverse = np.linspace(0.6, 3.4, count)
    return to_model(DesignFit(np.concatenate([inverse, [3e-6, 2e-5]]), 0.0, None, None), "nvidia_gpu", "fp16",
                    "eager", [FittedOn("nvidia_t4", 0, "synthetic")], "generic")


@pytest.fixture(scope="module")
def synthetic_design():
    rows = [MeasuredRow(m, (3, size, size), batch, "fp16", "eager", 1.0, "nvidia_t4", "synthetic", m)
            for m in NETWORKS for size, batch in ((32, 1), (64, 4))]
    cache: dict = {}
    return rows, np.array([design_vector(row_sums(r, CATALOG["nvidia_t4"], cache)) for r in rows])


def test_fitting_rows_generated_from_a_known_model_recovers_it(synthetic_design):
    rows, design = synthetic_design
    truth = known_model()
    result = fit_design(design, design @ parameters(truth))
    fitted = to_model(result, "nvidia_gpu", "fp16", "eager", [], "generic")
    for klass in COMPUTE_CLASSES:
        assert fitted.compute_efficiency[klass] == pytest.approx(truth.compute_efficiency[klass], rel=0.02), klass
    for klass in MEMORY_CLASSES:
        assert fitted.memory_efficiency[klass] == pytest.approx(truth.memory_efficiency[klass], rel=0.02), klass
    assert fitted.kernel_overhead_s == pytest.approx(3e-6, rel=0.02)
    assert result.accuracy().within_10 == 1.0


def test_prediction_is_the_design_row_times_the_parameters():
    """predict and the fit use one model: a network's predicted time is its design row
    dotted with the model's parameters."""
    truth = known_model()
    spec = CATALOG["nvidia_geforce_rtx_4090"]
    row = MeasuredRow("mobilenet_v2_050", (3, 64, 64), 2, "fp16", "eager", 1.0, spec.name, "", "x")
    expected_s = design_vector(row_sums(row, spec)) @ parameters(truth)
    profile = analyze(create("mobilenet_v2_050"), [((2, 3, 64, 64), "float")], "float16")
    predicted = predict_profile(profile, FittedDevice(spec, truth), batch=2)
    assert predicted.totals["latency_ms"] == pytest.approx(expected_s * 1e3, rel=1e-9)
    assert predicted.source["kind"] == "fitted"


def test_a_depthwise_conv_costs_its_flops_at_the_rated_efficiency():
    """One kernel by hand: flops / (peak x compute efficiency) + bytes / (bandwidth x
    memory efficiency) + the kernel overhead."""
    from deploylens.predict.fitted import fitted_time

    truth = known_model()
    spec = CATALOG["nvidia_t4"]
    profile = analyze(create("mobilenet_v2_050"), [((1, 3, 64, 64), "float")], "float16")
    layers = {layer.name: layer for layer in profile.layers}
    kernel = next(k for k in profile.kernels
                  if device_model.family_class(layers[k.layers[0]]) == "conv_depthwise")
    compute, memory, overhead = fitted_time(kernel, "conv_depthwise", FittedDevice(spec, truth), "fp16")
    peak, bandwidth = spec.roofline("fp16")
    assert compute == pytest.approx(kernel.flops / (peak * truth.compute_efficiency["conv_depthwise"]))
    assert memory == pytest.approx(kernel.bytes / (bandwidth * truth.memory_efficiency["conv_depthwise"]))
    assert overhead == 3e-6


def test_a_device_model_round_trips_through_its_file(tmp_path):
    model = replace(known_model(), notes=["synthetic"])
    path = tmp_path / "model.json"
    device_model.save(model, path)
    assert device_model.load(path) == model
    data = json.loads(path.read_text())
    data["version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="version 99"):
        device_model.load(path)
    del data["memory_efficiency"]["pool"]
    data["version"] = device_model.VERSION
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="no efficiency for pool"):
        device_model.load(path)


def test_the_shipped_models_name_their_data_and_error():
    shipped = {m.key: m for m in device_model.shipped()}
    gpu = shipped["nvidia_gpu/fp16/eager"]
    assert {f.device for f in gpu.fitted_on} == {"nvidia_geforce_rtx_3090", "nvidia_geforce_rtx_4090"}
    assert gpu.accuracy.rows == sum(f.rows for f in gpu.fitted_on) == 76
    assert "x86_cpu/fp32/fused" in shipped


def test_catalogued_gpu_is_rated_by_its_family_model_and_unknown_family_by_the_roofline():
    gpu = resolve("nvidia_geforce_rtx_5090").latency_model("torch")
    assert isinstance(gpu, FittedDevice) and gpu.model.key == "nvidia_gpu/fp16/eager"
    npu = resolve("rockchip_rk3588_npu")
    assert npu.latency_model() is npu.spec
    assert npu.rating_note.startswith("no device model fitted for edge_npu in int8")
    cpu = resolve("intel_core_i9_13900k").latency_model("torch")
    assert cpu.model.runtime == "fused" and "no x86_cpu model fitted for the eager runtime" in cpu.note


def test_a_gpu_without_tensor_cores_deploys_in_fp32():
    assert resolve("nvidia_geforce_gtx_1080_ti").dtype == "fp32"
    assert resolve("nvidia_t4").dtype == "fp16"


def test_predict_says_where_its_figures_come_from():
    fitted = predict("mobilenet_v2_050", "nvidia_t4", input_shape=(1, 3, 64, 64))
    assert fitted.source["kind"] == "fitted" and "nvidia_geforce_rtx_3090 (38 rows" in fitted.source["data"]
    assert fitted.source["expected_error"]["rows"] == 76
    roofline = predict("mobilenet_v2_050", "rockchip_rk3588_npu", input_shape=(1, 3, 64, 64))
    assert roofline.source["kind"] == "roofline"
    assert any(n.startswith("no device model fitted for edge_npu") for n in roofline.notes)


def test_a_given_device_model_must_be_of_the_targets_family():
    with pytest.raises(UserError, match="is for nvidia_gpu in fp16"):
        predict("mobilenet_v2_050", "intel_core_i9_13900k", input_shape=(1, 3, 32, 32), family_model=known_model())


ROWS = """model,input_shape,batch,precision,runtime,ms_per_batch,device
resnet18,64,1,fp16,eager,1.5,nvidia_t4
nosuchnet,64,1,fp16,eager,1.5,nvidia_t4
resnet18,1x64x64,1,fp16,eager,1.5,nvidia_t4
resnet18,64,1,fp16,eager,-3,nvidia_t4
resnet18,64,1,fp16,warp,1.5,nvidia_t4
mobilenet_v2_050,64,2,amp,torch,2.0,
"""


def test_each_unusable_row_gets_one_line_naming_it(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text(ROWS)
    rows, problems = read_rows(path, CATALOG)
    assert problems == ["rows.csv line 5: the measured time -3.0 ms is not positive",
                        "rows.csv line 6: runtime 'warp' is not one of torch, torch-compile, onnxruntime, openvino, "
                        "tensorrt, eager, pytorch, fused, dynamo, inductor, trt",
                        "rows.csv line 7: no device (a device column, or --device)"]
    fit = fit_rows(rows, CATALOG)
    assert [s.split(":")[0] for s in fit.skipped] == ["rows.csv line 3", "rows.csv line 4"]
    assert "unknown model 'nosuchnet'" in fit.skipped[0] and "input shape [1, 1, 64, 64] does not fit the model" in fit.skipped[1]
    assert [r.where for r in fit.rows] == ["rows.csv line 2"]


def test_hw_fit_writes_a_model_predict_reads(tmp_path, monkeypatch, capsys):
    rows = tmp_path / "rows.csv"
    rows.write_text("model,input_shape,batch,precision,runtime,samples_per_s\n"
                    + "".join(f"{m},64,4,fp16,eager,{rate}\n" for m, rate in
                              (("resnet18", 9000), ("mobilenet_v2_050", 30000), ("squeezenet1_1", 40000),
                               ("nosuchnet", 1))))
    out = tmp_path / "t4.json"
    code, stdout, stderr = run(monkeypatch, capsys, "hw", "fit", str(rows), "--device", "nvidia_t4", "-o", str(out),
                               "--format", "json")
    assert code == 0, stderr
    data = json.loads(stdout)
    assert [r["where"] for r in data["rows"]] == ["rows.csv line 2", "rows.csv line 3", "rows.csv line 4"]
    assert data["skipped"][0].startswith("rows.csv line 5: unknown model 'nosuchnet'")
    assert "warning: skipped rows.csv line 5" in stderr
    assert data["model"]["method"].endswith("prior: nvidia_gpu/fp16/eager)")
    assert data["model"]["accuracy"]["rows"] == 3
    code, stdout, stderr = run(monkeypatch, capsys, "predict", "resnet18", "--target", "nvidia_t4", "--batch", "4", "-i", "4,3,64,64",
                               "--device-model", str(out), "--format", "json")
    assert code == 0, stderr
    assert json.loads(stdout)["totals"]["latency_ms"] == pytest.approx(data["rows"][0]["fitted_ms"])
    code, _, stderr = run(monkeypatch, capsys, "hw", "fit", str(rows), "--device", "nvidia_t4", "-o", str(out))
    assert code == 2 and "exists" in stderr


def test_hw_fit_without_usable_rows_exits_2(tmp_path, monkeypatch, capsys):
    rows = tmp_path / "rows.csv"
    rows.write_text("model,input_shape,batch,precision,runtime,samples_per_s\nresnet18,64,4,fp16,eager,0\n")
    code, _, stderr = run(monkeypatch, capsys, "hw", "fit", str(rows), "--device", "nvidia_t4")
    assert code == 2
    assert stderr.strip().splitlines()[-1] == "deploylens: error: no usable rows to fit on"


def test_fp16_models_scale_by_the_full_tensor_rate_where_geforce_halves_fp32_accumulate():
    from deploylens.hardware.device_model import rated_peak

    assert rated_peak(CATALOG["nvidia_geforce_rtx_3090"], "fp16") == 142e12  # FP16 accumulate; 71 with FP32
    assert rated_peak(CATALOG["nvidia_geforce_rtx_3090"], "fp32") == 35.6e12
    assert rated_peak(CATALOG["nvidia_t4"], "fp16") == 65e12  # one rate for both accumulations
    assert CATALOG["nvidia_geforce_rtx_3090"].peak_flops("fp16") == 71e12  # the roofline keeps the cuBLAS rate

"""Deploy transforms and their numerical checks."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from nets import randomize

from deploylens import UserError, zoo
from deploylens.deploy import check_equivalence, export_onnx, fuse_bn, quantize, reparameterize, sensitivity

SHAPE = (1, 3, 16, 16)


def batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_fuse_conv_bn_and_conv_bn_relu():
    model = randomize(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 1, bias=True),
                                    nn.BatchNorm2d(8), nn.ReLU()))
    fused = fuse_bn(model, SHAPE)
    assert batchnorms(fused) == 0 and batchnorms(model) == 2  # the original is untouched
    assert fused[0].bias is not None
    assert check_equivalence(model, fused, [torch.randn(SHAPE)]).passed


def test_fuse_linear_bn():
    model = randomize(nn.Sequential(nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU()))
    fused = fuse_bn(model, (4, 16))
    assert batchnorms(fused) == 0
    assert check_equivalence(model, fused, [torch.randn(4, 16)]).passed


class SharedConv(nn.Module):
    """One conv called twice, each call followed by its own BN: folding would be wrong."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn_a, self.bn_b = nn.BatchNorm2d(3), nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn_a(self.conv(x)) + self.bn_b(self.conv(x))


class ForkBeforeBN(nn.Module):
    """The conv output feeds the BN and a second consumer: the BN must stay."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + torch.sigmoid(y)


@pytest.mark.parametrize("model", [SharedConv, ForkBeforeBN])
def test_bn_that_must_not_be_fused_stays(model):
    original = randomize(model())
    fused = fuse_bn(original, SHAPE)
    assert batchnorms(fused) == batchnorms(original)
    assert check_equivalence(original, fused, [torch.randn(SHAPE)]).passed


def test_a_transform_that_changes_outputs_is_refused(monkeypatch):
    import deploylens.deploy.transforms as transforms

    real_fold = transforms._fold

    def broken_fold(producer, bn):
        real_fold(producer, bn)
        with torch.no_grad():
            producer.weight.mul_(1.01)

    monkeypatch.setattr(transforms, "_fold", broken_fold)
    model = randomize(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)))
    with pytest.raises(UserError, match="fuse_bn changed the outputs"):
        fuse_bn(model, SHAPE)
    assert batchnorms(fuse_bn(model, SHAPE, force=True)) == 0


@pytest.mark.parametrize("name", ["repvgg_a0", "mobileone_s0"])
def test_reparameterize_zoo_models(name):
    model = randomize(zoo.create(name))
    deploy = reparameterize(model, (1, 3, 64, 64))
    assert batchnorms(deploy) == 0
    assert check_equivalence(model, deploy, [torch.randn(1, 3, 64, 64)]).passed


class UserRepBlock(nn.Module):
    """A user's own RepVGG-style block: 3x3 conv-BN + 1x1 conv-BN + identity BN."""

    def __init__(self, channels: int = 8):
        super().__init__()
        self.conv3 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.bn_id = nn.BatchNorm2d(channels)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.bn3(self.conv3(x)) + self.bn1(self.conv1(x)) + self.bn_id(x))


def test_reparameterize_a_user_defined_block():
    model = randomize(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), UserRepBlock(), UserRepBlock()))
    deploy = reparameterize(model, SHAPE)
    convs = [m for m in deploy.modules() if isinstance(m, nn.Conv2d)]
    assert batchnorms(deploy) == 0 and len(convs) == 3
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert check_equivalence(model, deploy, [torch.randn(SHAPE)]).passed


@pytest.fixture
def small_onnx(tmp_path):
    model = randomize(nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                    nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                    nn.Flatten(), nn.Linear(16, 10)))
    report = export_onnx(model, tmp_path / "model.onnx", SHAPE)
    return tmp_path / "model.onnx", report


def test_export_checks_onnxruntime_against_torch(small_onnx):
    path, report = small_onnx
    # far inside the 1e-4 tolerance over which the export is refused
    assert path.exists() and report.max_rel_error < 1e-5
    onnx.checker.check_model(str(path))
    # the exporter folds the BatchNorm into the first conv
    assert [n.op_type for n in onnx.load(str(path)).graph.node] == ["Conv", "Relu", "Conv", "Relu",
                                                                    "GlobalAveragePool", "Flatten", "Gemm"]
    assert report.nodes == 7


def test_quantize_per_channel_and_per_tensor_with_sensitivity(small_onnx, tmp_path):
    path, _ = small_onnx
    data = np.random.default_rng(1).standard_normal((16, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "calib.npy", data)
    results = {}
    for per_channel in (True, False):
        out = tmp_path / f"int8_{per_channel}.onnx"
        notes = quantize(path, out, calib=str(tmp_path / "calib.npy"), per_channel=per_channel)
        assert notes == [] and out.exists()
        assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out)).graph.node)
        results[per_channel] = sensitivity(path, out, data)
    for report in results.values():
        assert report.samples == 16 and report.top1_agreement >= 0.9
        assert report.cosine_similarity > 0.9 and report.layers
        assert all(0 < row["sqnr_db"] < 100 for row in report.layers)
        assert [row["sqnr_db"] for row in report.layers] == sorted(row["sqnr_db"] for row in report.layers)
    notes = quantize(path, tmp_path / "generated.onnx")
    assert "generated random data" in notes[0]


@pytest.mark.parametrize("calib,message", [
    (np.zeros((0, 3, 16, 16), np.float32), "empty"),
    (np.zeros((4, 3, 8, 8), np.float32), "the model takes"),
])
def test_bad_calibration_data_writes_nothing(small_onnx, tmp_path, calib, message):
    path, _ = small_onnx
    with pytest.raises(UserError, match=message):
        quantize(path, tmp_path / "out.onnx", calib=calib)
    assert not (tmp_path / "out.onnx").exists()


def test_an_onnx_file_onnxruntime_cannot_load(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(UserError, match="onnxruntime cannot load"):
        quantize(broken, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


# --- the deploy chain's files: checked first, all or nothing --------------------------------


def _tiny_net(tmp_path):
    source = tmp_path / "tiny.py"
    source.write_text("import torch, torch.nn as nn\ndef build():\n    torch.manual_seed(0)\n"
                      "    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),\n"
                      "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()\n")
    return f"{source}:build"


def _files(folder):
    return sorted(p.name for p in folder.iterdir() if p.suffix != ".py" and p.name != "__pycache__")


@pytest.mark.parametrize("arguments,message", [
    ({"method": "kl"}, "calibration method 'kl': one of minmax, entropy, percentile"),
    ({"activations": "int4"}, "activation type 'int4': uint8 or int8"),
    ({"calib": "missing.npy"}, "no such calibration data"),
    ({"calib": "notes.txt"}, "give an .npy file, a folder of images or nothing"),
    ({"calib": "empty_folder"}, "no images in"),
    ({"calib": "small.npy"}, "calibration samples have shape [3, 8, 8]; the model takes [3, 16, 16]"),
    ({"int8_path": "model.onnx"}, "the INT8 model would overwrite the ONNX export"),
])
def test_int8_arguments_are_checked_before_anything_is_exported(tmp_path, monkeypatch, arguments, message):
    import deploylens.deploy.chain as chain

    model = _tiny_net(tmp_path)
    (tmp_path / "notes.txt").write_text("not data")
    (tmp_path / "empty_folder").mkdir()
    (tmp_path / "empty_folder" / "readme.txt").write_text("no images here")
    np.save(tmp_path / "small.npy", np.zeros((2, 3, 8, 8), np.float32))
    before = _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(chain, "export_onnx", lambda *a, **k: pytest.fail("exported before the check"))
    with pytest.raises(UserError) as error:
        chain.run_chain(model, (1, 3, 16, 16), onnx_path="model.onnx", int8=True, **arguments)
    assert message in str(error.value) and _files(tmp_path) == before


@pytest.mark.parametrize("failing", ["quantize", "sensitivity"])
def test_a_failing_int8_step_leaves_no_file_not_even_the_fp32_export(tmp_path, monkeypatch, failing):
    import deploylens.deploy.chain as chain

    def fail(*args, **kwargs):
        raise UserError(f"{failing} failed")

    monkeypatch.setattr(chain, failing, fail)
    with pytest.raises(UserError, match=f"{failing} failed"):
        chain.run_chain(_tiny_net(tmp_path), (1, 3, 16, 16), onnx_path=str(tmp_path / "model.onnx"), int8=True)
    assert _files(tmp_path) == []


def test_existing_outputs_are_replaced_only_with_force_and_never_into_a_new_folder(tmp_path):
    from deploylens.deploy.chain import run_chain

    model, exported = _tiny_net(tmp_path), tmp_path / "model.onnx"
    exported.write_text("keep me")
    (tmp_path / "model.int8.onnx").write_text("keep me too")
    with pytest.raises(UserError, match="model.onnx exists: use --force to overwrite it"):
        run_chain(model, (1, 3, 16, 16), onnx_path=str(exported))
    with pytest.raises(UserError, match="model.int8.onnx exists: use --force"):  # the default INT8 path too
        run_chain(model, (1, 3, 16, 16), onnx_path=str(tmp_path / "other.onnx"), int8=True,
                  int8_path=str(tmp_path / "model.int8.onnx"))
    with pytest.raises(UserError, match="no folder"):
        run_chain(model, (1, 3, 16, 16), onnx_path=str(tmp_path / "nodir" / "x.onnx"))
    assert _files(tmp_path) == ["model.int8.onnx", "model.onnx"] and exported.read_text() == "keep me"
    result = run_chain(model, (1, 3, 16, 16), onnx_path=str(exported), force=True)
    assert onnx.load(str(exported)).graph.node and result["steps"][-1]["path"] == str(exported)
    assert oct(exported.stat().st_mode & 0o777) != oct(0o600)  # a staged file gets the usual permissions


def test_int8_options_without_int8_are_refused():
    from deploylens.deploy.chain import int8_destination

    assert int8_destination("m.onnx", None, True) == "m.int8.onnx"
    assert int8_destination("m.onnx", "q.onnx", True) == "q.onnx"
    assert int8_destination("m.onnx", None, False) is None
    with pytest.raises(UserError, match="--int8-out is for --int8"):
        int8_destination("m.onnx", "q.onnx", False)
    with pytest.raises(UserError, match="--calib is for --int8"):
        int8_destination("m.onnx", None, False, "images/")
    with pytest.raises(UserError, match="give --onnx PATH too"):
        int8_destination(None, None, True)


def test_the_int8_row_costs_the_quantized_graph_at_int8(tmp_path):
    from deploylens.analysis.api import analyze
    from deploylens.deploy.chain import run_chain

    data = np.random.default_rng(2).standard_normal((8, 3, 16, 16)).astype(np.float32)
    result = run_chain(_tiny_net(tmp_path), (1, 3, 16, 16), onnx_path=str(tmp_path / "m.onnx"), int8=True,
                       calib=data)
    export, int8 = result["steps"][-2:]
    assert int8["path"] == str(tmp_path / "m.int8.onnx") and _files(tmp_path) == ["m.int8.onnx", "m.onnx"]
    assert int8["bytes_fused"] == analyze(str(tmp_path / "m.int8.onnx"), (1, 3, 16, 16), "int8").totals.bytes_fused
    # int8 activations and weights (int32 biases): under half the float32 export's bytes (they were above them)
    assert int8["bytes_fused"] * 2 < export["bytes_fused"]
    assert result["warnings"] == [] and result["sensitivity"]["top1_agreement"] is not None


def test_inexact_steps_kept_with_force_are_warned():
    from deploylens.deploy.chain import _inexact

    steps = [{"step": "original", "max_rel_error": 0.0}, {"step": "fuse_bn", "max_rel_error": 3e-4},
             {"step": "export_onnx", "max_rel_error": 5e-5}, {"step": "quantize_int8", "max_rel_error": 0.02}]
    assert _inexact(steps) == ["fuse_bn changed the outputs by 3.00e-04 (relative, over its tolerance 1e-04): "
                               "kept because of --force"]


# --- the INT8 report when the FP32 output does not depend on the input -------------------


def test_input_independent_outputs():
    from deploylens.deploy.onnx_steps import input_independent

    row = np.array([0.1, 0.3, 0.2, 0.0])
    assert input_independent(np.tile(row, (4, 1)))
    assert input_independent(np.tile(row, (4, 1)) + np.array([[0.0], [1e-6], [2e-6], [0.0]]) * row)
    assert not input_independent(np.stack([row, row[::-1], row, row]))
    assert not input_independent(row[None])  # one sample says nothing either way


class ConstantHead(nn.Module):
    """An untrained-like net: its logits are the head's bias whatever the input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 10)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.copy_(torch.linspace(-1, 1, 10) + 0.001 * torch.arange(10) % 3)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


def test_agreement_is_not_reported_when_the_fp32_output_does_not_depend_on_the_input(tmp_path):
    path = tmp_path / "constant.onnx"
    export_onnx(ConstantHead().eval(), path, SHAPE)
    data = np.random.default_rng(3).standard_normal((6, 3, 16, 16)).astype(np.float32)
    quantize(path, tmp_path / "int8.onnx", calib=data)
    report = sensitivity(path, tmp_path / "int8.onnx", data)
    assert report.top1_agreement is None and report.samples == 6
    assert report.warnings == ["the FP32 model gives the same output for all 6 samples (untrained weights? a zoo "
                               "model has none): top-1 agreement is not reported, and the cosine only says that the "
                               "INT8 model reproduces that one output"]
    assert report.cosine_similarity > 0.99
    one = sensitivity(path, tmp_path / "int8.onnx", data[:1])
    assert one.top1_agreement == 1.0 and one.warnings == ["one sample: top-1 agreement can only be 0% or 100%"]


def test_a_folder_of_images_is_sampled_evenly_and_centre_cropped(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    from deploylens.deploy.onnx_steps import calibration_data

    for klass in ("a", "b"):
        (tmp_path / klass).mkdir()
        for i in range(3):  # 8 wide, 4 high: the centre 4x4 after the shorter side fits 4
            pixels = np.zeros((4, 8, 3), np.uint8)
            pixels[:, 2:6] = 255 if klass == "a" else 0
            Image.fromarray(pixels).save(tmp_path / klass / f"{i}.png")
    (tmp_path / "b" / "notes.txt").write_text("skipped")
    data, notes = calibration_data(str(tmp_path), (1, 3, 4, 4), samples=2)
    assert data.shape == (2, 3, 4, 4) and notes == []
    # one image of each class folder; the centre crop is the white (a) or black (b) band
    white = (1.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    black = -np.array([0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225])
    assert np.allclose(data[0], white[:, None, None], atol=1e-5)
    assert np.allclose(data[1], black[:, None, None], atol=1e-5)
    (tmp_path / "b" / "2.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"cannot read image .*2\.png"):
        calibration_data(str(tmp_path), (1, 3, 4, 4), samples=6)

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

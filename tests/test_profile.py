"""Totals, the fused view, attribution, honesty about unknown ops."""

from __future__ import annotations

import torch
import torch.nn as nn

from deploylens import analyze, capture, zoo

F32 = 4


def conv_bn_relu(c1: int, c2: int, bias: bool = False) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c1, c2, 1, bias=bias), nn.BatchNorm2d(c2), nn.ReLU()).eval()


def test_fused_conv_bn_relu_is_one_kernel_reading_folded_weights():
    h = w = 8
    c1, c2 = 16, 32
    profile = analyze(conv_bn_relu(c1, c2), (1, c1, h, w))
    assert len(profile.kernels) == 1
    kernel = profile.kernels[0]
    assert kernel.layers == ["0", "1", "2"]
    # input + folded weights + the bias BN folding creates + output
    assert kernel.bytes_read == F32 * (h * w * c1 + c1 * c2 + c2)
    assert kernel.bytes_written == F32 * h * w * c2
    assert profile.totals.bytes_fused == kernel.bytes
    # eager: conv, then BN (x + 4 vectors), then relu each read and write
    eager = F32 * ((h * w * c1 + c1 * c2 + h * w * c2) + (2 * h * w * c2 + 4 * c2) + 2 * h * w * c2)
    assert profile.totals.bytes_eager == eager
    assert kernel.flops == 2 * h * w * c1 * c2 + (2 + 1) * h * w * c2


def test_conv_with_bias_folds_bn_without_extra_bias():
    profile = analyze(conv_bn_relu(4, 4, bias=True), (1, 4, 2, 2))
    assert profile.kernels[0].bytes_read == F32 * (16 + 16 + 4)


def test_standalone_batchnorm_reads_a_scale_and_a_shift():
    model = nn.Sequential(nn.MaxPool2d(2), nn.BatchNorm2d(8)).eval()
    profile = analyze(model, (1, 8, 4, 4))
    bn = profile.kernels[1]
    assert bn.layers == ["1"]
    assert bn.bytes_read == F32 * (8 * 2 * 2 + 2 * 8)


def test_residual_add_and_activation_join_the_last_conv():
    from nets import TinyResNet

    profile = analyze(TinyResNet(), (1, 3, 8, 8))
    second = next(k for k in profile.kernels if "add" in " ".join(k.layers))
    assert [name.split("/")[-1] for name in second.layers] == ["conv#2", "add", "relu#3"]
    # reads its input, the skip tensor and its weights; writes one output
    act = 16 * 8 * 8
    assert second.bytes_read == F32 * (act + act + 16 * 16 * 9)
    assert second.bytes_written == F32 * act


def test_an_output_read_by_two_kernels_is_written():
    class Fork(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1, bias=False)

        def forward(self, x):
            y = self.conv(x)
            return torch.relu(y), torch.sigmoid(y)

    profile = analyze(Fork(), (1, 4, 2, 2))
    # y has two readers: neither activation can be fused into the conv
    assert [k.layers for k in profile.kernels] == [["conv"], ["relu"], ["sigmoid"]]
    assert profile.kernels[0].bytes_written == F32 * 16


def test_g1_bytes_are_smallest_for_equal_channel_widths():
    """ShuffleNetV2 G1: at fixed FLOPs (c1*c2 fixed) a 1x1 conv moves least when c1 == c2."""
    h = w = 28
    widths = [(16, 1024), (32, 512), (64, 256), (128, 128), (256, 64), (512, 32)]
    bytes_by_ratio = {}
    for c1, c2 in widths:
        profile = analyze(nn.Conv2d(c1, c2, 1, bias=False), (1, c1, h, w))
        assert profile.totals.flops == 2 * h * w * 128 * 128
        bytes_by_ratio[c1 / c2] = profile.totals.bytes_eager
    assert min(bytes_by_ratio, key=bytes_by_ratio.get) == 1.0
    assert bytes_by_ratio[1.0] == F32 * (h * w * 256 + 128 * 128)


def test_unknown_ops_are_listed_never_zero():
    class Cumulative(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=1).relu()

    profile = analyze(Cumulative(), (2, 8))
    assert profile.totals.unknown_ops == {"aten.cumsum": 1}
    assert profile.totals.complete is False
    unknown = next(layer for layer in profile.layers if layer.op == "aten.cumsum")
    assert unknown.flops is None and unknown.macs is None
    assert unknown.bytes_read == F32 * 16  # traffic is still known from the shapes
    assert not profile.kernels[0].complete


def test_capture_runs_on_meta_and_attributes_module_paths():
    graph = capture("resnet18", (1, 3, 64, 64))
    assert graph.notes == []  # no fallback to real tensors
    convs = [op for op in graph.ops if op.op == "conv"]
    assert len(convs) == 20
    assert convs[0].module == "stem.0.conv"
    assert {op.module for op in graph.ops if op.op == "add"} == {f"stages.{s}.{b}" for s in range(4) for b in range(2)}
    assert all(op.module for op in graph.ops)
    assert graph.ops[-1].module == "head.2" and graph.ops[-1].kind == "linear"


def test_data_dependent_ops_fall_back_to_real_tensors_and_say_so():
    class Nonzero(nn.Module):
        def forward(self, x):
            return x[x > 0].sum()

    profile = analyze(Nonzero(), (4, 4))
    assert any("real tensors" in note for note in profile.notes)


def _state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_analyze_leaves_the_model_in_its_own_mode_with_its_own_state():
    # the README: the model is never modified. A training-mode model stays in training mode
    # (a module set to eval inside it stays in eval) and its BN statistics do not move.
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5),
                          nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)))
    model.train()
    model[4].eval()
    modes = [m.training for m in model.modules()]
    assert modes == [True, True, True, True, True, False, False, False]
    before = _state_of(model)
    profile = analyze(model, (1, 3, 8, 8))
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    # and it was costed for inference: BN and no dropout
    assert [layer.op for layer in profile.layers if layer.op != "view"] == [
        "conv", "batch_norm", "relu", "conv", "batch_norm"]


def test_a_forward_that_writes_its_state_writes_copies_on_real_tensors():
    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("calls", torch.zeros((), dtype=torch.int64))
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x):
            self.calls += 1
            return self.bn(x[x.sum(1) > -1e9])  # a boolean mask: data-dependent, not on meta

    model = Counting().train()
    before = _state_of(model)
    profile = analyze(model, (3, 4))
    assert any("real tensors" in note for note in profile.notes)
    assert model.training and model.bn.training
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert int(model.calls) == 0


def test_shared_weights_count_once():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)

        def forward(self, x):
            return self.conv(self.conv(x))

    profile = analyze(Shared(), (1, 4, 8, 8))
    assert profile.totals.params == 4 * 4 * 9
    assert [layer.params for layer in profile.layers] == [144, 144]


def test_zoo_resnets_match_torchvision_exactly():
    for name in ("resnet18", "resnet50"):
        published = zoo.variant(name).published
        totals = analyze(name).totals
        assert totals.params == int(published.params)
        assert abs(totals.macs - float(published.macs[:-1]) * 1e9) / totals.macs < 0.001


def test_peak_activation_memory_of_a_chain():
    # input 1x8x8x8 and conv output live together; relu is in place
    model = nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU(inplace=True)).eval()
    profile = analyze(model, (1, 8, 8, 8))
    assert profile.totals.peak_activation_bytes == F32 * 2 * 512


def test_rollups_by_kind_and_module():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU())
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 10))

        def forward(self, x):
            return self.head(self.stem(x))

    profile = analyze(Net(), (1, 3, 4, 4))
    conv_macs, linear_macs = 4 * 16 * 27, 64 * 10
    kinds = profile.by_kind()
    assert {kind: (k["layers"], k["flops"], k["macs"], k["params"]) for kind, k in kinds.items()} == {
        "conv": (1, 2 * conv_macs, conv_macs, 108), "activation": (1, 64, 0, 0),
        "data_movement": (2, 0, 0, 0),  # the flatten and the weight's transpose: views
        "linear": (1, 2 * linear_macs, linear_macs, 650)}
    assert kinds["linear"]["bytes_read"] == F32 * (64 + 640 + 10)
    top = profile.by_module(1)
    assert {name: (m["flops"], m["params"]) for name, m in top.items()} == {
        "stem": (2 * conv_macs + 64, 108), "head": (2 * linear_macs, 650)}
    assert {name: m["layers"] for name, m in profile.by_module(2).items()} == {
        "stem.0": 1, "stem.1": 1, "head.0": 1, "head.1": 2}

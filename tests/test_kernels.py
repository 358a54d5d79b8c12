"""The kernels each runtime runs: the runtime policies (data) checked against what the
runtime itself does, as nn-Meter's fusion-rule tester checks its rules: for small
graphs, the kernels the ONNX Runtime policy predicts are the compute nodes of the
graph ONNX Runtime's optimizer produces on this CPU."""

from __future__ import annotations

import os

import onnx
import pytest
import torch
import torch.nn as nn

from deploylens import analyze
from deploylens.kernels.onnxruntime_graph import NCHWC, as_onnx, shape_arithmetic
from deploylens.kernels.runtimes import POLICIES, RuntimePolicy, runtime_kernels
from deploylens.onnx_runtime import session


def conv_unit(act: nn.Module | None, c: int = 32) -> list[nn.Module]:
    return [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)] + ([act] if act else [])


class Residual(nn.Module):
    """A stem conv, then a block: conv-BN-ReLU, conv-BN, the block's input added back,
    then ReLU (ResNet's block end; the input comes from a conv, as inside a network)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*conv_unit(nn.ReLU()))
        self.body = nn.Sequential(*conv_unit(nn.ReLU()), *conv_unit(None))

    def forward(self, x):
        x = self.stem(x)
        return torch.relu(x + self.body(x))


class Halves(nn.Module):
    """ShuffleNetV2's split: half the channels through a conv unit, concatenated with the other half."""

    def __init__(self):
        super().__init__()
        self.branch = nn.Sequential(*conv_unit(nn.ReLU(), 16))

    def forward(self, x):
        kept, worked = x.chunk(2, dim=1)
        return torch.cat([kept, self.branch(worked)], 1)


class Squeeze(nn.Module):
    """A squeeze-excite gate: pool, two 1x1 convs, a sigmoid and a per-channel multiply."""

    def __init__(self, c: int = 32):
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        gate = torch.sigmoid(self.expand(torch.relu(self.reduce(x.mean((2, 3), keepdim=True)))))
        return x * gate


# (name, module, kernels ONNX Runtime runs): nn-Meter-style pairs and triples
GRAPHS = [
    ("conv-bn-relu", nn.Sequential(*conv_unit(nn.ReLU())), 1),
    ("conv-bn-relu6", nn.Sequential(*conv_unit(nn.ReLU6())), 1),
    ("conv-bn-hardswish", nn.Sequential(*conv_unit(nn.Hardswish())), 3),  # a HardSigmoid and a Mul after the conv
    ("conv-bn-sigmoid", nn.Sequential(*conv_unit(nn.Sigmoid())), 1),
    ("conv-bn-silu", nn.Sequential(*conv_unit(nn.SiLU())), 2),  # SiLU stays a node (QuickGelu)
    ("conv-bn-gelu", nn.Sequential(*conv_unit(nn.GELU())), 2),
    ("conv-bn-add-relu", Residual(), 3),  # the add and ReLU join the block's second conv
    ("squeeze-excite", Squeeze(), 4),  # the pool, two convs with their activations, the multiply
    ("linear-relu", nn.Sequential(nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU()), 1),
    ("conv-maxpool", nn.Sequential(*conv_unit(nn.ReLU()), nn.MaxPool2d(2)), 2),
    ("split-conv-concat", Halves(), 4),  # a Slice per half, the conv unit, the concatenation
]


def optimized_compute_nodes(model: nn.Module, shape: tuple[int, ...], workdir: str) -> list[str]:
    """Op types of the nodes ONNX Runtime's optimized graph runs on data: without the
    layout reorders and shape arithmetic it adds (:mod:`deploylens.kernels.onnxruntime_graph`
    costs those apart), nor the reshapes that only re-describe memory."""
    onnx_model = as_onnx(model.eval(), [torch.randn(shape)], workdir)
    optimized = os.path.join(workdir, "optimized.onnx")
    session(onnx_model.SerializeToString(), 1, optimized=optimized)
    graph = onnx.load(optimized).graph
    shapes = {node.name for node in shape_arithmetic(optimized)}
    return [n.op_type.removeprefix("Fused") for n in graph.node
            if n.name not in shapes and not (n.domain == NCHWC and n.op_type.startswith("Reorder"))
            and n.op_type not in ("Reshape", "Flatten", "Squeeze", "Unsqueeze")]


# the node ONNX Runtime runs for the op that heads each of the policy's kernels
NODE_OF = {"conv": "Conv", "matmul": "Gemm", "reduce": "ReduceMean", "mul": "Mul", "hardsigmoid": "HardSigmoid",
           "silu": "QuickGelu", "gelu": "Gelu", "max_pool": "MaxPool", "cat": "Concat", "slice": "Slice"}


def predicted_nodes(model: nn.Module, shape: tuple[int, ...]) -> list[str]:
    """The node each kernel of the ONNX Runtime policy stands for, by the op heading it."""
    profile = analyze(model.eval(), shape)
    ops = {layer.name: layer.op for layer in profile.layers}
    policy = POLICIES["onnxruntime"]
    heads = []
    for kernel in runtime_kernels(profile.layers, profile.kernels, policy, profile.dtype):
        head = kernel.name.rpartition(":")[2] if kernel.name.rpartition(":")[2] in NODE_OF else ops[kernel.layers[0]]
        if kernel.kind == "data_movement" and head != "cat":  # a slicing op the runtime copies
            head = "slice"
        heads.append(NODE_OF[head])
    return heads


@pytest.mark.parametrize("name,model,expected", GRAPHS, ids=[g[0] for g in GRAPHS])
def test_onnxruntime_policy_runs_the_kernels_onnxruntime_runs(name, model, expected, tmp_path):
    shape = (1, 32, 8, 8)
    ran = optimized_compute_nodes(model, shape, str(tmp_path))
    assert len(ran) == expected, ran  # the graph is what the table says ONNX Runtime makes of it
    assert sorted(predicted_nodes(model, shape)) == sorted(ran)


def test_torch_eager_runs_each_op_but_the_conv_units_epilogue():
    profile = analyze(Residual().eval(), (1, 32, 8, 8))
    kernels = runtime_kernels(profile.layers, profile.kernels, POLICIES["torch"], profile.dtype)
    # the stem's and the block's conv-BN-ReLU, conv-BN, then the add and the ReLU apart
    ops = {layer.name: layer.op for layer in profile.layers}
    assert [[ops[name] for name in k.layers] for k in kernels] == [
        ["conv", "batch_norm", "relu"], ["conv", "batch_norm", "relu"], ["conv", "batch_norm"], ["add"], ["relu"]]


def test_a_decomposed_op_reads_and_writes_each_part():
    profile = analyze(nn.Sequential(*conv_unit(nn.Hardswish())).eval(), (1, 32, 8, 8))
    conv, hardsigmoid, mul = runtime_kernels(profile.layers, profile.kernels, POLICIES["onnxruntime"])
    size = 32 * 64 * 4  # one float32 tensor of the output's size
    assert (hardsigmoid.bytes_read, hardsigmoid.bytes_written) == (size, size)
    assert (mul.bytes_read, mul.bytes_written) == (2 * size, size)
    assert hardsigmoid.flops == 4 * 32 * 64 and mul.flops == 0  # hardswish's 4 FLOPs per element, once


def test_a_policy_is_data_and_the_fused_view_is_no_policy():
    profile = analyze(Residual().eval(), (1, 32, 8, 8))
    assert runtime_kernels(profile.layers, profile.kernels, None) == profile.kernels
    everything = RuntimePolicy("all", epilogue_kinds=frozenset({"norm", "activation", "elementwise"}))
    # a runtime that fuses every epilogue runs the fused view's two kernels
    assert [k.layers for k in runtime_kernels(profile.layers, profile.kernels, everything)] == \
        [k.layers for k in profile.kernels]
    bytes_in = runtime_kernels(profile.layers, profile.kernels, POLICIES["torch"])[3]  # the add: two reads, one write
    assert (bytes_in.bytes_read, bytes_in.bytes_written) == (2 * 32 * 64 * 4, 32 * 64 * 4)

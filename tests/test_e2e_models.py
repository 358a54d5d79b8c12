"""The CLI driven as a user drives it (``python -m deploylens.cli`` in a subprocess, real
files in a temporary folder) on third-party-style models: a model file that imports the
file beside it, a model file named without its factory, a PyTorch checkpoint, an ONNX
file whose dims are written as -1, an ONNX graph with LRN, two unrelated models to
crosscheck. Each bad input: exit 2, exactly one line on stderr, nothing written.

The commands start together (each pays the torch import) and every test reads its own
command's result.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

F32 = 4

SE_BLOCK = '''
import torch
import torch.nn as nn


class SEBlock(nn.Module):
    def __init__(self, channels, internal):
        super().__init__()
        self.down = nn.Conv2d(channels, internal, 1)
        self.up = nn.Conv2d(internal, channels, 1)

    def forward(self, x):
        w = torch.sigmoid(self.up(torch.relu(self.down(x.mean((2, 3), keepdim=True)))))
        return x * w
'''

MODEL = '''
from pathlib import Path

import torch.nn as nn
from se_block import SEBlock  # the file beside this one, as the official RepVGG code imports it

Path(__file__).with_name("{marker}").touch()  # shows whether the file was run


class Net(nn.Module):
    def __init__(self, channels=8):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.se = SEBlock(channels, channels // 4)

    def forward(self, x):
        return self.se(self.conv(x))


def create():
    return Net()


def build(width, depth=2):
    return Net(width)


def _helper():
    return None
'''


class _Evil:
    """A pickle that creates a file when it is unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _vi(name, dims):
    value = helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
    shape = value.type.tensor_type.shape
    for size in dims:
        dim = shape.dim.add()
        if size is not None:
            dim.dim_value = size
    return value


def _save(nodes, inputs, outputs, initializers, path, value_info=()):
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, initializers, value_info=list(value_info))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _conv_weight(c_out, c_in, k=3):
    return numpy_helper.from_array(np.random.default_rng(0).standard_normal((c_out, c_in, k, k)).astype(np.float32),
                                   "w")


def _paddle_style_onnx(path):
    # input, outputs and value_info written as Paddle2ONNX writes them: dim_value -1
    return _save([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", ["c"], ["y"])],
                 [_vi("x", [-1, 3, 48, -1])], [_vi("y", [-1, 8, -1, -1])], [_conv_weight(8, 3)], path,
                 value_info=[_vi("c", [-1, 8, -1, -1])])


def _lrn_onnx(path):
    return _save([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                  helper.make_node("LRN", ["c"], ["n"], size=5, alpha=1e-4, beta=0.75, bias=2.0),
                  helper.make_node("Relu", ["n"], ["y"])],
                 [_vi("x", [1, 3, 16, 16])], [_vi("y", [1, 8, 16, 16])], [_conv_weight(8, 3)], path)


def _tiny_classifier_onnx(path):
    fc = numpy_helper.from_array(np.ones((10, 8), np.float32), "fc")
    return _save([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", ["c"], ["r"]),
                  helper.make_node("GlobalAveragePool", ["r"], ["g"]),
                  helper.make_node("Flatten", ["g"], ["f"]),
                  helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)],
                 [_vi("x", [1, 3, 32, 32])], [_vi("y", [1, 10])], [_conv_weight(8, 3), fc], path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every command of this file, run at once: name -> (returncode, stdout, stderr, folder)."""
    root = tmp_path_factory.mktemp("e2e_models")
    for folder, marker in [("official", "official.ran"), ("nofactory", "nofactory.ran")]:
        (root / folder).mkdir()
        (root / folder / "se_block.py").write_text(SE_BLOCK)
        (root / folder / "mymodel.py").write_text(textwrap.dedent(MODEL.format(marker=marker)))
    with open(root / "model.pt", "wb") as f:
        pickle.dump({"state_dict": _Evil(root / "unpickled.marker")}, f)
    _paddle_style_onnx(root / "paddle.onnx")
    _lrn_onnx(root / "lrn.onnx")
    _tiny_classifier_onnx(root / "tiny.onnx")
    elsewhere = root / "elsewhere"  # run from another folder: the model's folder is not the cwd
    elsewhere.mkdir()
    commands = {
        "sibling": ["analyze", str(root / "official" / "mymodel.py:create"), "-i", "1,3,16,16",
                    "--format", "json", "-o", "sibling.json"],
        "no_factory": ["analyze", str(root / "nofactory" / "mymodel.py"), "--format", "json", "-o", "nofactory.json"],
        "checkpoint": ["analyze", str(root / "model.pt"), "--format", "json", "-o", "checkpoint.json"],
        "paddle": ["analyze", str(root / "paddle.onnx"), "-i", "1,3,48,192", "--format", "json", "-o", "paddle.json"],
        "paddle_no_shape": ["analyze", str(root / "paddle.onnx"), "--format", "json", "-o", "paddle2.json"],
        "lrn": ["analyze", str(root / "lrn.onnx"), "--format", "json", "-o", "lrn.json"],
        "unrelated": ["crosscheck", "resnet18", str(root / "tiny.onnx"), "-i", "1,3,32,32", "--format", "json"],
    }
    started = {name: subprocess.Popen([sys.executable, "-m", "deploylens.cli", *args], cwd=elsewhere,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, args in commands.items()}
    results = {}
    for name, process in started.items():
        out, err = process.communicate(timeout=300)
        results[name] = (process.returncode, out, err, elsewhere)
    results["root"] = root
    return results


def _refused(result) -> str:
    """The one line of a refused command (exit 2, nothing on stdout)."""
    code, out, err, _ = result
    assert code == 2, (code, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("deploylens: error: ")
    return lines[0].removeprefix("deploylens: error: ")


def test_a_model_file_imports_the_file_beside_it_from_any_folder(runs):
    code, out, err, cwd = runs["sibling"]
    assert code == 0, err
    totals = json.loads((cwd / "sibling.json").read_text())["totals"]
    # conv 3->8 3x3 on 16x16: 16*16*8*27 MACs; the SE block's 1x1 convs 8->2 and 2->8 on 1x1: 16 + 16
    assert totals["macs"] == 16 * 16 * 8 * 27 + 16 + 16
    # conv weight 8*3*3*3; down 2*8 + 2; up 8*2 + 8
    assert totals["params"] == 216 + 18 + 24


def test_a_python_file_without_its_factory_is_refused_and_not_run(runs):
    path = runs["root"] / "nofactory" / "mymodel.py"
    assert _refused(runs["no_factory"]) == (
        f"{path} is Python code: name the function or class in it that builds the model, as {path}:NAME "
        "(callable without arguments in it: Net, create)")
    assert not (runs["root"] / "nofactory" / "nofactory.ran").exists()  # listed with ast, never imported
    assert not (runs["no_factory"][3] / "nofactory.json").exists()


def test_a_checkpoint_is_refused_and_never_unpickled(runs):
    path = runs["root"] / "model.pt"
    message = _refused(runs["checkpoint"])
    assert message.startswith(f"{path} is a PyTorch checkpoint: it holds weights or a pickled object, which "
                              "deploylens will not unpickle")
    assert "file.py:factory" in message and "ONNX export" in message
    assert not (runs["root"] / "unpickled.marker").exists()
    assert not (runs["checkpoint"][3] / "checkpoint.json").exists()


def test_dims_written_as_minus_one_are_dynamic(runs):
    code, out, err, cwd = runs["paddle"]
    assert code == 0, err
    profile = json.loads((cwd / "paddle.json").read_text())
    assert profile["input_shapes"] == [[1, 3, 48, 192]]
    assert profile["totals"]["macs"] == 48 * 192 * 8 * 27
    assert profile["totals"]["flops"] == 2 * 48 * 192 * 8 * 27 + 48 * 192 * 8  # + the relu
    assert _refused(runs["paddle_no_shape"]) == (
        "input 'x' of shape [?, 3, 48, ?] has a dynamic dim 3: pass --input-shape")
    assert not (runs["paddle_no_shape"][3] / "paddle2.json").exists()


def test_an_lrn_graph_is_costed_completely(runs):
    code, out, err, cwd = runs["lrn"]
    assert code == 0 and err == "", err  # no "no cost formula" warning
    profile = json.loads((cwd / "lrn.json").read_text())
    assert profile["totals"]["complete"] and profile["totals"]["unknown_ops"] == {}
    [lrn] = [layer for layer in profile["layers"] if layer["native"] == "LRN"]
    # size 5: 5 squares + 4 adds + scale, bias, power, divide = 13 FLOPs per element
    assert (lrn["op"], lrn["kind"], lrn["flops"], lrn["macs"]) == ("lrn", "norm", 8 * 16 * 16 * 13, 0)
    assert (lrn["bytes_read"], lrn["bytes_written"]) == (F32 * 8 * 16 * 16, F32 * 8 * 16 * 16)


def test_crosscheck_of_two_unrelated_models_is_refused(runs):
    assert _refused(runs["unrelated"]) == (
        "resnet18 and tiny.onnx are not the same network: 0 of the export's 2 conv/linear layers have a weight "
        "shape among the module's 21, and they hold 296 against 11,678,912 weights; crosscheck compares a model "
        "with its own ONNX export")

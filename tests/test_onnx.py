"""The ONNX front end: same IR, same numbers as the PyTorch module it was exported from."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from nets import TinyShuffleNet, TinyViT, randomize
from onnx import TensorProto, helper, numpy_helper

from deploylens import UserError, analyze, crosscheck, zoo
from deploylens.capture.onnx_capture import module_of, view_strides
from deploylens.cost.formulas import Work

F32 = 4


def export(model, shape, path, fold=False, opset=20, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(shape),), str(path), dynamo=False, do_constant_folding=fold,
                          opset_version=opset, **kwargs)
    return path


NETWORKS = {
    "residual": (lambda: zoo.create("resnet18"), (1, 3, 64, 64)),
    "depthwise_shuffle": (TinyShuffleNet, (1, 3, 32, 32)),
    "attention": (TinyViT, (1, 3, 32, 32)),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_module_and_its_export_agree(name, tmp_path):
    build, shape = NETWORKS[name]
    model = randomize(build())
    path = export(model, shape, tmp_path / f"{name}.onnx")
    module, exported = analyze(model, shape), analyze(path)
    assert exported.totals.complete, exported.totals.unknown_ops
    assert exported.totals.macs == module.totals.macs
    assert exported.totals.params == module.totals.params
    assert abs(exported.totals.bytes_eager - module.totals.bytes_eager) <= 0.02 * module.totals.bytes_eager
    check = crosscheck(module, exported)
    assert check["explanations"] == []
    assert check["batch_norm_layers"][0] == check["batch_norm_layers"][1]


def test_folded_batchnorm_is_explained_not_silent(tmp_path):
    model = randomize(TinyShuffleNet())
    path = export(model, (1, 3, 32, 32), tmp_path / "folded.onnx", fold=True)
    module, exported = analyze(model, (1, 3, 32, 32)), analyze(path)
    check = crosscheck(module, exported)
    assert check["macs_equal"]
    assert not check["params_equal"]
    bn_params = sum(layer.params for layer in module.layers if layer.op == "batch_norm")
    # folding turns each BN's scale/shift into a conv bias of the same width: weights change, counts shift
    assert check["batch_norm_layers"] == [10, 0]
    assert "folded 10 of 10 BatchNorm" in check["explanations"][0] and str(bn_params) in check["explanations"][0]


def test_dynamo_exporter_batchnorm_folding_is_reported(tmp_path):
    model = randomize(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU()))
    path = tmp_path / "dynamo.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(path), dynamo=True, verbose=False)
    profile = analyze(path)
    assert any("FuseBatchNormIntoConv" in note for note in profile.notes)


def test_dynamic_batch_is_fixed_by_input_shape(tmp_path):
    model = randomize(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()))
    path = export(model, (1, 3, 16, 16), tmp_path / "dyn.onnx", input_names=["x"],
                  dynamic_axes={"x": {0: "batch"}})
    one = analyze(path)
    assert any("dynamic batch" in note for note in one.notes)
    four = analyze(path, (4, 3, 16, 16))
    assert four.totals.macs == 4 * one.totals.macs == 4 * 8 * 14 * 14 * 27
    with pytest.raises(UserError, match="does not fit"):
        analyze(path, (1, 4, 16, 16))
    with pytest.raises(UserError, match="does not fit"):
        analyze(path, (1, 3, 16))


def _tiny_graph(nodes, inputs, outputs, initializers=(), opset=20):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_gemm_with_transposed_input_and_einsum():
    w = numpy_helper.from_array(np.ones((8, 16), np.float32), "w")
    model = _tiny_graph(
        [helper.make_node("Gemm", ["a", "w"], ["y"], transA=1),
         helper.make_node("Einsum", ["y", "y"], ["z"], equation="ij,kj->ik")],
        [_vi("a", [8, 4])], [_vi("z", [4, 4])], [w])
    profile = analyze(model)
    gemm, einsum = profile.layers
    assert (gemm.kind, gemm.macs) == ("linear", 4 * 8 * 16)
    assert (einsum.kind, einsum.macs) == ("matmul", 4 * 4 * 16)
    assert profile.totals.params == 128


def test_onnx_ops_map_to_the_torch_formulas():
    scale = numpy_helper.from_array(np.arange(1, 9, dtype=np.float32), "scale")
    bias = numpy_helper.from_array(np.arange(8, dtype=np.float32), "bias")
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    sizes = numpy_helper.from_array(np.array([1, 8, 8, 8], np.int64), "sizes")
    model = _tiny_graph(
        [helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["n"], axis=-1),
         helper.make_node("Clip", ["n"], ["c"]),
         helper.make_node("HardSwish", ["c"], ["h"]),
         helper.make_node("Pad", ["h", "pads"], ["p"]),
         helper.make_node("Resize", ["p", "", "", "sizes"], ["r"], mode="linear"),
         helper.make_node("GlobalAveragePool", ["r"], ["g"])],
        [_vi("x", [1, 8, 4, 8])], [_vi("g", [1, 8, 1, 1])], [scale, bias, pads, sizes])
    layers = {layer.op: layer for layer in analyze(model).layers}
    assert layers["layer_norm"].flops == 5 * 256 and layers["layer_norm"].params == 16
    assert layers["clamp"].flops == 2 * 256
    assert layers["hardswish"].flops == 4 * 256
    assert (layers["pad"].bytes_read, layers["pad"].bytes_written) == (F32 * 256, F32 * 8 * 6 * 10)
    assert layers["resize"].flops == 7 * 512
    assert layers["adaptive_avg_pool"].flops == 512


def test_an_op_unknown_to_the_ir_keeps_its_attributes_for_a_custom_formula():
    # LRN: each output sums the squares of `size` neighbouring channels (size multiplies,
    # size - 1 adds), then scales, adds the bias, raises to beta and divides (4)
    model = _tiny_graph([helper.make_node("LRN", ["x"], ["y"], size=3), helper.make_node("Relu", ["y"], ["z"])],
                        [_vi("x", [1, 8, 4, 4])], [_vi("z", [1, 8, 4, 4])])
    unknown = analyze(model)
    assert unknown.totals.unknown_ops == {"onnx.LRN": 1} and not unknown.totals.complete

    def lrn(op):
        return Work(flops=op.outputs[0].numel * (2 * op.attrs["size"] - 1 + 4))

    counted = analyze(model, custom_formulas={"onnx.LRN": lrn})
    assert counted.totals.complete and counted.totals.unknown_ops == {}
    assert [(layer.op, layer.kind, layer.flops) for layer in counted.layers] == [
        ("onnx.LRN", "other", 128 * 9), ("relu", "activation", 128)]
    assert analyze(model).totals.unknown_ops == {"onnx.LRN": 1}


def test_shapes_inference_cannot_give_come_from_one_onnxruntime_run():
    model = _tiny_graph([helper.make_node("NonZero", ["x"], ["i"]), helper.make_node("Cast", ["i"], ["y"], to=1)],
                        [_vi("x", [2, 3])], [_vi("y", None)])
    profile = analyze(model)
    assert "2 tensor shapes taken from one onnxruntime run" in profile.notes
    assert profile.layers[1].outputs == [[2, 6]]  # standard-normal inputs: no zero
    broken = _tiny_graph([helper.make_node("Foo", ["x"], ["y"], domain="my.domain")], [_vi("x", [1, 4])],
                         [_vi("y", None)])
    broken.opset_import.append(helper.make_opsetid("my.domain", 1))
    with pytest.raises(UserError, match=r"^shapes of 1 tensors could not be inferred and the model does not run "
                                        r"in onnxruntime: \[ONNXRuntimeError\].*my.domain:Foo"):
        analyze(broken)


def test_transpose_costs_a_copy_only_where_a_reshape_needs_one():
    shape_in = numpy_helper.from_array(np.array([1, 2, 4, 4, 4], np.int64), "split_shape")
    shape_out = numpy_helper.from_array(np.array([1, 8, 4, 4], np.int64), "merge_shape")
    model = _tiny_graph(
        [helper.make_node("Reshape", ["x", "split_shape"], ["a"]),
         helper.make_node("Transpose", ["a"], ["b"], perm=[0, 2, 1, 3, 4]),
         helper.make_node("Reshape", ["b", "merge_shape"], ["y"])],
        [_vi("x", [1, 8, 4, 4])], [_vi("y", [1, 8, 4, 4])], [shape_in, shape_out])
    profile = analyze(model)
    assert [layer.op for layer in profile.layers] == ["view", "view", "copy"]
    assert profile.totals.bytes_eager == 2 * F32 * 128


def test_view_strides_follow_pytorch():
    assert view_strides((4, 3), (1, 4), (12,)) is None  # a transposed matrix cannot flatten
    assert view_strides((4, 3), (1, 4), (2, 2, 3)) == (2, 1, 4)  # splitting a dim can
    assert view_strides((2, 3), (3, 1), (6,)) == (1,)


def test_embedding_from_gather_on_a_weight():
    table = numpy_helper.from_array(np.random.rand(100, 16).astype(np.float32), "table")
    model = _tiny_graph([helper.make_node("Gather", ["table", "ids"], ["e"], axis=0)],
                        [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 5])], [_vi("e", [2, 5, 16])],
                        [table])
    layer = analyze(model).layers[0]
    assert layer.op == "embedding"
    assert layer.bytes_read == 8 * 10 + F32 * 10 * 16


def test_module_paths_from_torchscript_names():
    def node(name):
        return helper.make_node("Relu", ["a"], ["b"], name=name)

    assert module_of(node("/layer1/layer1.0/conv1/Conv")) == "layer1.0.conv1"
    assert module_of(node("/0/conv/Conv")) == "0.conv"
    assert module_of(node("Relu_3")) == ""


def _external_model(tmp_path):
    model = _tiny_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], [_vi("x", [1, 64])], [_vi("y", [1, 64])],
                        [numpy_helper.from_array(np.random.rand(64, 64).astype(np.float32), "w")])
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    return path


def test_external_data_inside_the_model_folder_loads(tmp_path):
    assert analyze(_external_model(tmp_path)).totals.params == 64 * 64


@pytest.mark.parametrize("location", ["../outside.data", "/etc/passwd", "sub/../../outside.data"])
def test_external_data_escaping_the_folder_is_refused(tmp_path, location):
    path = _external_model(tmp_path)
    model = onnx.load(str(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    (tmp_path.parent / "outside.data").write_bytes(b"\0" * 64 * 64 * 4)
    onnx.save_model(model, str(path))
    with pytest.raises(UserError, match="refusing external data location"):
        analyze(path)

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
    # Hardmax: a compare per element of the slice along `axis` (8 channels) for each output
    model = _tiny_graph([helper.make_node("Hardmax", ["x"], ["y"], axis=1), helper.make_node("Relu", ["y"], ["z"])],
                        [_vi("x", [1, 8, 4, 4])], [_vi("z", [1, 8, 4, 4])])
    unknown = analyze(model)
    assert unknown.totals.unknown_ops == {"onnx.Hardmax": 1} and not unknown.totals.complete

    def hardmax(op):
        return Work(flops=op.outputs[0].numel * op.inputs[0].shape[op.attrs["axis"]])

    counted = analyze(model, custom_formulas={"onnx.Hardmax": hardmax})
    assert counted.totals.complete and counted.totals.unknown_ops == {}
    assert [(layer.op, layer.kind, layer.flops) for layer in counted.layers] == [
        ("onnx.Hardmax", "other", 128 * 8), ("relu", "activation", 128)]
    assert analyze(model).totals.unknown_ops == {"onnx.Hardmax": 1}


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


# --- other exporters' habits ---------------------------------------------------------


def _dims(name, sizes):
    """A float value whose dims are written as given: an int is a dim_value (-1 included,
    as Paddle2ONNX writes "any"), a str a dim_param, None an empty dim."""
    value = helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
    shape = value.type.tensor_type.shape
    for size in sizes:
        dim = shape.dim.add()
        if isinstance(size, int):
            dim.dim_value = size
        elif isinstance(size, str):
            dim.dim_param = size
    return value


def _conv_relu(input_dims, output_dims, value_info_dims=None):
    w = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "g", [_dims("x", input_dims)], [_dims("y", output_dims)], [w],
        value_info=[_dims("c", value_info_dims)] if value_info_dims else [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_dims_written_as_minus_one_are_dynamic():
    paddle = _conv_relu([-1, 3, 48, -1], [-1, 8, -1, -1], value_info_dims=[-1, 8, -1, -1])
    profile = analyze(paddle, (1, 3, 48, 192))
    assert profile.input_shapes == [[1, 3, 48, 192]]
    assert profile.totals.macs == 48 * 192 * 8 * 27  # 1,990,656
    assert [layer.outputs for layer in profile.layers] == [[[1, 8, 48, 192]], [[1, 8, 48, 192]]]
    with pytest.raises(UserError, match=r"^input 'x' of shape \[\?, 3, 48, \?\] has a dynamic dim 3: "
                                        r"pass --input-shape$"):
        analyze(paddle)
    with pytest.raises(UserError, match=r"^input shape \[1, 3, 32, 192\] does not fit input 'x': "
                                        r"expected \[\?, 3, 48, \?\]$"):
        analyze(paddle, (1, 3, 32, 192))
    # a -1 batch alone is a dynamic batch, set to 1; named and empty dims are dynamic as before
    batch_only = analyze(_conv_relu([-1, 3, 8, 8], [-1, 8, 8, 8]))
    assert batch_only.input_shapes == [[1, 3, 8, 8]] and "dynamic batch dim of input 'x' set to 1" in batch_only.notes
    assert analyze(_conv_relu(["n", 3, None, 8], [-1, 8, -1, 8]), (2, 3, 4, 8)).totals.macs == 2 * 4 * 8 * 8 * 27


def test_an_input_without_a_declared_shape_takes_the_shape_given():
    model = _conv_relu([1, 3, 8, 8], [1, 8, 8, 8])
    model.graph.input[0].type.tensor_type.ClearField("shape")
    assert analyze(model, (1, 3, 8, 8)).totals.macs == 8 * 8 * 8 * 27
    with pytest.raises(UserError, match=r"^input 'x' declares no shape: pass --input-shape$"):
        analyze(model)


def test_an_lrn_node_costs_what_local_response_norm_costs():
    # AlexNet's LRN: size 5; per element 5 squares + 4 adds + scale, bias, power, divide = 13 FLOPs
    node = helper.make_node("LRN", ["x"], ["y"], size=5, alpha=1e-4, beta=0.75, bias=2.0)
    exported = analyze(_tiny_graph([node], [_vi("x", [1, 16, 6, 6])], [_vi("y", [1, 16, 6, 6])]))
    module = analyze(torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0), (1, 16, 6, 6))
    for profile in (exported, module):
        assert profile.totals.complete
        [layer] = profile.layers
        assert (layer.op, layer.kind, layer.flops, layer.macs) == ("lrn", "norm", 576 * 13, 0)
        assert (layer.bytes_read, layer.bytes_written) == (F32 * 576, F32 * 576)
    assert exported.layers[0].native == "LRN" and module.layers[0].native == "nn.LocalResponseNorm"


def test_an_if_on_a_constant_condition_is_not_folded_away():
    # the TorchScript export of nn.LocalResponseNorm branches on a shape test: the If's own
    # input is a constant, but its branch reads the graph's activations
    branch = helper.make_graph([helper.make_node("Relu", ["x"], ["r"])], "then", [], [_vi("r", [1, 8])])
    cond = numpy_helper.from_array(np.array(True), "cond")
    model = _tiny_graph([helper.make_node("If", ["cond"], ["b"], then_branch=branch, else_branch=branch),
                         helper.make_node("Add", ["b", "b"], ["y"])],
                        [_vi("x", [1, 8])], [_vi("y", [1, 8])], [cond])
    profile = analyze(model)
    assert profile.totals.unknown_ops == {"onnx.If": 1} and not profile.totals.complete
    assert [(layer.op, layer.flops) for layer in profile.layers] == [("onnx.If", None), ("add", 8)]


# --- crosscheck: the same network, and what the exporter changed ----------------------


def test_crosscheck_refuses_two_different_networks(tmp_path):
    shuffle = export(randomize(TinyShuffleNet()), (1, 3, 32, 32), tmp_path / "shuffle.onnx")
    resnet = analyze("resnet18", (1, 3, 32, 32))
    # TinyShuffleNet: stem 32x3x3x3, three units of 16x16x1x1, 16x1x3x3, 16x16x1x1, head 32 -> 10
    shuffle_weights = 864 + 3 * (256 + 144 + 256) + 320
    with pytest.raises(UserError) as refused:
        crosscheck(resnet, analyze(shuffle))
    assert str(refused.value) == (
        f"resnet18 and shuffle.onnx are not the same network: 0 of the export's 11 conv/linear layers have a weight "
        f"shape among the module's 21, and they hold {shuffle_weights:,} against 11,678,912 weights; crosscheck "
        "compares a model with its own ONNX export")
    # the other way round: ResNet-18's 21 weight shapes are not the small network's
    small = analyze(randomize(TinyShuffleNet()), (1, 3, 32, 32))
    resnet_export = export(zoo.create("resnet18"), (1, 3, 32, 32), tmp_path / "resnet18.onnx")
    with pytest.raises(UserError, match=r"^TinyShuffleNet and resnet18.onnx are not the same network: 0 of the "
                                        r"export's 21 conv/linear layers"):
        crosscheck(small, analyze(resnet_export))


def test_crosscheck_explains_initializers_the_exporter_merged(tmp_path):
    # an untrained MobileNetV2: every BN weight is ones and bias zeros; the TorchScript exporter
    # keeps one tensor per width and reads the others (and the running stats) through Identity
    model = zoo.create("mobilenet_v2_100").eval()
    exported = analyze(export(model, (1, 3, 64, 64), tmp_path / "mbv2.onnx", opset=17))
    module = analyze(model, (1, 3, 64, 64))
    widths = [m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(widths) == 52 and sum(widths) == 17056 and len(set(widths)) == 13
    merged = 2 * sum(widths) - 2 * sum(set(widths))  # all weights and biases but one of each width
    assert merged == 25616
    assert (module.totals.params, exported.totals.params) == (3504872, 3479256) == (3504872, 3504872 - merged)
    # 4 tensors per BN, 2 kept per width: 208 - 26 Identity copies; running stats are 2 x 17,056 elements
    assert ("182 initializers are Identity copies of 26 others of equal value (the exporter stores equal tensors "
            "once): counted once, 25,616 params and 34,112 buffer elements fewer than as separate tensors"
            in exported.notes)
    check = crosscheck(module, exported)
    assert check["params"] == [3504872, 3479256] and check["macs_equal"]
    assert check["explanations"] == [
        "the exporter stored initializers of equal values once, read through Identity nodes (as an untrained "
        "model's BatchNorm weights of ones and biases of zeros): 25,616 params the module holds in separate tensors "
        "are counted once (the whole params difference); running statistics equal to a weight are that tensor too "
        "(buffers 34,164 vs 0)"]
    assert module.totals.buffers == 34112 + 52  # the running stats and 52 num_batches_tracked counters


def test_an_identity_that_only_passes_a_weight_on_is_no_copy():
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    passthrough = _tiny_graph(
        [helper.make_node("Identity", ["w"], ["w1"]), helper.make_node("MatMul", ["x", "w1"], ["y"])],
        [_vi("x", [1, 4])], [_vi("y", [1, 4])], [w])
    profile = analyze(passthrough)
    assert profile.totals.params == 16 and not any("Identity copies" in note for note in profile.notes)
    merged = _tiny_graph([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Identity", ["w"], ["w2"]),
                          helper.make_node("MatMul", ["h", "w2"], ["y"])], [_vi("x", [1, 4])], [_vi("y", [1, 4])], [w])
    profile = analyze(merged)
    assert profile.totals.params == 16 and [layer.params for layer in profile.layers] == [16, 16]
    assert ("1 initializers are Identity copies of 1 others of equal value (the exporter stores equal tensors once): "
            "counted once, 16 params and 0 buffer elements fewer than as separate tensors") in profile.notes


class _BranchSumFromZero(torch.nn.Module):
    """RepVGG's stride-2 block as the official code writes it: the identity branch is 0."""

    def __init__(self):
        super().__init__()
        self.dense = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.one = torch.nn.Conv2d(4, 4, 1)

    def forward(self, x):
        id_out = 0
        return torch.relu(self.dense(x) + self.one(x) + id_out)


def test_crosscheck_explains_the_adds_of_zero_the_exporter_dropped(tmp_path):
    model = randomize(_BranchSumFromZero())
    module = analyze(model, (1, 4, 8, 8))
    exported = analyze(export(model, (1, 4, 8, 8), tmp_path / "block.onnx"))
    assert [layer.native for layer in exported.layers] == ["Conv", "Conv", "Add", "Relu"]
    assert ("1 add(s) of the number 0 (x + 0, as a branch sum started from 0) counted as eager PyTorch runs them; "
            "an ONNX export drops them") in module.notes
    check = crosscheck(module, exported)
    # x + 0 on 4x8x8: 256 FLOPs, reads and writes 256 floats
    assert check["bytes_eager"][0] - check["bytes_eager"][1] == F32 * 512
    assert check["explanations"] == [
        "the exporter dropped 1 of the module's 1 adds of a Python number (256 FLOPs and 2,048 eager bytes in the "
        "module): x + 0, as where a branch sum starts from 0, computes nothing"]


def test_crosscheck_names_the_layers_a_reparameterized_export_lacks(tmp_path):
    # the block's 3x3 and 1x1 branches merged into one 3x3 conv, as RepVGG deploys it
    model = randomize(_BranchSumFromZero())
    merged = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU())
    exported = analyze(export(randomize(merged), (1, 4, 8, 8), tmp_path / "deployed.onnx"))
    check = crosscheck(analyze(model, (1, 4, 8, 8)), exported)
    assert check["macs"] == [64 * 4 * 36 + 64 * 4 * 4, 64 * 4 * 36]
    assert check["explanations"][-1] == ("the module has 1 conv/linear layer (16 weights) the export lacks: branches "
                                         "merged by re-parameterization, or a smaller network")


class _SelfAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = torch.nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x):
        return self.mha(x, x, x, need_weights=False)[0]


def test_batch_first_attention_reads_its_projection_weight_once(tmp_path):
    # batch_first attention transposes its input; the projection's matmul then multiplies a batch of
    # 5 [2, 16] slices by the weight expanded to [5, 16, 48]: a stride-0 view, read from memory once
    model = randomize(_SelfAttention())
    module = analyze(model, (2, 5, 16))
    project = next(layer for layer in module.layers if layer.op == "matmul")
    assert (project.native, project.inputs, project.outputs) == ("aten.bmm", [[5, 2, 16], [5, 16, 48]], [[5, 2, 48]])
    assert (project.bytes_read, project.bytes_written, project.params) == (F32 * (160 + 16 * 48), F32 * 480, 768)
    exported = analyze(export(model, (2, 5, 16), tmp_path / "mha.onnx"))
    assert exported.totals.macs == module.totals.macs and exported.totals.params == module.totals.params == 1088
    # what differs is real: PyTorch adds the bias in a second kernel (reads 480 + 48, writes 480) where the
    # export's MatMul + Add is one GEMM reading the 48; the export's two attention scales are 4-byte constants
    bias_add = F32 * (480 + 48 + 480)
    assert module.totals.bytes_eager - exported.totals.bytes_eager == bias_add - F32 * 48 - 2 * F32 == 3832
    assert exported.totals.bytes_fused - module.totals.bytes_fused == 2 * F32

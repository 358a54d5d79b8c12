"""Hand-derived costs of single ops captured from PyTorch (eager view, float32)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from deploylens import analyze, capture
from deploylens.analysis.profile import build_profile
from deploylens.cost.formulas import _FORMULAS, Work, formula

F32 = 4


class Lambda(nn.Module):
    def __init__(self, fn, *params: nn.Parameter):
        super().__init__()
        self.fn = fn
        self.params = nn.ParameterList(params)

    def forward(self, *xs):
        return self.fn(*xs, *self.params)


def compute_layers(profile):
    return [layer for layer in profile.layers if layer.op not in ("view", "alloc")]


def only_layer(model, shape):
    layers = compute_layers(analyze(model, shape))
    assert len(layers) == 1, [layer.op for layer in layers]
    return layers[0]


def test_a_formula_for_an_op_outside_the_ir_table_is_rejected():
    registered = dict(_FORMULAS)
    with pytest.raises(ValueError, match="'convolution'.*not an op of the IR table"):
        formula("convolution")
    with pytest.raises(ValueError, match="'aten.cumsum'"):
        formula("aten.cumsum")(lambda op: Work(0))
    assert _FORMULAS == registered


def test_a_second_formula_for_an_op_is_rejected():
    registered = dict(_FORMULAS)
    with pytest.raises(ValueError, match="'relu' would have two formulas"):
        formula("relu")
    with pytest.raises(ValueError, match="'lp_pool' would have two formulas"):
        formula("lp_pool", "lp_pool")
    assert _FORMULAS == registered


class Cumulative(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=-1).relu()


def _cumsum(op):
    # one add per element after the first of each row
    x = op.inputs[0]
    return Work(flops=x.numel - x.numel // x.shape[-1])


def test_a_custom_formula_counts_an_op_unknown_to_the_ir():
    profile = analyze(Cumulative(), (2, 8), custom_formulas={"aten.cumsum": _cumsum})
    assert profile.totals.unknown_ops == {} and profile.totals.complete
    cumsum = next(layer for layer in profile.layers if layer.op == "aten.cumsum")
    assert (cumsum.kind, cumsum.flops, cumsum.macs) == ("other", 2 * 7, 0)
    assert profile.totals.flops == 2 * 7 + 16  # + relu
    assert all(kernel.complete for kernel in profile.kernels)
    assert profile.notes == []


def test_a_custom_formula_overrides_a_registered_one():
    def conv_with_bias_adds(op):
        macs = op.outputs[0].numel * math.prod(op.inputs[1].shape[1:])
        return Work(flops=2 * macs + op.outputs[0].numel, macs=macs)

    conv = nn.Conv2d(3, 8, 3, padding=1)
    profile = analyze(conv, (1, 3, 16, 16), custom_formulas={"conv": conv_with_bias_adds})
    layer = compute_layers(profile)[0]
    assert (layer.macs, layer.flops) == (8 * 256 * 27, 2 * 8 * 256 * 27 + 8 * 256)


def test_custom_formulas_do_not_outlive_their_call():
    registered = dict(_FORMULAS)
    analyze(Cumulative(), (2, 8), custom_formulas={"aten.cumsum": _cumsum, "relu": lambda op: Work(flops=0)})
    assert _FORMULAS == registered
    after = analyze(Cumulative(), (2, 8))
    assert after.totals.unknown_ops == {"aten.cumsum": 1}
    assert after.totals.flops == 16  # relu's own formula again
    assert build_profile(capture(Cumulative(), (2, 8))).totals.unknown_ops == {"aten.cumsum": 1}


def test_a_custom_formula_for_an_op_the_model_lacks_is_noted_and_bad_ones_refused():
    profile = analyze(nn.ReLU(), (2, 3), custom_formulas={"aten.cumsum": _cumsum})
    assert profile.notes == ["custom formulas for ops this model does not run: aten.cumsum "
                             "(keys are the op names of layers[].op)"]
    with pytest.raises(TypeError, match="to a function"):
        analyze(nn.ReLU(), (2, 3), custom_formulas={"relu": 1})
    with pytest.raises(TypeError, match="returned 1, not a Work"):
        analyze(nn.ReLU(), (2, 3), custom_formulas={"relu": lambda op: 1})


def test_pointwise_conv_bytes_are_shufflenet_v2_memory_access_cost():
    h, w, c1, c2 = 14, 14, 32, 64
    layer = only_layer(nn.Conv2d(c1, c2, 1, bias=False), (1, c1, h, w))
    assert layer.macs == h * w * c1 * c2
    assert layer.flops == 2 * layer.macs
    assert layer.params == c1 * c2
    assert layer.bytes_read + layer.bytes_written == F32 * (h * w * (c1 + c2) + c1 * c2)


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 1, 1, 1), (2, 1, 1, 4), (1, 2, 2, 2), (2, 0, 1, 1)])
def test_conv2d_macs_follow_output_size_and_group_width(stride, padding, dilation, groups):
    c_in, c_out, k, size = 8, 16, 3, 15
    conv = nn.Conv2d(c_in, c_out, k, stride, padding, dilation, groups, bias=True)
    layer = only_layer(conv, (2, c_in, size, size))
    out = (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    assert layer.outputs == [[2, c_out, out, out]]
    assert layer.macs == 2 * c_out * out * out * (c_in // groups) * k * k
    assert layer.params == c_out * (c_in // groups) * k * k + c_out
    weights = c_out * (c_in // groups) * k * k + c_out
    assert layer.bytes_read == F32 * (2 * c_in * size * size + weights)


def test_depthwise_conv_costs_one_kernel_per_channel():
    layer = only_layer(nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), (1, 32, 28, 28))
    assert layer.macs == 32 * 28 * 28 * 9
    assert layer.intensity == pytest.approx(2 * 32 * 28 * 28 * 9 / (F32 * (2 * 32 * 28 * 28 + 32 * 9)), abs=1e-3)


def test_conv1d_and_conv3d():
    assert only_layer(nn.Conv1d(4, 6, 5, padding=2), (1, 4, 20)).macs == 6 * 20 * 4 * 5
    assert only_layer(nn.Conv3d(2, 3, 3, padding=1), (1, 2, 4, 5, 6)).macs == 3 * 4 * 5 * 6 * 2 * 27


def test_transposed_conv_scatters_every_input_element():
    layer = only_layer(nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, groups=2), (1, 8, 7, 7))
    assert layer.op == "conv_transpose"
    assert layer.outputs == [[1, 4, 14, 14]]
    assert layer.macs == 8 * 7 * 7 * (4 // 2) * 16


def test_linear_module_and_functional_agree():
    fc = nn.Linear(64, 10)
    module = compute_layers(analyze(fc, (3, 64)))
    functional = compute_layers(analyze(Lambda(F.linear, fc.weight, fc.bias), (3, 64)))
    assert [(x.macs, x.bytes_read, x.bytes_written, x.params, x.kind) for x in module] == \
        [(x.macs, x.bytes_read, x.bytes_written, x.params, x.kind) for x in functional]
    assert module[0].macs == 3 * 64 * 10
    assert module[0].kind == "linear"
    assert module[0].bytes_read == F32 * (3 * 64 + 64 * 10 + 10)


def test_functional_conv_counts_like_the_module():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    module = only_layer(conv, (1, 3, 16, 16))
    functional = only_layer(Lambda(lambda x, w, b: F.conv2d(x, w, b, padding=1), conv.weight, conv.bias),
                            (1, 3, 16, 16))
    assert (module.macs, module.bytes_read, module.bytes_written, module.params) == \
        (functional.macs, functional.bytes_read, functional.bytes_written, functional.params)


@pytest.mark.parametrize("fn,shapes,macs", [
    (torch.matmul, [(5, 7), (7, 3)], 5 * 7 * 3),
    (torch.matmul, [(2, 4, 5, 7), (7, 3)], 2 * 4 * 5 * 7 * 3),
    (torch.bmm, [(4, 5, 7), (4, 7, 3)], 4 * 5 * 7 * 3),
    (lambda a, b: torch.einsum("bik,bkj->bij", a, b), [(4, 5, 7), (4, 7, 3)], 4 * 5 * 7 * 3),
])
def test_matmul_family_macs(fn, shapes, macs):
    profile = analyze(Lambda(fn), shapes)
    assert profile.totals.macs == macs
    assert all(layer.kind == "matmul" for layer in compute_layers(profile) if layer.macs)


def test_baddbmm_counts_the_product_and_reads_the_addend():
    layers = compute_layers(analyze(Lambda(lambda c, a, b: torch.baddbmm(c, a, b)), [(4, 5, 3), (4, 5, 7), (4, 7, 3)]))
    assert layers[0].macs == 4 * 5 * 7 * 3
    assert layers[0].bytes_read == F32 * (4 * 5 * 3 + 4 * 5 * 7 + 4 * 7 * 3)


def test_scaled_dot_product_attention_macs():
    b, h, length, e = 2, 4, 16, 8
    profile = analyze(Lambda(F.scaled_dot_product_attention), [(b, h, length, e)] * 3)
    assert profile.totals.macs == b * h * length * length * (e + e)
    assert profile.totals.complete


def test_multihead_attention_macs():
    length, dim, heads = 10, 32, 4

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    profile = analyze(SelfAttention(), (1, length, dim))
    projections = 3 * length * dim * dim + length * dim * dim
    attention = 2 * length * length * dim
    assert profile.totals.macs == projections + attention
    assert profile.totals.params == 4 * dim * dim + 4 * dim


@pytest.mark.parametrize("pool,flops_per_output", [(nn.MaxPool2d(3, 2, 1), 9), (nn.AvgPool2d(2), 4)])
def test_window_pooling_visits_the_window_per_output(pool, flops_per_output):
    layer = only_layer(pool, (1, 8, 16, 16))
    out = layer.outputs[0]
    assert layer.flops == flops_per_output * out[1] * out[2] * out[3]
    assert layer.bytes_written == F32 * out[1] * out[2] * out[3]  # max-pool indices are not written


def test_adaptive_pool_windows_overlap_like_pytorch():
    # 7 -> 3: windows [0,3) [2,5) [4,7) per dim, 9 reads per dim, 81 per channel
    layer = only_layer(nn.AdaptiveAvgPool2d(3), (1, 2, 7, 7))
    assert layer.flops == 2 * 81
    assert only_layer(nn.AdaptiveMaxPool2d(2), (1, 2, 8, 8)).flops == 2 * 64


def test_global_pool_is_a_reduction_over_its_input():
    layer = only_layer(nn.AdaptiveAvgPool2d(1), (1, 16, 7, 7))
    assert layer.flops == 16 * 49
    assert layer.bytes_read == F32 * 16 * 49


def test_inference_batchnorm_reads_its_four_vectors():
    c, n = 16, 16 * 8 * 8
    layer = only_layer(nn.BatchNorm2d(c).eval(), (1, c, 8, 8))
    assert layer.flops == 2 * n
    assert layer.params == 2 * c
    assert layer.bytes_read == F32 * (n + 4 * c)
    profile = analyze(nn.BatchNorm2d(c), (1, c, 8, 8))
    assert profile.totals.buffers == 2 * c + 1  # running mean, var, num_batches_tracked


@pytest.mark.parametrize("norm,op,params", [
    (nn.LayerNorm(8), "layer_norm", 16), (nn.GroupNorm(2, 8), "group_norm", 16),
    (nn.InstanceNorm2d(8, affine=True), "instance_norm", 16)])
def test_normalisations_with_statistics(norm, op, params):
    shape = (2, 8, 4, 8)
    layers = [layer for layer in compute_layers(analyze(norm, shape)) if layer.kind == "norm"]
    assert [layer.op for layer in layers] == [op]
    assert layers[0].flops == 5 * 2 * 8 * 4 * 8
    assert analyze(norm, shape).totals.params == params


@pytest.mark.parametrize("module,op,per_element", [
    (nn.ReLU(), "relu", 1), (nn.ReLU6(), "clamp", 2), (nn.LeakyReLU(0.1), "leaky_relu", 2),
    (nn.Hardswish(), "hardswish", 4), (nn.Hardsigmoid(), "hardsigmoid", 3), (nn.Sigmoid(), "sigmoid", 4),
    (nn.SiLU(), "silu", 5), (nn.GELU(), "gelu", 8), (nn.Tanh(), "tanh", 4), (nn.Softmax(dim=1), "softmax", 5),
])
def test_activations_map_to_their_neutral_op(module, op, per_element):
    layer = only_layer(module, (2, 3, 5))
    assert layer.op == op
    assert layer.flops == per_element * 30
    assert (layer.bytes_read, layer.bytes_written) == (F32 * 30, F32 * 30)


def test_broadcast_add_reads_each_operand_at_its_own_size():
    layer = only_layer(Lambda(torch.add), [(1, 8, 4, 4), (1, 8, 1, 1)])
    assert layer.flops == 128
    assert layer.bytes_read == F32 * (128 + 8)
    assert layer.bytes_written == F32 * 128
    for fn in (torch.mul, torch.sub, torch.div):
        assert only_layer(Lambda(fn), [(2, 3), (2, 3)]).flops == 6


def test_channel_shuffle_views_are_free_and_the_copy_is_paid_once():
    from nets import channel_shuffle

    profile = analyze(Lambda(lambda x: channel_shuffle(x, 4)), (1, 16, 8, 8))
    views = [layer for layer in profile.layers if layer.op == "view"]
    copies = [layer for layer in profile.layers if layer.op == "copy"]
    assert len(views) == 3 and all(v.bytes_read == v.bytes_written == 0 for v in views)
    assert len(copies) == 1
    assert (copies[0].bytes_read, copies[0].bytes_written) == (F32 * 1024, F32 * 1024)
    assert profile.totals.bytes_eager == F32 * 2048


def test_split_chunk_flatten_permute_are_views_and_cat_copies():
    def fn(x):
        a, b = x.chunk(2, dim=1)
        c, d = torch.split(x, [4, 4], dim=1)
        y = torch.cat([a.permute(0, 1, 3, 2), b.reshape(1, 4, 4, 4), c.flatten(2).view(1, 4, 4, 4), d], dim=1)
        return y

    profile = analyze(Lambda(fn), (1, 8, 4, 4))
    cat = [layer for layer in profile.layers if layer.op == "cat"]
    assert len(cat) == 1 and [layer.op for layer in compute_layers(profile)] == ["cat"]
    assert (cat[0].bytes_read, cat[0].bytes_written) == (F32 * 4 * 64, F32 * 256)


@pytest.mark.parametrize("mode,per_output", [("nearest", 0), ("bilinear", 7), ("bicubic", 31)])
def test_interpolate(mode, per_output):
    layer = only_layer(Lambda(lambda x: F.interpolate(x, scale_factor=2, mode=mode)), (1, 2, 4, 4))
    assert layer.op == "resize"
    assert layer.flops == per_output * 2 * 8 * 8
    assert (layer.bytes_read, layer.bytes_written) == (F32 * 32, F32 * 128)


def test_mean_sum_and_pad():
    assert only_layer(Lambda(lambda x: x.mean(dim=(2, 3))), (2, 3, 4, 5)).flops == 120
    assert only_layer(Lambda(lambda x: x.sum()), (2, 3, 4, 5)).flops == 120
    pad = only_layer(Lambda(lambda x: F.pad(x, (1, 1, 2, 2))), (1, 1, 4, 4))
    assert (pad.flops, pad.bytes_read, pad.bytes_written) == (0, F32 * 16, F32 * 6 * 8)


def test_embedding_reads_only_the_rows_it_looks_up():
    table = nn.Embedding(1000, 16)
    profile = analyze(table, [((2, 5), "int64")])
    layer = compute_layers(profile)[0]
    assert layer.op == "embedding"
    assert layer.params == 1000 * 16
    assert layer.bytes_read == 8 * 10 + F32 * 10 * 16
    assert layer.bytes_written == F32 * 10 * 16


@pytest.mark.parametrize("dtype,divisor", [("float16", 2), ("bfloat16", 2), ("int8", 4)])
def test_narrow_dtypes_divide_the_bytes(dtype, divisor):
    conv = nn.Conv2d(8, 8, 3, bias=False)
    fp32 = only_layer(conv, (1, 8, 6, 6))
    narrow = compute_layers(analyze(conv, (1, 8, 6, 6), dtype=dtype))[0]
    assert narrow.macs == fp32.macs
    assert divisor * (narrow.bytes_read + narrow.bytes_written) == fp32.bytes_read + fp32.bytes_written


def test_local_response_norm_is_one_lrn_op():
    # F.local_response_norm runs mul, pad, avg_pool3d, mul, add, pow, div in eager PyTorch; it is
    # costed as the one LRN op ONNX and the runtimes run: size 3 -> 3 squares + 2 adds + 4 = 9 per element
    layer = only_layer(nn.LocalResponseNorm(3), (2, 6, 4, 4))
    assert (layer.op, layer.kind, layer.native) == ("lrn", "norm", "nn.LocalResponseNorm")
    assert (layer.flops, layer.macs) == (192 * 9, 0)
    assert (layer.bytes_read, layer.bytes_written) == (F32 * 192, F32 * 192)


def test_an_expanded_operand_is_read_once():
    # the weight expanded to a batch of 4 is a stride-0 view of 8 x 5 floats: read once, one weight
    layer = only_layer(Lambda(lambda x, w: torch.bmm(x, w.expand(4, 8, 5)), nn.Parameter(torch.randn(1, 8, 5))),
                       (4, 3, 8))
    assert layer.macs == 4 * 3 * 5 * 8
    assert (layer.bytes_read, layer.bytes_written, layer.params) == (F32 * (96 + 40), F32 * 60, 40)
    add = only_layer(Lambda(lambda x: x + x[:, :1].expand(2, 3)), (2, 3))  # a column broadcast by hand
    assert (add.bytes_read, add.bytes_written) == (F32 * (6 + 2), F32 * 6)

"""The IR's op table: the kinds the front ends give, independent of the cost registry."""

from __future__ import annotations

import pytest

from deploylens.capture.ir import KINDS
from deploylens.capture.onnx_capture import ONNX_OPS
from deploylens.capture.ops import OP_KINDS, is_neutral, kind_of
from deploylens.capture.torch_capture import TORCH_OPS
from deploylens.cost.formulas import _FORMULAS

# the kinds these ops had when the cost registry still gave them (before the op table)
EXPECTED_KINDS = {
    "conv": "conv", "conv_transpose": "conv_transpose", "matmul": "matmul", "einsum": "matmul",
    "attention": "attention", "relu": "activation", "clamp": "activation", "hardswish": "activation",
    "batch_norm": "norm", "layer_norm": "norm", "add": "elementwise", "mul": "elementwise", "cast": "elementwise",
    "fill": "elementwise", "max_pool": "pool", "adaptive_avg_pool": "pool", "reduce": "reduce",
    "softmax": "softmax", "log_softmax": "softmax", "resize": "resize", "embedding": "embedding",
    "view": "data_movement", "transpose": "data_movement", "cat": "data_movement", "gather": "data_movement",
}


@pytest.mark.parametrize("op", EXPECTED_KINDS)
def test_kind_of_each_op_is_the_one_it_had(op):
    assert kind_of(op) == EXPECTED_KINDS[op]


def test_a_matmul_on_a_parameter_is_linear_and_a_native_name_is_other():
    assert kind_of("matmul", operands_are_state=True) == "linear"
    assert kind_of("conv", operands_are_state=True) == "conv"
    assert kind_of("aten.cumsum") == "other" and not is_neutral("aten.cumsum")
    assert kind_of("onnx.Hardmax") == "other"


def test_the_table_uses_the_ir_kinds_and_every_op_has_a_formula():
    assert set(OP_KINDS.values()) <= set(KINDS) - {"other", "linear"}
    # every neutral op is costed: a front end never emits a neutral op without a formula
    assert set(_FORMULAS) == set(OP_KINDS)


def _spec_ops(table):
    return {spec.op for spec in table.values() if isinstance(spec.op, str)}


@pytest.mark.parametrize("table", [TORCH_OPS, ONNX_OPS], ids=["torch", "onnx"])
def test_every_op_a_front_end_maps_to_is_in_the_table(table):
    assert _spec_ops(table) - set(OP_KINDS) == set()

"""Module-level deploy transforms, each checked numerically: BatchNorm folding found by
data flow, and structural re-parameterization of parallel conv branches."""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from deploylens.capture.ir import FREE_OPS
from deploylens.capture.loader import default_input_specs, parse_input_shapes
from deploylens.errors import UserError
from deploylens.numerics import example_inputs, output_error
from deploylens.zoo.reparam import fold_bn
from deploylens.zoo.reparam import reparameterize as fold_rep_branches

TOLERANCE = 1e-4  # max |difference| relative to max |reference output|


@dataclass(frozen=True)
class Check:
    max_abs_error: float
    max_rel_error: float
    passed: bool


def check_equivalence(reference: nn.Module, transformed: nn.Module, inputs: list[torch.Tensor],
                      tolerance: float = TOLERANCE) -> Check:
    """Outputs of both modules on the same inputs (eval mode)."""
    with torch.inference_mode():
        error = output_error(transformed.eval()(*inputs), reference.eval()(*inputs))
    return Check(error.max_abs, error.max_rel, error.max_rel <= tolerance)


def _enforce(name: str, check: Check, force: bool) -> None:
    if not check.passed and not force:
        raise UserError(f"{name} changed the outputs by {check.max_rel_error:.2e} (relative, tolerance "
                        f"{TOLERANCE:.0e}): refused (use --force to keep it anyway)")


def default_inputs(model: nn.Module, input_shape: Any) -> list[torch.Tensor]:
    """The inputs a transform is checked on: ``input_shape``, or the model's default input."""
    return example_inputs(parse_input_shapes(input_shape) or default_input_specs(model, model))


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


# --- BatchNorm folding ---------------------------------------------------------------

_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def foldable_pairs(model: nn.Module, inputs: list[torch.Tensor]) -> list[tuple[str, str]]:
    """(producer module, BatchNorm module) pairs whose fold is exact: the BN reads the
    output of a conv / linear module that nothing else reads, and each module runs once
    (a shared conv feeding two BNs, or a BN reused, is left alone)."""
    from deploylens.capture.torch_capture import capture_torch

    graph = capture_torch(model, [(tuple(x.shape), "float" if x.is_floating_point() else str(x.dtype)[6:])
                                  for x in inputs], "float32", "model")
    calls: dict[str, int] = {}
    readers: dict[int, int] = {}
    producer: dict[int, Any] = {}
    for op in graph.ops:
        if op.op in FREE_OPS:
            continue
        calls[op.module] = calls.get(op.module, 0) + 1
        for t in {t.id for t in op.inputs}:
            readers[t] = readers.get(t, 0) + 1
        for t in op.outputs:
            producer[t.id] = op
    modules = dict(model.named_modules())
    pairs = []
    for op in graph.ops:
        if op.op != "batch_norm" or not isinstance(modules.get(op.module), nn.modules.batchnorm._BatchNorm):
            continue
        source = producer.get(op.inputs[0].id)
        if (source is not None and source.op in ("conv", "matmul") and isinstance(modules.get(source.module), _FOLDABLE)
                and readers.get(op.inputs[0].id) == 1 and calls.get(source.module) == 1 and calls.get(op.module) == 1):
            pairs.append((source.module, op.module))
    return pairs


@torch.no_grad()
def _fold(producer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    weight, bias = fold_bn(producer.weight, producer.bias, bn)
    producer.weight.copy_(weight)
    if producer.bias is None:
        producer.bias = nn.Parameter(bias.detach().clone())
    else:
        producer.bias.copy_(bias)


def fuse_bn(model: nn.Module, input_shape: Any = None, force: bool = False) -> nn.Module:
    """A copy of ``model`` with every foldable BatchNorm folded into the conv / linear
    before it (pairs found by tracing data flow); outputs checked against the original."""
    inputs = default_inputs(model, input_shape)
    fused = copy.deepcopy(model).eval()
    for producer_path, bn_path in foldable_pairs(fused, inputs):
        _fold(fused.get_submodule(producer_path), fused.get_submodule(bn_path))
        _set_submodule(fused, bn_path, nn.Identity())
    _enforce("fuse_bn", check_equivalence(model, fused, inputs), force)
    return fused


# --- structural re-parameterization ------------------------------------------------------


def _add_leaves(node: fx.Node, root: fx.Node) -> list[fx.Node] | None:
    """The operands of a tree of additions (each inner sum read only by the tree)."""
    is_add = node.op == "call_function" and node.target in (operator.add, torch.add)
    if not is_add:
        return [node]
    if node is not root and len(node.users) != 1:
        return [node]
    leaves = []
    for arg in node.args[:2]:
        if not isinstance(arg, fx.Node):
            return None
        sub = _add_leaves(arg, root)
        if sub is None:
            return None
        leaves += sub
    return leaves


def _branch(node: fx.Node, modules: dict[str, nn.Module]) -> tuple | None:
    """(input, kernel, bias, conv) of one branch: BN(conv(x)), conv(x) or BN(x) (identity)."""
    def module(n: fx.Node) -> nn.Module | None:
        return modules.get(n.target) if n.op == "call_module" else None

    bn = module(node)
    if isinstance(bn, nn.BatchNorm2d):
        inner = node.args[0]
        conv = module(inner) if isinstance(inner, fx.Node) else None
        if isinstance(conv, nn.Conv2d) and len(inner.users) == 1:
            weight, bias = fold_bn(conv.weight, conv.bias, bn)
            return inner.args[0], weight, bias, conv
        return inner, None, None, bn  # identity branch: its kernel depends on the convs it joins
    if isinstance(bn, nn.Conv2d):
        bias = bn.bias if bn.bias is not None else torch.zeros(bn.out_channels)
        return node.args[0], bn.weight, bias, bn
    return None


@torch.no_grad()
def _merge(branches: list[tuple], convs: list[nn.Conv2d]) -> nn.Conv2d | None:
    first = convs[0]
    kernel = max(c.kernel_size[0] for c in convs)
    same = all(c.stride == first.stride and c.groups == first.groups and c.out_channels == first.out_channels
               and c.in_channels == first.in_channels and c.dilation == (1, 1) and c.kernel_size[0] == c.kernel_size[1]
               and c.kernel_size[0] % 2 == 1 and c.padding == (c.kernel_size[0] // 2,) * 2 for c in convs)
    if not same:
        return None
    per_group = first.in_channels // first.groups
    weight = first.weight.new_zeros(first.out_channels, per_group, kernel, kernel)
    bias = first.weight.new_zeros(first.out_channels)
    for _, w, b, owner in branches:
        if w is None:  # identity BN: a centred 1 per channel
            if first.stride != (1, 1) or first.in_channels != first.out_channels:
                return None
            identity = weight.new_zeros(weight.shape)
            for c in range(first.out_channels):
                identity[c, c % per_group, kernel // 2, kernel // 2] = 1.0
            w, b = fold_bn(identity, None, owner)
        pad = (kernel - w.shape[-1]) // 2
        weight += F.pad(w, (pad, pad, pad, pad))
        bias += b
    fused = nn.Conv2d(first.in_channels, first.out_channels, kernel, first.stride, kernel // 2, groups=first.groups,
                      bias=True)
    fused.weight.copy_(weight)
    fused.bias.copy_(bias)
    return fused


def _reparameterize_traced(model: nn.Module) -> tuple[nn.Module, int]:
    """Merge parallel conv(-BN) / identity-BN branches summed over one input (found in
    the traced graph) into one conv. Returns the rewritten module and the merge count."""
    try:
        traced = fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - untraceable Python: only the zoo's blocks are folded
        return model, 0
    modules = dict(traced.named_modules())
    merged = 0
    for node in list(traced.graph.nodes):
        if node.op != "call_function" or node.target not in (operator.add, torch.add) or node.graph is None:
            continue
        if any(u.op == "call_function" and u.target in (operator.add, torch.add) and len(node.users) == 1
               for u in node.users):
            continue  # only the root of an addition tree
        leaves = _add_leaves(node, node)
        if not leaves or len(leaves) < 2:
            continue
        branches = [_branch(leaf, modules) for leaf in leaves]
        if any(b is None for b in branches) or len({b[0] for b in branches}) != 1:
            continue
        convs = [b[3] for b in branches if isinstance(b[3], nn.Conv2d)]
        if not convs:
            continue
        fused = _merge(branches, convs)
        if fused is None:
            continue
        name = f"reparameterized_{merged}"
        traced.add_submodule(name, fused)
        with traced.graph.inserting_before(node):
            replacement = traced.graph.call_module(name, (branches[0][0],))
        node.replace_all_uses_with(replacement)
        merged += 1
    if merged:
        traced.graph.eliminate_dead_code()
        traced.delete_all_unused_submodules()
        traced.recompile()
    return traced, merged


def reparameterize(model: nn.Module, input_shape: Any = None, force: bool = False) -> nn.Module:
    """A copy of ``model`` in deploy form: the zoo's re-parameterizable blocks folded by
    their own ``reparameterize()``, and parallel 3x3 / 1x1 / identity branches of any
    other model merged where the traced graph shows the pattern. Checked numerically."""
    inputs = default_inputs(model, input_shape)
    deploy = fold_rep_branches(copy.deepcopy(model).eval())
    deploy, _ = _reparameterize_traced(deploy)
    _enforce("reparameterize", check_equivalence(model, deploy, inputs), force)
    return deploy.eval()

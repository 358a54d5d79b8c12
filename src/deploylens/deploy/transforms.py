"""Module-level deploy transforms, each checked numerically: BatchNorm folding found by
data flow, and structural re-parameterization of parallel conv branches."""

from __future__ import annotations

import copy
import operator
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from deploylens.capture.ir import FREE_OPS
from deploylens.capture.loader import default_input_specs, parse_input_shapes
from deploylens.errors import UserError, first_line
from deploylens.numerics import example_inputs, output_error
from deploylens.zoo.reparam import CONVS, Branch, RepBranches, bn_affine, fold_bn, merge_branches
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
#
# A branch sum is a tree of additions (``+``, ``+=``, ``torch.add``, ``sum()``, ``-``, with
# numbers such as a starting ``0`` anywhere) whose addends, followed back through per-channel
# affine steps (inference BN, identity, a scalar factor), end at a conv or at a tensor
# itself (an identity). Addends over one input with at least one conv are one block; a
# block whose branches agree (stride, groups, alignment) becomes one conv with bias.

_ADD = (operator.add, operator.iadd, torch.add)
_SUB = (operator.sub, operator.isub, torch.sub)
_SCALE = (operator.mul, torch.mul, "mul")
_PASS = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


@dataclass
class Reparameterization:
    """The deploy-form model, the blocks folded, and those left alone with the reason."""

    model: nn.Module
    folded: list[str]
    unfolded: list[dict]  # {"block": module path, "reason": why it stays multi-branch}
    check: Check | None = None  # outputs against the original's


def _operands(node: Any) -> list[tuple[Any, float]] | None:
    """The two operands of an addition or subtraction node with their factors, or None."""
    if not isinstance(node, fx.Node):
        return None
    method = node.op == "call_method" and node.target in ("add", "add_", "sub", "sub_")
    if not (method or node.op == "call_function" and node.target in _ADD + _SUB):
        return None
    args = list(node.args) + ([node.kwargs["other"]] if "other" in node.kwargs else [])
    alpha = node.kwargs.get("alpha", 1)
    if len(args) != 2 or not isinstance(alpha, (int, float)):
        return None
    negative = node.target in _SUB or node.target in ("sub", "sub_")
    return [(args[0], 1.0), (args[1], -float(alpha) if negative else float(alpha))]


def _terms(node: fx.Node) -> list[tuple[Any, float]] | None:
    """The addends of the addition tree rooted at ``node`` (an inner sum read elsewhere
    is an addend itself): (fx node or number, factor)."""
    terms = []
    for operand, factor in _operands(node):
        inner = _operands(operand)
        if inner is not None and len(operand.users) == 1:
            terms += [(o, f * factor) for o, f in _terms(operand)]
        elif isinstance(operand, (fx.Node, int, float)) and not isinstance(operand, bool):
            terms.append((operand, factor))
        else:
            return None
    return terms


def _affine_step(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[fx.Node, Any, Any] | None:
    """(input, scale, shift) where ``node`` is ``scale * input + shift`` per channel."""
    if node.op == "call_module":
        module = modules[node.target]
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_var is not None:
            return node.args[0], *bn_affine(module)
        return (node.args[0], 1.0, 0.0) if isinstance(module, _PASS) else None
    target = node.target if node.op in ("call_function", "call_method") else None
    args = [a for a in node.args if isinstance(a, fx.Node)]
    numbers = [a for a in node.args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    if len(args) != 1 or node.kwargs:
        return None
    if target in _SCALE and len(numbers) == 1:
        return args[0], float(numbers[0]), 0.0
    if target in (operator.truediv, torch.div, "div") and len(numbers) == 1 and node.args[0] is args[0] \
            and numbers[0] != 0:
        return args[0], 1.0 / numbers[0], 0.0
    if target in (operator.neg, torch.neg, "neg") and len(node.args) == 1:
        return args[0], -1.0, 0.0
    return None


def _canonical(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node:
    """``node`` with pass-through modules (identity, eval-mode dropout) looked through."""
    while node.op == "call_module" and isinstance(modules.get(node.target), _PASS):
        node = node.args[0]
    return node


def _walk(node: fx.Node, factor: float, modules: dict[str, nn.Module]) -> tuple[list, nn.Module | None]:
    """The affine steps back from one addend: [(node, scale, shift, name)], the addend
    being ``scale * node + shift`` at each, ending at a conv's input (and the conv) or at
    the first tensor that is not an affine step."""
    scale, shift, name, chain = factor, 0.0, None, []
    while True:
        chain.append((node, scale, shift, name))
        step = _affine_step(node, modules)
        if step is None:
            break
        name = name or str(node.target)
        node, s, t = step
        scale, shift = scale * s, shift + scale * t
    module = modules.get(node.target) if node.op == "call_module" else None
    if isinstance(module, CONVS):
        chain.append((_canonical(node.args[0], modules), scale, shift, str(node.target)))
        return chain, module
    return chain, None


def _branches(leaves: list[tuple[fx.Node, float]], modules: dict[str, nn.Module]) -> list[tuple[fx.Node, Branch]]:
    """(input, branch) per addend: a conv branch over its conv's input, or an identity
    branch over the first tensor on its affine chain that a conv branch reads (else over
    the chain's end)."""
    walks = [_walk(leaf, factor, modules) for leaf, factor in leaves]
    conv_inputs = {chain[-1][0] for chain, conv in walks if conv is not None}
    found = []
    for chain, conv in walks:
        cut = next((i for i, (n, *_) in enumerate(chain[:-1] if conv is not None else chain)
                    if n in conv_inputs), None)
        if cut is not None:
            x, scale, shift, name = chain[cut]
            conv = None
        else:
            x, scale, shift, name = chain[-1]
        found.append((x, Branch(conv, scale, shift, name or f"identity of {x.name}")))
    return found


def _reaches(node: fx.Node, targets: set, modules: dict[str, nn.Module], convs: int, depth: int = 12) -> bool:
    """Whether ``node`` is computed from one of ``targets`` through at most ``convs`` convs."""
    if node in targets:
        return True
    if depth == 0 or node.op in ("placeholder", "get_attr"):
        return False
    if node.op == "call_module" and isinstance(modules.get(node.target), CONVS):
        convs -= 1
    return convs >= 0 and any(_reaches(n, targets, modules, convs, depth - 1) for n in node.all_input_nodes)


def _block_name(root: fx.Node) -> str:
    """The module whose forward computes ``root`` ("" for the traced module itself)."""
    return list(root.meta.get("nn_module_stack") or {"": None})[-1]


_DESCRIBED = {"mul": "a product of two tensors (a gate?)", "getitem": "indexing or slicing"}


def _describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"{type(modules[node.target]).__name__} {node.target}"
    name = getattr(node.target, "__name__", str(node.target))
    after = next((str(a.target) for a in node.all_input_nodes if a.op == "call_module"), None)
    return _DESCRIBED.get(name, name) + (f" after {after}" if after else "")


def _fold_sum(traced: fx.GraphModule, root: fx.Node, modules: dict[str, nn.Module], path: str,
              report: Reparameterization) -> bool:
    """Fold the branch sum rooted at ``root`` where it can; report a block it cannot."""
    terms = _terms(root)
    if terms is None:
        return False
    constant = sum(f * t for t, f in terms if not isinstance(t, fx.Node))
    leaves = [(t, f) for t, f in terms if isinstance(t, fx.Node)]
    groups: dict[fx.Node, list[tuple[fx.Node, float, Branch]]] = {}
    for (leaf, factor), (x, branch) in zip(leaves, _branches(leaves, modules)):
        groups.setdefault(x, []).append((leaf, factor, branch))
    with_conv = {x for x, members in groups.items() if any(b.conv is not None for _, _, b in members)}
    if not with_conv:
        return False
    local = _block_name(root)
    block = ".".join(p for p in (path, local) if p)
    reasons, fused = [], {}
    for x, members in groups.items():
        if x in with_conv and len(members) > 1:
            merged = merge_branches([b for _, _, b in members], 0.0 if fused else constant)
            if isinstance(merged, str):
                reasons.append(merged)
            else:
                fused[x] = merged
        elif with_conv - {x} and _reaches(x, with_conv - {x}, modules, 0 if x in with_conv else 1):
            # an addend computed from a conv branch's input through a nonlinearity
            reasons.append(f"a branch is not linear: {_describe(members[0][0] if x not in with_conv else x, modules)}")
    if reasons:
        report.unfolded.append({"block": block or "(model)", "reason": "; ".join(reasons)})
    if not fused:
        return False
    report.folded.append(block or "(model)")
    names = set(dict(traced.named_modules()))
    with traced.graph.inserting_before(root):
        total = None
        for x, conv in fused.items():
            name, index = f"{local}.reparam" if local else "reparam", 1
            while name in names:
                name, index = f"{local}.reparam_{index}" if local else f"reparam_{index}", index + 1
            names.add(name)
            traced.add_submodule(name, conv)
            modules[name] = conv
            node = traced.graph.call_module(name, (x,))
            total = node if total is None else traced.graph.call_function(operator.add, (total, node))
        for leaf, factor, _ in (m for x, members in groups.items() if x not in fused for m in members):
            addend = leaf if factor == 1.0 else traced.graph.call_function(operator.mul, (leaf, factor))
            total = traced.graph.call_function(operator.add, (total, addend))
    root.replace_all_uses_with(total)
    return True


def _looks_multi_branch(module: nn.Module) -> bool:
    """A module with two or more branch-like children: a conv, a BN, or a container of
    convs and BNs only (a ``conv_bn`` Sequential)."""
    linear = CONVS + (nn.modules.batchnorm._BatchNorm,)

    def branch_like(child: nn.Module) -> bool:
        parts = list(child.children())
        return isinstance(child, linear) or bool(parts) and isinstance(child, nn.Sequential) and \
            all(isinstance(p, linear) for p in parts)

    return sum(branch_like(c) for c in module.children()) >= 2


def _fold_traced(module: nn.Module, path: str, report: Reparameterization) -> nn.Module:
    """``module`` with its branch sums folded, traced with torch.fx; a module fx cannot
    trace is folded child by child (and reported when it looks like a multi-branch block)."""
    try:
        traced = fx.symbolic_trace(module)
    except Exception as error:  # noqa: BLE001 - untraceable Python: fold inside it
        for name, child in module.named_children():
            folded = _fold_traced(child, f"{path}.{name}" if path else name, report)
            if folded is not child:
                setattr(module, name, folded)
        if _looks_multi_branch(module):
            report.unfolded.append({"block": path or "(model)",
                                    "reason": f"torch.fx cannot trace its forward ({first_line(error)})"})
        return module
    modules = dict(traced.named_modules())
    changed = False
    for node in list(traced.graph.nodes):
        users = list(node.users)
        if _operands(node) is None or (len(users) == 1 and _operands(users[0]) is not None):
            continue  # only the root of an addition tree
        changed |= _fold_sum(traced, node, modules, path, report)
    if not changed:
        return module
    traced.graph.eliminate_dead_code()
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced


def reparameterize_report(model: nn.Module, input_shape: Any = None, force: bool = False) -> Reparameterization:
    """:func:`reparameterize`, with the blocks it folded and those it could not fold (why)."""
    inputs = default_inputs(model, input_shape)
    deploy = copy.deepcopy(model).eval()
    zoo_blocks = [name for name, m in deploy.named_modules() if isinstance(m, RepBranches) and m.fused is None]
    fold_rep_branches(deploy)
    report = Reparameterization(deploy, list(zoo_blocks), [])
    report.model = _fold_traced(deploy, "", report).eval()
    report.check = check_equivalence(model, report.model, inputs)
    _enforce("reparameterize", report.check, force)
    return report


def reparameterize(model: nn.Module, input_shape: Any = None, force: bool = False) -> nn.Module:
    """A copy of ``model`` in deploy form: every sum of parallel linear branches over one
    input (conv-BN of any kernel size, 1x1 conv-BN, BN-only or plain identity; added in
    any form, a starting ``0`` included) folded into one conv with bias; checked
    numerically. A block that cannot be folded stays as it is, with a warning that says why
    (:func:`reparameterize_report` returns them)."""
    report = reparameterize_report(model, input_shape, force)
    for block in report.unfolded:
        warnings.warn(f"re-parameterization left {block['block']} unfolded: {block['reason']}", stacklevel=2)
    return report.model

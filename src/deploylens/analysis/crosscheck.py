"""A PyTorch model's analysis beside its ONNX export's, the differences explained.

First the two must be the same network: the export's conv / linear weights must be the
module's (an exporter folds BatchNorm into them, merges or drops tensors, but never
invents a weight shape), else the comparison would "explain" the difference between two
unrelated models. Then each difference an exporter makes is named with its numbers:

* BatchNorm folded into the convs (TorchScript's ``do_constant_folding=True``, the dynamo
  exporter's optimizer);
* initializers of equal values merged into one (the TorchScript exporter's deduplication:
  freshly initialised BatchNorm weights of ones and biases of zeros become one tensor per
  width, read through Identity nodes, running statistics included);
* adds of a Python number dropped (``x + 0``, where a branch sum starts from ``0``).
"""

from __future__ import annotations

import math
from collections import Counter

from deploylens.analysis.profile import Profile
from deploylens.cost.records import LayerCost
from deploylens.errors import UserError

# the share of the export's conv/linear layers whose weight shape the module may lack
# (an exporter that splits a fused weight) before the two count as different networks
FOREIGN_LAYERS_ALLOWED = 0.5
WEIGHTS_TOLERANCE = 0.01  # the export may not hold more conv/linear weights than this above the module's


def weight_shapes(profile: Profile) -> Counter:
    """The multiset of conv / linear weight shapes, in a form both front ends share: a
    conv's weight as stored ([C_out, C_in / groups, *kernel]), a linear layer's as its
    sorted (in, out) pair (PyTorch reads it transposed, ONNX either way)."""
    shapes: Counter = Counter()
    for layer in profile.layers:
        if layer.kind in ("conv", "conv_transpose") and len(layer.inputs) > 1:
            shapes[(layer.kind, tuple(layer.inputs[1]))] += 1
        elif layer.kind == "linear" and layer.macs and layer.outputs and layer.outputs[0]:
            out = layer.outputs[0]
            contracted = layer.macs // math.prod(out)
            shapes[("linear", tuple(sorted((contracted, out[-1]))))] += 1
    return shapes


def _volume(shapes: Counter) -> int:
    return sum(math.prod(shape) * count for (_, shape), count in shapes.items())


def check_same_network(module_profile: Profile, onnx_profile: Profile) -> None:
    """Raise :class:`UserError` (one line) when the export's conv/linear weights cannot be
    the module's: too many of its weight shapes are not in the module, or it holds more
    weights."""
    module, export = weight_shapes(module_profile), weight_shapes(onnx_profile)
    if not module and not export:
        return
    layers_m, layers_e = sum(module.values()), sum(export.values())
    foreign = sum((export - module).values())
    volume_m, volume_e = _volume(module), _volume(export)
    if (layers_e == 0 or foreign > FOREIGN_LAYERS_ALLOWED * layers_e
            or volume_e > volume_m * (1 + WEIGHTS_TOLERANCE)):
        raise UserError(
            f"{module_profile.model} and {onnx_profile.model} are not the same network: {layers_e - foreign} of the "
            f"export's {layers_e} conv/linear layers have a weight shape among the module's {layers_m}, and they "
            f"hold {volume_e:,} against {volume_m:,} weights; crosscheck compares a model with its own ONNX export")


def _scalar_adds(layers: list[LayerCost], source: str) -> list[LayerCost]:
    """Adds and subtractions of a number: in PyTorch the number is no tensor (one input),
    in ONNX it is a one-element constant."""
    adds = [layer for layer in layers if layer.op in ("add", "sub")]
    if source == "torch":
        return [layer for layer in adds if len(layer.inputs) == 1]
    return [layer for layer in adds if len(layer.inputs) == 2 and min(math.prod(s) for s in layer.inputs) == 1
            and max(math.prod(s) for s in layer.inputs) > 1]


def crosscheck(module_profile: Profile, onnx_profile: Profile) -> dict:
    """Compare a module's profile with its ONNX export's and explain the differences.

    A :class:`UserError` when the two are not the same network (see
    :func:`check_same_network`).
    """
    check_same_network(module_profile, onnx_profile)
    mp, op = module_profile.totals, onnx_profile.totals
    bn_module = sum(1 for layer in module_profile.layers if layer.op == "batch_norm")
    bn_onnx = sum(1 for layer in onnx_profile.layers if layer.op == "batch_norm")
    bn_params = sum(layer.params for layer in module_profile.layers if layer.op == "batch_norm")
    explanations = []
    if bn_onnx < bn_module:
        explanations.append(
            f"the exporter folded {bn_module - bn_onnx} of {bn_module} BatchNorm layers into the preceding convs "
            f"(BN scale/shift: {bn_params} params in the module); export with do_constant_folding=False "
            "to keep them")
    explanations += _merged_initializers(module_profile, onnx_profile, bn_kept=0 < bn_module == bn_onnx)
    explanations += _dropped_scalar_adds(module_profile, onnx_profile)
    explanations += _missing_layers(module_profile, onnx_profile)
    bytes_delta = (op.bytes_eager - mp.bytes_eager) / mp.bytes_eager if mp.bytes_eager else 0.0
    return {
        "macs_equal": mp.macs == op.macs,
        "macs": [mp.macs, op.macs],
        "params_equal": mp.params == op.params,
        "params": [mp.params, op.params],
        "bytes_eager": [mp.bytes_eager, op.bytes_eager],
        "bytes_eager_rel_diff": round(bytes_delta, 5),
        "batch_norm_layers": [bn_module, bn_onnx],
        "explanations": explanations,
    }


def _shared_params(profile: Profile) -> int:
    # every layer counts the params it reads; the totals count each stored tensor once
    return sum(layer.params for layer in profile.layers) - profile.totals.params


def _merged_initializers(module_profile: Profile, onnx_profile: Profile, bn_kept: bool) -> list[str]:
    merged = _shared_params(onnx_profile) - _shared_params(module_profile)
    if merged <= 0:
        return []
    mp, op = module_profile.totals, onnx_profile.totals
    whole = " (the whole params difference)" if mp.params - op.params == merged else ""
    stats = (f"; running statistics equal to a weight are that tensor too (buffers {mp.buffers:,} vs {op.buffers:,})"
             if bn_kept and op.buffers < mp.buffers else "")
    return [f"the exporter stored initializers of equal values once, read through Identity nodes (as an untrained "
            f"model's BatchNorm weights of ones and biases of zeros): {merged:,} params the module holds in separate "
            f"tensors are counted once{whole}{stats}"]


def _dropped_scalar_adds(module_profile: Profile, onnx_profile: Profile) -> list[str]:
    in_module = _scalar_adds(module_profile.layers, "torch")
    dropped = len(in_module) - len(_scalar_adds(onnx_profile.layers, "onnx"))
    if dropped <= 0:
        return []
    cost = ""
    if dropped == len(in_module):
        flops = sum(layer.flops or 0 for layer in in_module)
        moved = sum(layer.bytes_read + layer.bytes_written for layer in in_module)
        cost = f" ({flops:,} FLOPs and {moved:,} eager bytes in the module)"
    return [f"the exporter dropped {dropped} of the module's {len(in_module)} adds of a Python number{cost}: "
            "x + 0, as where a branch sum starts from 0, computes nothing"]


def _missing_layers(module_profile: Profile, onnx_profile: Profile) -> list[str]:
    missing = weight_shapes(module_profile) - weight_shapes(onnx_profile)
    if not missing:
        return []
    count = sum(missing.values())
    return [f"the module has {count} conv/linear layer{'s' if count != 1 else ''} ({_volume(missing):,} weights) "
            "the export lacks: branches merged by re-parameterization, or a smaller network"]

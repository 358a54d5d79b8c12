"""A PyTorch model's analysis beside its ONNX export's, the differences explained."""

from __future__ import annotations

from deploylens.analysis.profile import Profile


def crosscheck(module_profile: Profile, onnx_profile: Profile) -> dict:
    """Compare a module's profile with its ONNX export's and explain the differences."""
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

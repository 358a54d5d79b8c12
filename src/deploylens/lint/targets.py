"""Lint targets: a device for the numbers plus the traits the rules need, each with
its source. Traits nobody published stay ``None`` ("unknown"), never guessed."""

from __future__ import annotations

from dataclasses import dataclass, field

from deploylens.errors import UserError
from deploylens.hardware.calibration_profile import CalibrationProfile
from deploylens.hardware.spec import HardwareSpec, load_catalog

_GUIDE = "ShuffleNetV2 (ECCV 2018) Table 8 and MobileNetV2 (CVPR 2018): depthwise networks measured fast on ARM CPUs"
_NVIDIA_TC = "NVIDIA Deep Learning Performance Guide, Tensor Core requirements (FP16: multiples of 8; INT8: 16)"
_NNIE = "HiSilicon Hi351x NNIE documentation as quoted by the field guide (inputs multiple of 4, outputs of 16)"
_RKNN = "rockchip-linux/rknn-toolkit2 doc/RKNNToolKit2_OP_Support-1.4.0.md (ops marked Not Supported)"
_SIMD = ("this CPU's SIMD width in fp32 lanes: oneDNN and ONNX Runtime block channels by it (oneDNN's nChw16c "
         "layouts, ONNX Runtime's NCHWc transformer), so misaligned channels run padded or unblocked")
_GGHOST = "G-GhostNet (IJCV 2022); MobileDets (CVPR 2021); CSPNet: depthwise conv is memory-bound on accelerators"

# ONNX ops the RKNN Toolkit2 1.4.0 op list marks "Not Supported"
RKNN_UNSUPPORTED = frozenset({
    "Abs", "Acos", "Acosh", "And", "Asin", "Asinh", "Atan", "Atanh", "BitShift", "Ceil", "Celu", "Compress",
    "ConcatFromSequence", "ConvInteger", "Cos", "Cosh", "CumSum", "Einsum", "Erf", "Expand", "Floor",
    "GatherElements", "GatherND", "GlobalLpPool", "Hardmax", "IsInf", "IsNaN", "Log", "Loop", "LpPool",
    "MatMulInteger", "Mean", "Mod", "Multinomial", "Neg", "NonMaxSuppression", "NonZero", "Not", "OneHot", "Or",
    "QLinearConv", "QLinearMatMul", "RNN", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
    "Range", "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceProd", "Round", "Scan",
    "ScatterElements", "ScatterND", "Selu", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase",
    "SequenceInsert", "SequenceLength", "Shrink", "Sign", "Sin", "Sinh", "Softsign", "SplitToSequence",
    "StringNormalizer", "Sum"})


@dataclass
class Target:
    name: str
    device_class: str  # cpu, gpu or npu
    spec: HardwareSpec | None  # numbers for impacts (None: bytes only)
    dtype: str = "fp32"
    calibration: CalibrationProfile | None = None  # for "this"
    channel_multiple: tuple[int, int] | None = None  # (inputs, outputs)
    channel_source: str = ""
    depthwise_optimized: bool | None = None
    depthwise_source: str = ""
    unsupported_ops: frozenset[str] | None = None  # ONNX op types; None: no published list found
    supported_ops: frozenset[str] | None = None
    ops_source: str = ""
    int8: bool = False
    notes: list[str] = field(default_factory=list)


PLATFORMS = ("mobile-cpu", "npu", "nvidia-gpu")


def _platform(name: str, catalog: dict[str, HardwareSpec], int8: bool) -> Target:
    if name == "mobile-cpu":
        return Target(name, "cpu", catalog["snapdragon_855"], "fp32", depthwise_optimized=True,
                      depthwise_source="mobile CPUs run depthwise conv efficiently (" + _GUIDE + ")",
                      notes=["numbers from snapdragon_855 (catalog)"])
    if name == "npu":
        return Target(name, "npu", catalog["rockchip_rk3588_npu"], "int8", channel_multiple=(4, 16),
                      channel_source=_NNIE, depthwise_optimized=False, depthwise_source=_GGHOST,
                      unsupported_ops=RKNN_UNSUPPORTED, ops_source=_RKNN, int8=True,
                      notes=["numbers from rockchip_rk3588_npu (catalog); op list: RKNN Toolkit2"])
    return Target(name, "gpu", catalog["nvidia_t4"], "int8" if int8 else "fp16",
                  channel_multiple=(16, 16) if int8 else (8, 8), channel_source=_NVIDIA_TC,
                  depthwise_optimized=False, depthwise_source=_GGHOST, int8=int8,
                  notes=["numbers from nvidia_t4 (catalog); TensorRT op list: unknown (no published list read)"])


def resolve(name: str, int8: bool = False) -> Target:
    """A platform class, a catalog device or ``this``."""
    catalog = load_catalog()
    if name in PLATFORMS:
        return _platform(name, catalog, int8)
    if name == "this":
        import torch

        from deploylens.hardware.calibration_profile import load, profile_path
        from deploylens.hardware.local import cpu_info, this_cpu, vector_lanes

        path = profile_path("torch", torch.get_num_threads())
        profile = load(path) if path.exists() else None
        lanes = vector_lanes(cpu_info()["isa"])
        return Target("this", "cpu", this_cpu(), "fp32", calibration=profile, depthwise_optimized=True,
                      depthwise_source="CPU", channel_multiple=(lanes, lanes) if lanes > 1 else None,
                      channel_source=_SIMD, notes=[] if profile else
                      ["no calibration for this machine: impacts in bytes only (deploylens hw calibrate)"])
    if name not in catalog:
        raise UserError(f"unknown target {name!r}; one of: {', '.join(PLATFORMS)}, this, {', '.join(sorted(catalog))}")
    spec = catalog[name]
    target = Target(name, spec.device_class, spec, "int8" if int8 or "fp32" not in spec.peak else "fp32", int8=int8)
    if spec.device_class == "gpu" and spec.family in ("nvidia_gpu", "jetson"):
        target.channel_multiple, target.channel_source = ((16, 16) if int8 else (8, 8)), _NVIDIA_TC
        target.dtype = "int8" if int8 else "fp16"
        target.depthwise_optimized, target.depthwise_source = False, _GGHOST
    if name.startswith("horizon_sunrise_x3"):
        target.depthwise_optimized = True
        target.depthwise_source = ("Horizon X3 BPU has an optimized depthwise path (the field guide's claim; "
                                   "no vendor document read)")
        target.int8 = True
    elif spec.device_class == "npu":
        target.depthwise_optimized, target.depthwise_source, target.int8 = False, _GGHOST, True
    if name.startswith("rockchip_rk3588_npu"):
        target.unsupported_ops, target.ops_source = RKNN_UNSUPPORTED, _RKNN
    if target.dtype not in spec.peak:
        target.dtype = next(iter(spec.peak))
    return target

"""Targets: what ``--target`` means, the same in every command (predict, lint, recommend).

A target is a device for the numbers (a catalog spec, or this machine's calibration), the
precision the model is deployed in there, and the traits the lint rules need, each with
its source. Traits nobody published stay ``None`` ("unknown"), never guessed.

Names: a platform class (``mobile-cpu``, ``npu``, ``nvidia-gpu``: a catalogued device
standing for the class, plus the class's published traits), a catalog device
(``deploylens hw list``), or ``this`` (this machine, from its stored calibration).

Precision: the target's deploy precision unless one is asked for: FP16 on NVIDIA GPUs
(TensorRT), INT8 on NPUs (INT8-only), FP32 on CPUs and on ``this``. Asking for INT8
(``--int8``, ``--dtype int8``) means the same on every target: the model is deployed in
INT8 there (:attr:`Target.int8`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from deploylens.dtypes import analysis_name, precision_key
from deploylens.errors import UserError
from deploylens.hardware import device_model as fitted
from deploylens.hardware.calibration_profile import CalibrationProfile
from deploylens.hardware.kernel_classes import GPU_CHANNEL_MULTIPLE
from deploylens.hardware.spec import HardwareSpec, load_catalog, unsourced

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

# platform class -> the catalogued device whose numbers stand for it
PLATFORMS = {"mobile-cpu": "snapdragon_855", "npu": "rockchip_rk3588_npu", "nvidia-gpu": "nvidia_t4"}


@dataclass
class Target:
    name: str
    device_class: str  # cpu, gpu or npu
    spec: HardwareSpec | None  # numbers for impacts (None: bytes only)
    dtype: str = "fp32"  # the precision key the model is deployed in
    calibration: CalibrationProfile | None = None  # for "this"
    channel_multiple: tuple[int, int] | None = None  # (inputs, outputs)
    channel_source: str = ""
    depthwise_optimized: bool | None = None
    depthwise_source: str = ""
    unsupported_ops: frozenset[str] | None = None  # ONNX op types; None: no published list found
    supported_ops: frozenset[str] | None = None
    ops_source: str = ""
    int8: bool = False  # deployed in INT8: asked for, or an INT8-only device
    notes: list[str] = field(default_factory=list)
    uncalibrated: str = ""  # for "this" without a calibration: why, and how to make one
    rating_note: str = ""  # set by latency_model: why a catalogued device is rated by its roofline

    @property
    def analysis_dtype(self) -> str | None:
        """The dtype to cost the model in: the deploy precision, or (FP32 targets) the
        model's own (an fp16 ONNX file stays fp16)."""
        return None if self.dtype == "fp32" else analysis_name(self.dtype)

    def latency_model(self, backend: str = "torch", models: Sequence[fitted.FamilyModel] | None = None
                      ) -> HardwareSpec | CalibrationProfile | fitted.FittedDevice:
        """What predicts latency here: the calibration; on a catalogued device, the fitted
        model of its family for ``backend``'s runtime (of ``models``, default: the shipped
        ones), else its roofline in the target's precision (a lower bound; why is added
        in :attr:`rating_note`); else a :class:`UserError` saying what is missing."""
        if self.calibration is not None:
            return self.calibration
        if self.name == "this":
            raise UserError(self.uncalibrated)
        if self.spec is None:
            raise UserError(f"no latency model for {self.name}")
        self.spec.roofline(self.dtype)  # a spec without a figure the roofline needs says which
        model, note = fitted.find(self.spec, self.dtype, fitted.BACKEND_RUNTIMES.get(backend, "fused"), models)
        if model is not None:
            return fitted.FittedDevice(self.spec, model, note)
        self.rating_note = note
        return self.spec


def names(catalog: dict[str, HardwareSpec] | None = None) -> list[str]:
    """Every name ``--target`` takes."""
    return [*PLATFORMS, "this", *sorted(catalog if catalog is not None else load_catalog())]


def resolve(name: str, dtype: str | None = None, *, backend: str = "torch", threads: int | None = None,
            device: str = "cpu", catalog: dict[str, HardwareSpec] | None = None) -> Target:
    """The target ``name`` (a platform class, a catalog device or ``this``) deployed in
    ``dtype`` (a precision key or dtype name; None: the target's own precision). ``this``
    reads the stored calibration of this machine's ``device`` for ``backend``, ``threads``
    and ``dtype``; without one the target says why in :attr:`Target.uncalibrated`. On a
    catalog device, ``threads`` scales its peaks to the cores they occupy.
    ``catalog``: the catalog already loaded (default: read it)."""
    catalog = catalog if catalog is not None else load_catalog()
    key = precision_key(dtype) if dtype else None
    if name == "this":
        return _this(catalog, key, backend, threads, device)
    if name in PLATFORMS:
        target = _catalog_target(name, catalog[PLATFORMS[name]], key)
        target.notes.insert(0, f"numbers from {PLATFORMS[name]} (catalog)")
        _platform_traits(target)
        return target
    if name not in catalog:
        missing = unsourced()
        if name in missing:
            raise UserError(f"{name} cannot be rated: {missing[name]}")
        raise UserError(f"unknown target {name!r}; one of: {', '.join(names(catalog))}")
    return _catalog_target(name, fitted.on_threads(catalog[name], threads), key)


def _deploy_precision(spec: HardwareSpec) -> str:
    fp16, fp32 = spec.peak_flops("fp16"), spec.peak_flops("fp32")
    if spec.device_class == "gpu" and spec.family in ("nvidia_gpu", "jetson") and fp16 and (not fp32 or fp16 > fp32):
        return "fp16"  # TensorRT's default deploy precision on Tensor Cores (not on a GPU without them)
    if "fp32" in spec.peak:
        return "fp32"
    return "int8" if "int8" in spec.peak else next(iter(spec.peak))


def _catalog_target(name: str, spec: HardwareSpec, key: str | None) -> Target:
    dtype = key or _deploy_precision(spec)
    target = Target(name, spec.device_class, spec, dtype, int8=dtype == "int8")
    if dtype not in spec.peak:
        target.notes.append(f"{spec.name} has no {dtype} peak in the catalog: impacts in bytes only")
    if spec.device_class == "gpu" and spec.family in ("nvidia_gpu", "jetson"):
        target.channel_multiple = (16, 16) if target.int8 else (GPU_CHANNEL_MULTIPLE, GPU_CHANNEL_MULTIPLE)
        target.channel_source = _NVIDIA_TC
        target.depthwise_optimized, target.depthwise_source = False, _GGHOST
    if spec.name.startswith("horizon_sunrise_x3"):
        target.depthwise_optimized = True
        target.depthwise_source = ("Horizon X3 BPU has an optimized depthwise path (the field guide's claim; "
                                   "no vendor document read)")
    elif spec.device_class == "npu":
        target.depthwise_optimized, target.depthwise_source = False, _GGHOST
    if spec.name.startswith("rockchip_rk3588_npu"):
        target.unsupported_ops, target.ops_source = RKNN_UNSUPPORTED, _RKNN
    return target


def _platform_traits(target: Target) -> None:
    """The class's published traits on top of its catalogued device's."""
    if target.name == "mobile-cpu":
        target.depthwise_optimized = True
        target.depthwise_source = "mobile CPUs run depthwise conv efficiently (" + _GUIDE + ")"
    elif target.name == "npu":
        target.channel_multiple, target.channel_source = (4, 16), _NNIE
        target.notes[0] += "; op list: RKNN Toolkit2"
    else:
        target.notes[0] += "; TensorRT op list: unknown (no published list read)"


def _this(catalog: dict[str, HardwareSpec], key: str | None, backend: str, threads: int | None,
          device: str) -> Target:
    import torch

    from deploylens.hardware import calibration_profile as stored
    from deploylens.hardware.local import cpu_info, this_cpu, this_gpu, vector_lanes

    key = key or "fp32"
    threads = threads or torch.get_num_threads()
    profile, why = None, ""
    try:
        stored.identity(device, backend, threads, key)  # a combination that cannot be calibrated
    except UserError as error:
        why = str(error)
    else:
        path = stored.profile_path(backend, threads, device, key)
        if path.exists():
            profile = stored.load(path)
        else:
            why = (f"no calibration of this machine for backend {backend} with {threads} threads on {device} ({key}): "
                   f"run `deploylens hw calibrate --backend {backend} --threads {threads} --device {device} --dtype "
                   f"{key}` first, or give a catalogued --target (e.g. nvidia-gpu)")
    if device == "cuda":
        target = Target("this", "gpu", this_gpu(catalog), key, profile, channel_multiple=(GPU_CHANNEL_MULTIPLE, GPU_CHANNEL_MULTIPLE),
                        channel_source=_NVIDIA_TC, depthwise_optimized=False, depthwise_source=_GGHOST)
    else:
        lanes = vector_lanes(cpu_info()["isa"])
        target = Target("this", "cpu", this_cpu(threads), key, profile, depthwise_optimized=True,
                        depthwise_source="CPU", channel_multiple=(lanes, lanes) if lanes > 1 else None,
                        channel_source=_SIMD)
    target.int8 = key == "int8"
    target.uncalibrated = why
    if profile is None:
        target.notes.append(f"no {key} calibration for this machine: impacts in bytes only (deploylens hw calibrate)")
    return target

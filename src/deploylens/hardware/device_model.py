"""Device models fitted on published whole-network measurements, one per device *family*
(a group of devices x precision x runtime): what each kernel class achieves, as a
fraction of the device's catalogued peak and bandwidth, plus per-kernel and per-call
overheads. Another device of the same family takes the family's fractions scaled by its
own catalog specs, so a model fitted on an RTX 3090 and 4090 predicts an RTX 5090.

A kernel of class ``c`` moving ``bytes`` and computing ``flops`` on a device with peak
``P`` (the precision's) and bandwidth ``B`` takes

    flops / (P * compute_efficiency[c]) + bytes / (B * memory_efficiency[c]) + kernel_overhead

and a network the sum over its kernels plus ``call_overhead``: linear in the inverse
efficiencies, so a whole-network time is a linear function of per-class sums and the
fit is a non-negative least-squares problem (``deploylens.calibration.published``).
Stored as versioned JSON with its provenance (which rows, which specs), never a pickle.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from deploylens.cost.records import LayerCost
from deploylens.errors import UserError
from deploylens.hardware.kernel_classes import conv_geometry_of, kernel_class
from deploylens.hardware.spec import Figure, HardwareSpec
from deploylens.output import write_atomically

FORMAT, VERSION = "deploylens-device-model", 1
# classes rated on FLOPs as well as bytes; dense 3x3 stride-1 convs apart from other dense
# convs: cuDNN runs them with Winograd (RepVGG section 2.4), several times denser per FLOP
COMPUTE_CLASSES = ("conv_3x3", "conv_kxk", "conv_pointwise", "conv_depthwise", "conv_grouped", "matmul")
MEMORY_CLASSES = (*COMPUTE_CLASSES, "elementwise", "transcendental", "pool", "copy")
# how a runtime runs a network, the axis a family model is fitted on: "eager" runs every op
# as a kernel (PyTorch eager); "fused" runs the analyzer's fused kernels (torch.compile,
# TensorRT, ONNX Runtime, OpenVINO, NPU compilers)
RUNTIMES = ("eager", "fused")
# a backend deploylens names -> how it runs a network
BACKEND_RUNTIMES = {"torch": "eager", "torch-compile": "fused", "onnxruntime": "fused", "openvino": "fused",
                    "tensorrt": "fused"}
# catalog file family -> device family (a Jetson's GPU runs the same CUDA libraries)
DEVICE_FAMILIES = {"nvidia_gpu": "nvidia_gpu", "jetson": "nvidia_gpu", "x86_cpu": "x86_cpu", "arm_cpu": "arm_cpu",
                   "edge_npu": "edge_npu"}


def device_family(spec: HardwareSpec) -> str:
    """The family a catalogued device's measurements pool with."""
    return DEVICE_FAMILIES.get(spec.family, spec.family)


def on_threads(spec: HardwareSpec, threads: int | None) -> HardwareSpec:
    """``spec`` as ``threads`` threads see it: each peak scaled by the share of the cores
    they occupy (bandwidth is shared, unchanged); as is when they occupy every core."""
    if not threads:
        return spec
    if spec.compute_units is None:
        raise UserError(f"{spec.name} has no core count in the catalog: its peak cannot be scaled to {threads} "
                        "threads")
    units = spec.compute_units.value
    if threads >= units:
        return spec
    note = f"{threads} of {units:g} cores"
    return replace(spec, peak={d: Figure(f.value * threads / units, f.sources, "derived", note)
                               for d, f in spec.peak.items()}, notes=f"{spec.notes}; {note}".strip("; "))


def rated_peak(spec: HardwareSpec, precision: str) -> float:
    """The peak a fitted model's compute efficiencies are fractions of: the precision's
    catalog peak; in fp16, a GeForce part's FP16-accumulate tensor rate where it is faster.
    Why: fitted on GeForce rows against their FP32-accumulate rate, cuDNN's convs ran above
    it (1.2x on the RTX 3090), and scaled by that rate a data-center or workstation part
    (full-rate FP32 accumulate) would come out twice as fast relative to a GeForce one."""
    peak, _ = spec.roofline(precision)
    if precision == "fp16" and spec.fp16_acc16 is not None:
        return max(peak, spec.fp16_acc16.value)
    return peak


def rated_class(klass: str) -> str:
    """The family-model class of a kernel class without its geometry (a what-if kernel):
    a dense conv is rated as the 3x3 the guide's rewrites produce."""
    return {"conv_dense": "conv_3x3", "reorder": "copy", "slice": "copy"}.get(klass, klass)


def family_class(anchor: LayerCost | None) -> str:
    """The class a device model rates a kernel by, from the op that anchors it (None: a
    kernel the runtime adds, rated as a copy)."""
    if anchor is None:
        return "copy"
    klass = kernel_class(anchor)
    if klass == "conv_dense":
        geometry = conv_geometry_of(anchor)
        return "conv_3x3" if geometry["kernel"] == 3 and geometry["stride"] == 1 else "conv_kxk"
    return rated_class(klass)


@dataclass
class FittedOn:
    """One device's rows in a fit: the device, how many rows, where they come from and
    the batch sizes they ran at."""
    device: str
    rows: int
    source: str
    batches: list[int] = field(default_factory=list)


@dataclass
class Accuracy:
    """Leave-one-out error of a fit over its rows: the share of predictions within 10% and
    25% of the measurement and the median absolute relative error."""
    rows: int
    within_10: float
    within_25: float
    median_error: float

    def describe(self) -> str:
        return f"{self.rows} rows, median error {self.median_error:.0%}, {self.within_25:.0%} within 25%"


@dataclass
class FamilyModel:
    family: str  # device family, e.g. nvidia_gpu
    precision: str  # precision key: fp32, fp16, ...
    runtime: str  # one of RUNTIMES
    compute_efficiency: dict[str, float]  # class -> fraction of the precision's peak (FLOPs)
    memory_efficiency: dict[str, float]  # class -> fraction of the bandwidth (bytes)
    kernel_overhead_s: float
    call_overhead_s: float
    fitted_on: list[FittedOn]
    accuracy: Accuracy | None = None  # leave one row out
    device_left_out: Accuracy | None = None  # leave each device's rows out: the error on a device not fitted on
    method: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.family}/{self.precision}/{self.runtime}"

    def expected_error(self, device: str) -> tuple[str, Accuracy | None]:
        """How far to trust a prediction on ``device``: the leave-one-out error when the
        model was fitted on its rows, else the error on a device left out of the fit
        (None when the family was fitted on one device: a zero-shot prediction nobody
        has checked)."""
        if any(f.device == device for f in self.fitted_on):
            return "leave-one-out on this device's family", self.accuracy
        if self.device_left_out is not None:
            return "device not in the fitting set: error of the family on a device left out", self.device_left_out
        return "device not in the fitting set, and the family was fitted on one device: unchecked", None

    def batch_note(self, batch: int) -> str:
        """A warning when ``batch`` lies outside the batch sizes the model was fitted at
        (per-kernel overheads are barely seen at large batches, occupancy at small ones)."""
        batches = [b for f in self.fitted_on for b in f.batches]
        if not batches or min(batches) <= batch <= max(batches):
            return ""
        return (f"batch {batch} is outside the batches {self.key} was fitted at ({min(batches)}-{max(batches)}): "
                "expect a larger error than its leave-one-out")

    def provenance(self) -> str:
        """Which data the model rests on, in one line."""
        rows = ", ".join(f"{f.device} ({f.rows} rows, {f.source})" for f in self.fitted_on)
        return f"{self.key} fitted on {rows}"

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: Any, where: str = "the device model") -> FamilyModel:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{where} is not a deploylens device model (format {FORMAT!r})")
        if data.get("version") != VERSION:
            raise UserError(f"{where} is device-model version {data.get('version')}; this deploylens reads "
                            f"version {VERSION}: fit it again with `deploylens hw fit`")
        try:
            body = {k: v for k, v in data.items() if k not in ("format", "version")}
            model = cls(**{**body, "fitted_on": [FittedOn(**f) for f in body["fitted_on"]],
                           **{k: Accuracy(**body[k]) if body.get(k) else None
                              for k in ("accuracy", "device_left_out")}})
        except (TypeError, KeyError) as error:
            raise UserError(f"{where} is malformed: {error}") from error
        missing = [c for c in MEMORY_CLASSES if c not in model.memory_efficiency] + [
            c for c in COMPUTE_CLASSES if c not in model.compute_efficiency]
        if missing or model.runtime not in RUNTIMES:
            raise UserError(f"{where} is malformed: " + (f"no efficiency for {', '.join(missing)}" if missing else
                                                         f"runtime {model.runtime!r} is not one of {RUNTIMES}"))
        return model


@dataclass
class FittedDevice:
    """A catalogued device rated by a fitted family model."""
    spec: HardwareSpec
    model: FamilyModel
    note: str = ""  # why this model (e.g. another runtime's), when not an exact match

    @property
    def name(self) -> str:
        return self.spec.name


def save(model: FamilyModel, path: str | Path) -> None:
    write_atomically(path, json.dumps(model.to_json(), indent=1) + "\n")


def load(path: str | Path) -> FamilyModel:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read device model {path}: {error}") from error
    return FamilyModel.from_json(data, str(path))


@functools.cache
def shipped() -> tuple[FamilyModel, ...]:
    """The family models that ship with deploylens (fitted on the published rows in
    ``hardware/measured`` by ``tools/fit_device_models.py``), read once: every target
    resolution and each of lint's what-if kernels looks them up."""
    folder = resources.files("deploylens.hardware").joinpath("device_models")
    return tuple(FamilyModel.from_json(json.loads(p.read_text()), p.name)
                 for p in sorted(folder.iterdir(), key=lambda p: p.name) if p.name.endswith(".json"))


def find(spec: HardwareSpec, precision: str, runtime: str,
         models: Sequence[FamilyModel] | None = None) -> tuple[FamilyModel | None, str]:
    """The model that rates ``spec`` in ``precision`` on ``runtime`` (the first of
    ``models`` that fits; default: the shipped ones): its family's; another runtime's of
    the same family and precision when this runtime has none (said in the note). None
    (and why) when the family has none."""
    models = shipped() if models is None else models
    family = device_family(spec)
    candidates = [m for m in models if m.family == family and m.precision == precision]
    exact = [m for m in candidates if m.runtime == runtime]
    if exact:
        return exact[0], ""
    if candidates:
        return candidates[0], (f"no {family} model fitted for the {runtime} runtime: rated with the "
                               f"{candidates[0].runtime} one, so expect a larger error than its leave-one-out")
    fitted = sorted({f"{m.precision}/{m.runtime}" for m in models if m.family == family})
    return None, (f"no device model fitted for {family} in {precision}" +
                  (f" (fitted: {', '.join(fitted)})" if fitted else "") +
                  ": roofline with the catalog's efficiencies, an optimistic lower bound")

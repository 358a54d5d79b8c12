"""Latency from a Profile, the kernels a runtime runs for it and a device model, and
nothing else (predict never measures or calibrates).

For every kernel:

    compute time = FLOPs / (peak x compute efficiency)
    memory time  = bytes / (bandwidth x memory efficiency)
    time         = max(compute, memory) + per-kernel overhead

on a timeline (:mod:`deploylens.predict.timeline`), plus, with a calibration, its
per-call overhead once (a model call or session run). A catalogued device
(:class:`~deploylens.hardware.spec.HardwareSpec`) runs the analyzer's fused kernels at
the roofline; this machine's calibration
(:class:`~deploylens.hardware.calibration_profile.CalibrationProfile`) runs the kernels
its backend runs (:mod:`deploylens.kernels.runtimes`) at its measured rates.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field

from deploylens.analysis.profile import Profile
from deploylens.cost.records import KernelCost
from deploylens.dtypes import precision_key
from deploylens.hardware.calibration_profile import BUSY_QUIET_SHARE, CalibrationProfile
from deploylens.hardware.kernel_classes import CLASS_FALLBACK, conv_geometry_of, kernel_class
from deploylens.hardware.spec import HardwareSpec
from deploylens.kernels.runtimes import POLICIES, SHAPE_KIND, runtime_kernels
from deploylens.hardware.device_model import FittedDevice, family_class
from deploylens.predict.calibrated import calibrated_time, kernel_overhead
from deploylens.predict.fitted import fitted_kernels, fitted_time
from deploylens.predict.roofline import roofline_time
from deploylens.predict.timeline import Timeline

DeviceModel = HardwareSpec | CalibrationProfile | FittedDevice


@dataclass
class KernelTime:
    name: str
    kind: str
    kernel_class: str
    flops: int
    bytes: int
    compute_ms: float
    memory_ms: float
    overhead_ms: float
    time_ms: float
    bound: str  # "compute", "memory" or "overhead"
    complete: bool


@dataclass
class Prediction:
    model: str
    target: str
    backend: str
    batch: int
    dtype: str
    totals: dict
    kernels: list[KernelTime]
    share_by_kind: dict[str, float]
    source: dict = field(default_factory=dict)  # where the figures come from (see :func:`source_of`)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def kernels_to_run(profile: Profile, device: DeviceModel, backend: str,
                   added: list[KernelCost] | tuple = ()) -> list[KernelCost]:
    """The kernels ``device`` runs for ``profile`` on ``backend``: with a calibration, what
    that backend runs (plus ``added``, the kernels the runtime adds beyond the model's:
    :func:`deploylens.kernels.onnxruntime_graph.added_kernels`); on a catalogued device, the
    analyzer's fused kernels, as a deploy toolchain runs them; with a fitted family model,
    what its runtime runs."""
    if isinstance(device, FittedDevice):
        return fitted_kernels(profile, device.model.runtime)
    if isinstance(device, CalibrationProfile):
        return runtime_kernels(profile.layers, profile.kernels, POLICIES.get(backend), profile.dtype) + list(added)
    return list(profile.kernels)


def _notes(profile: Profile, device: DeviceModel, batch: int) -> list[str]:
    notes = list(profile.notes)
    if not profile.totals.complete:
        notes.append(f"incomplete: no cost formula for {', '.join(profile.totals.unknown_ops)}; their kernels are "
                     "counted by bytes only, so the real latency is higher")
    if isinstance(device, FittedDevice):
        return notes + [n for n in (device.note, device.model.batch_note(batch)) if n]
    if isinstance(device, HardwareSpec):
        if device.overhead is None or not device.efficiency:
            notes.append("catalog roofline with peak efficiency and no launch overhead: an optimistic lower bound")
        return notes
    notes += device.notes  # a partial calibration, rates capped at the physical bounds
    host = device.machine.node
    if host and host != platform.node():
        notes.append(f"calibrated on host {host}, predicted on {platform.node()}: per-op costs differ between "
                     "hosts, even of the same CPU or GPU model; calibrate here for this host's figures")
    if device.probe is not None and device.probe.quiet_share < BUSY_QUIET_SHARE:
        notes.append(f"the calibration ran while the host was busy (only {device.probe.quiet_share:.1%} of its cases "
                     "timed quiet): its times rest on the interference probe's adjustment; `deploylens hw calibrate "
                     "--combine` in a quieter spell steadies them")
    return notes


def source_of(device: DeviceModel) -> dict:
    """Where a prediction's figures come from and how far to trust them: a fitted family
    model (which data, its leave-one-out error), this machine's calibration, or the
    catalog roofline (a lower bound)."""
    if isinstance(device, FittedDevice):
        model = device.model
        basis, accuracy = model.expected_error(device.spec.name)
        trust = f"{basis}: {accuracy.describe()}" if accuracy else basis
        return {"kind": "fitted", "model": model.key, "data": model.provenance(), "method": model.method,
                "specs": f"{device.spec.name} catalog peak and bandwidth", "error_basis": basis,
                "expected_error": asdict(accuracy) if accuracy else None,
                "describe": f"device model {model.key} scaled to {device.spec.name}'s catalog specs ({trust})"}
    if isinstance(device, CalibrationProfile):
        return {"kind": "calibration", "model": "this", "data": f"this machine's calibration ({device.backend}, "
                f"{device.threads} threads, {device.dtype})", "expected_error": None,
                "describe": "this machine's calibration (`deploylens hw calibrate`)"}
    return {"kind": "roofline", "model": device.name, "data": f"{device.name} catalog peak and bandwidth",
            "expected_error": None, "describe": "catalog roofline: a lower bound on latency, not an estimate"}


def predict_profile(profile: Profile, device: DeviceModel, backend: str = "torch", batch: int = 1,
                    kernels: list[KernelCost] | None = None, target: str | None = None) -> Prediction:
    """Predict ``profile`` on ``device`` running ``kernels`` (default: :func:`kernels_to_run`)
    at ``batch`` (the batch size the profile was analysed at; it picks the calibrated
    whole-network figures). ``target``: the name the prediction reports."""
    dtype = precision_key(profile.dtype)
    calibration = device if isinstance(device, CalibrationProfile) else None
    fitted = device if isinstance(device, FittedDevice) else None
    to_run = kernels_to_run(profile, device, backend) if kernels is None else kernels
    anchors = {layer.name: layer for layer in profile.layers}
    views = sum(1 for layer in profile.layers if layer.op == "view")
    dispatches_views = calibration is not None and backend in POLICIES and POLICIES[backend].dispatches_views
    view_ms = views * calibration.overhead_s.view * 1e3 if dispatches_views else 0.0
    timeline = Timeline(view_ms, overlapped=calibration is not None and calibration.device == "cuda")
    timed = []
    for kernel in to_run:
        anchor = anchors.get(kernel.layers[0]) if kernel.layers else None
        # no anchor: a kernel the runtime adds, a layout copy or shape arithmetic
        if fitted:  # a fitted model rates its own classes (dense 3x3 apart)
            klass = family_class(anchor)
        else:
            klass = kernel_class(anchor) if anchor else SHAPE_KIND if kernel.kind == SHAPE_KIND else "reorder"
        if calibration and not calibration.points.get(klass):  # a class only some backends calibrate
            klass = CLASS_FALLBACK.get(klass, klass)
        if klass == SHAPE_KIND:  # it moves nothing: a kernel's overhead alone (added with a calibration)
            compute, memory, overhead = 0.0, 0.0, kernel_overhead(calibration, batch)
        elif fitted:
            compute, memory, overhead = fitted_time(kernel, klass, fitted, dtype)
        elif calibration:
            compute, memory, overhead = calibrated_time(kernel, klass, calibration, batch,
                                                        conv_geometry_of(anchor) if anchor else None)
        else:
            compute, memory, overhead = roofline_time(kernel, klass, device, dtype)
        body = compute + memory if fitted else max(compute, memory)  # the form each model was fitted in
        spent = timeline.add(body * 1e3, overhead * 1e3)
        bound = "overhead" if spent - body * 1e3 > body * 1e3 else "compute" if compute >= memory else "memory"
        timed.append(KernelTime(kernel.name, kernel.kind, klass, kernel.flops, kernel.bytes, compute * 1e3,
                                memory * 1e3, overhead * 1e3, spent, bound, kernel.complete))
    call_ms = (calibration.overhead_s.call if calibration else fitted.model.call_overhead_s if fitted else 0.0) * 1e3
    total_ms = timeline.finished + call_ms
    by_kind: dict[str, float] = {}
    for k in timed:
        by_kind[k.kind] = by_kind.get(k.kind, 0.0) + k.time_ms
    bounds = {b: sum(1 for k in timed if k.bound == b) for b in ("compute", "memory", "overhead")}
    name = target or ("this" if calibration else device.name)
    return Prediction(
        model=profile.model, target=name, backend=backend, batch=batch, dtype=dtype,
        totals={"latency_ms": total_ms, "complete": profile.totals.complete, "call_overhead_ms": call_ms,
                "flops": profile.totals.flops, "bytes": profile.totals.bytes_fused, "kernels": len(timed),
                "bound_counts": bounds, "throughput": batch / total_ms * 1e3 if total_ms else None},
        kernels=timed, share_by_kind={k: v / total_ms for k, v in by_kind.items()} if total_ms else {},
        source=source_of(device), notes=_notes(profile, device, batch))

"""``predict``: a model reference in, a :class:`~deploylens.predict.core.Prediction` out.
It analyses the model, reads the kernels its runtime adds, resolves the device model and
calls :func:`~deploylens.predict.core.predict_profile`. Targets are the ones every
command takes (:mod:`deploylens.hardware.targets`). It never calibrates: for this machine
without a stored calibration it says how to make one."""

from __future__ import annotations

from typing import Any

from deploylens.analysis.api import analyze
from deploylens.capture.loader import default_input_specs, parse_input_shapes, resolve_model
from deploylens.dtypes import DTYPE_BYTES, analysis_name
from deploylens.errors import UserError
from deploylens.hardware import calibration_profile as stored
from deploylens.hardware.calibration_profile import CalibrationProfile
from deploylens.hardware.device_model import FamilyModel, FittedDevice, device_family
from deploylens.hardware.spec import HardwareSpec
from deploylens.hardware.targets import Target, resolve
from deploylens.kernels.onnxruntime_graph import added_kernels
from deploylens.predict.core import DeviceModel, Prediction, kernels_to_run, predict_profile

BACKENDS = ("torch", "torch-compile", "onnxruntime", "openvino", "tensorrt")


def resolve_target(target: str | HardwareSpec, backend: str = "torch", threads: int | None = None,
                   device: str = "cpu", dtype: str | None = None) -> DeviceModel:
    """The device model of ``target``: a ``HardwareSpec`` as given; else the target
    :func:`deploylens.hardware.targets.resolve` makes of the name (a platform class, a
    catalog device, or ``this``: this machine's ``device`` calibrated for ``backend``,
    ``threads`` and ``dtype``) with a roofline or a calibration, or a :class:`UserError`
    saying what is missing (for ``this``: how to calibrate)."""
    if isinstance(target, HardwareSpec):
        return target
    return resolve(target, dtype, backend=backend, threads=threads, device=device).latency_model(backend)


def _with_model(resolved: Target, model: FamilyModel) -> FittedDevice:
    """``resolved``'s device rated by a given family model (``hw fit``), which must be
    of its family and precision."""
    if resolved.spec is None or resolved.name == "this":
        raise UserError("--device-model rates a catalogued device: give its name as --target (deploylens hw list)")
    family = device_family(resolved.spec)
    if (model.family, model.precision) != (family, resolved.dtype):
        raise UserError(f"the device model is for {model.family} in {model.precision}; {resolved.spec.name} is "
                        f"{family} deployed in {resolved.dtype} (--dtype picks the precision)")
    resolved.spec.roofline(resolved.dtype)
    return FittedDevice(resolved.spec, model)


def predict(model: Any, target: str | HardwareSpec = "this", backend: str = "torch", batch: int = 1,
            dtype: str | None = None, input_shape: Any = None, threads: int | None = None,
            calibration: CalibrationProfile | None = None, device: str = "cpu", deploy: bool = False,
            family_model: FamilyModel | None = None) -> Prediction:
    """Predicted latency of ``model`` (any form ``analyze`` takes) on ``target``
    (``this``: this machine's CPU or, with ``device="cuda"``, its GPU, from its stored
    calibration; ``calibration``: a profile to use instead of the stored one; a catalog
    device: its family's fitted model for ``backend``, or ``family_model``, else its
    roofline). ``deploy``: a zoo model's deploy form."""
    if batch <= 0:
        raise UserError("--batch must be a positive integer")
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}: {', '.join(BACKENDS)}")
    if target == "this" and backend not in stored.BACKENDS:
        raise UserError(f"calibration exists for the {' and '.join(stored.BACKENDS)} backends only")
    if calibration is not None or isinstance(target, HardwareSpec):  # a device model given
        device_model, analysis_dtype = calibration or target, dtype
    else:  # the target every command means by the name, in its deploy precision unless dtype is given
        resolved = resolve(target, dtype, backend=backend if target == "this" else "torch", threads=threads,
                           device=device)
        device_model = _with_model(resolved, family_model) if family_model else resolved.latency_model(backend)
        analysis_dtype = analysis_name(dtype) if dtype else resolved.analysis_dtype
    built, name = resolve_model(model, deploy)  # once: a factory runs, a file is read, a zoo model is built once
    specs = parse_input_shapes(input_shape) or default_input_specs(model, built)
    shapes = [((batch, *shape[1:]), kind) for shape, kind in specs]
    profile = analyze(built, shapes, analysis_dtype, name=name)
    added = []
    if backend == "onnxruntime" and isinstance(device_model, CalibrationProfile):
        added = added_kernels(built, [shape for shape, _ in shapes], device_model.threads,
                              DTYPE_BYTES.get(profile.dtype, 4))
    name = target.name if isinstance(target, HardwareSpec) else target
    prediction = predict_profile(profile, device_model, backend, batch,
                                 kernels_to_run(profile, device_model, backend, added), name)
    if isinstance(device_model, (HardwareSpec, FittedDevice)) and device_model.name != name:  # a platform class
        prediction.notes.insert(0, f"{name}: numbers from {device_model.name} (catalog)")
    if calibration is None and not isinstance(target, HardwareSpec) and resolved.rating_note:
        prediction.notes.append(resolved.rating_note)
    return prediction

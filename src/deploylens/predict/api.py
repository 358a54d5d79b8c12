"""``predict``: a model reference in, a :class:`~deploylens.predict.core.Prediction` out.
It analyses the model, reads the kernels its runtime adds, resolves the device model and
calls :func:`~deploylens.predict.core.predict_profile`. It never calibrates: for this
machine without a stored calibration it says how to make one."""

from __future__ import annotations

from typing import Any

from deploylens.analysis.api import analyze
from deploylens.capture.loader import default_input_specs, parse_input_shapes, resolve_model
from deploylens.dtypes import DTYPE_BYTES, precision_key
from deploylens.errors import UserError
from deploylens.hardware import calibration_profile as stored
from deploylens.hardware.calibration_profile import CalibrationProfile
from deploylens.hardware.spec import HardwareSpec, load_catalog
from deploylens.kernels.onnxruntime_graph import added_kernels
from deploylens.predict.core import DeviceModel, Prediction, kernels_to_run, predict_profile

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")


def resolve_target(target: str | HardwareSpec, backend: str = "torch", threads: int | None = None,
                   device: str = "cpu", dtype: str = "fp32") -> DeviceModel:
    """The device model of ``target``: a ``HardwareSpec`` as given, a catalog name's spec,
    or for ``this`` the stored calibration of this machine's ``device`` for ``backend``,
    ``threads`` and ``dtype`` (a :class:`UserError` saying how to calibrate when there is
    none)."""
    if isinstance(target, HardwareSpec):
        return target
    if target != "this":
        catalog = load_catalog()
        if target not in catalog:
            raise UserError(f"unknown target {target!r}; one of: this, {', '.join(sorted(catalog))}")
        return catalog[target]
    import torch

    threads = threads or torch.get_num_threads()
    stored.identity(device, backend, threads, dtype)  # a bad combination fails before any file is read
    path = stored.profile_path(backend, threads, device, dtype)
    if not path.exists():
        raise UserError(f"no calibration of this machine for backend {backend} with {threads} threads on {device} "
                        f"({dtype}): run `deploylens hw calibrate --backend {backend} --threads {threads} --device "
                        f"{device} --dtype {dtype}` first, or predict for a catalogued --target")
    return stored.load(path)


def predict(model: Any, target: str | HardwareSpec = "this", backend: str = "torch", batch: int = 1,
            dtype: str | None = None, input_shape: Any = None, threads: int | None = None,
            calibration: CalibrationProfile | None = None, device: str = "cpu") -> Prediction:
    """Predicted latency of ``model`` (any form ``analyze`` takes) on ``target``
    (``this``: this machine's CPU or, with ``device="cuda"``, its GPU, from its stored
    calibration; ``calibration``: a profile to use instead of the stored one)."""
    if batch <= 0:
        raise UserError("--batch must be a positive integer")
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}: {', '.join(BACKENDS)}")
    if target == "this" and backend not in stored.BACKENDS:
        raise UserError(f"calibration exists for the {' and '.join(stored.BACKENDS)} backends only")
    device_model = calibration or resolve_target(target, backend if target == "this" else "torch", threads,
                                                 device, precision_key(dtype or "float32"))
    built, name = resolve_model(model)  # once: a factory runs, a file is read, a zoo model is built once
    specs = parse_input_shapes(input_shape) or default_input_specs(model, built)
    shapes = [((batch, *shape[1:]), kind) for shape, kind in specs]
    profile = analyze(built, shapes, dtype, name=name)
    added = []
    if backend == "onnxruntime" and isinstance(device_model, CalibrationProfile):
        added = added_kernels(built, [shape for shape, _ in shapes], device_model.threads,
                              DTYPE_BYTES.get(profile.dtype, 4))
    name = target.name if isinstance(target, HardwareSpec) else target
    return predict_profile(profile, device_model, backend, batch, kernels_to_run(profile, device_model, backend, added),
                           name)

"""A kernel's time on a catalogued device from a fitted family model
(:mod:`deploylens.hardware.device_model`): the family's efficiencies per kernel class
applied to the device's own catalog peak and bandwidth."""

from __future__ import annotations

from deploylens.analysis.profile import Profile
from deploylens.cost.records import KernelCost
from deploylens.hardware.device_model import COMPUTE_CLASSES, FittedDevice, family_class, rated_peak
from deploylens.hardware.spec import HardwareSpec
from deploylens.kernels.runtimes import EAGER, runtime_kernels


def fitted_kernels(profile: Profile, runtime: str) -> list[KernelCost]:
    """The kernels a runtime (:data:`deploylens.hardware.device_model.RUNTIMES`) runs:
    every op when eager, the analyzer's fused kernels when fused."""
    return runtime_kernels(profile.layers, profile.kernels, EAGER if runtime == "eager" else None, profile.dtype)


def class_sums(profile: Profile, kernels: list[KernelCost], spec: HardwareSpec, precision: str) -> dict:
    """Per class: seconds at the device's rated peak (``compute``, :func:`rated_peak`), at its full bandwidth
    (``memory``) and the kernel count: what a whole-network time is linear in."""
    peak, bandwidth = rated_peak(spec, precision), spec.roofline(precision)[1]
    anchors = {layer.name: layer for layer in profile.layers}
    sums: dict[str, list[float]] = {}
    for kernel in kernels:
        klass = family_class(anchors.get(kernel.layers[0]) if kernel.layers else None)
        entry = sums.setdefault(klass, [0.0, 0.0, 0])
        entry[0] += kernel.flops / peak if klass in COMPUTE_CLASSES else 0.0
        entry[1] += kernel.bytes / bandwidth
        entry[2] += 1
    return {k: {"compute": c, "memory": m, "kernels": n} for k, (c, m, n) in sums.items()}


def fitted_time(kernel: KernelCost, klass: str, device: FittedDevice, precision: str) -> tuple[float, float, float]:
    """Compute, memory and overhead seconds of ``kernel`` (class ``klass``)."""
    peak, bandwidth = rated_peak(device.spec, precision), device.spec.roofline(precision)[1]
    model = device.model
    compute = kernel.flops / (peak * model.compute_efficiency[klass]) if klass in COMPUTE_CLASSES else 0.0
    return compute, kernel.bytes / (bandwidth * model.memory_efficiency[klass]), model.kernel_overhead_s

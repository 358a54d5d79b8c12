"""A kernel's time on a catalogued device: the roofline at the catalog's efficiencies
(1.0 where it has none: an optimistic bound) plus its sourced per-kernel overhead."""

from __future__ import annotations

from deploylens.cost.records import KernelCost
from deploylens.hardware.spec import HardwareSpec


def roofline_time(kernel: KernelCost, klass: str, spec: HardwareSpec, dtype: str) -> tuple[float, float, float]:
    """Compute, memory and overhead seconds of ``kernel`` on ``spec``."""
    peak, bandwidth = spec.roofline(dtype)
    kind_efficiency = spec.efficiency.get(klass) or spec.efficiency.get(kernel.kind)
    efficiency = kind_efficiency.value if kind_efficiency else 1.0
    overhead = spec.overhead.value if spec.overhead else 0.0
    return kernel.flops / (peak * efficiency), kernel.bytes / (bandwidth * efficiency), overhead

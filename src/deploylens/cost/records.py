"""What the cost model says of one op (a layer) and of one fused kernel."""

from __future__ import annotations

from dataclasses import dataclass


def intensity(flops: int | None, nbytes: int) -> float | None:
    return round(flops / nbytes, 4) if flops is not None and nbytes else None


@dataclass
class LayerCost:
    name: str
    module: str
    kind: str
    op: str
    native: str
    inputs: list[list[int]]
    outputs: list[list[int]]
    flops: int | None  # None: no formula for this op (listed in totals.unknown_ops)
    macs: int | None
    params: int
    bytes_read: int
    bytes_written: int
    intensity: float | None
    kernel: str | None  # the fused kernel this op runs in; None for free views


@dataclass
class KernelCost:
    name: str
    kind: str
    layers: list[str]
    flops: int
    macs: int
    bytes_read: int
    bytes_written: int
    intensity: float | None
    complete: bool

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written

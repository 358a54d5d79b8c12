"""Hardware as data: ``HardwareSpec`` (peaks per dtype, bandwidth, memory, optional
per-kind efficiencies and overhead, and the microarchitecture, compute units, boost clock
and cache a device model scales by), every figure with its source."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import re

import yaml

from deploylens.dtypes import PEAK_PRECISIONS
from deploylens.errors import UserError

CLASSES = ("gpu", "cpu", "npu")
STATUSES = ("verified", "derived", "measured")
_TERA, _GIGA = 1e12, 1e9
_MIB = 2.0 ** 20  # cache sizes are binary: "6 MB" of L2 is 6144 KiB
_ARCHITECTURE = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Figure:
    value: float  # SI base units: FLOP/s (ops/s for int8), bytes/s, bytes, seconds
    sources: tuple[str, ...]  # resolved source descriptions
    status: str = "verified"
    note: str = ""


@dataclass
class HardwareSpec:
    name: str
    device_class: str  # gpu, cpu or npu
    family: str
    peak: dict[str, Figure]  # dtype -> FLOP/s
    bandwidth: Figure | None = None  # bytes/s
    memory: Figure | None = None  # bytes
    efficiency: dict[str, Figure] = field(default_factory=dict)  # op kind -> achievable fraction of peak
    overhead: Figure | None = None  # seconds per kernel launch
    notes: str = ""
    # What a device model scales a family's fitted efficiencies by (all optional):
    architecture: str = ""  # microarchitecture, lowercase: ampere, ada, zen4, raptor_lake, cortex_a57 ...
    compute_units: Figure | None = None  # SMs on a GPU; physical cores (P + E on hybrid Intel) on a CPU
    performance_cores: Figure | None = None  # hybrid CPUs: the big (P) cores among compute_units
    boost_clock: Figure | None = None  # Hz: the highest boost clock (catalog key boost_clock_ghz)
    cache: Figure | None = None  # bytes, MiB-based (catalog key cache_mb x 2**20): L2 on a GPU, last level on a CPU
    # FLOP/s: a GeForce part's FP16 tensor rate with FP16 accumulate, twice its FP32-accumulate
    # rate in peak["fp16"] (data-center and workstation parts run both at one rate)
    fp16_acc16: Figure | None = None

    def peak_flops(self, dtype: str) -> float | None:
        figure = self.peak.get(dtype)
        return figure.value if figure else None

    def roofline(self, dtype: str) -> tuple[float, float]:
        """Peak FLOP/s in ``dtype`` and bandwidth (bytes/s): a :class:`UserError` naming the
        figure the catalog lacks for a roofline."""
        peak = self.peak_flops(dtype)
        if peak is None:
            raise UserError(f"{self.name} has no {dtype} peak in the catalog (has: {', '.join(self.peak)})")
        if self.bandwidth is None:
            raise UserError(f"{self.name} has no sourced memory bandwidth in the catalog: no roofline possible")
        return peak, self.bandwidth.value

    def ridge_point(self, dtype: str) -> float | None:
        """FLOPs per byte above which a kernel is compute-bound on this device."""
        peak = self.peak_flops(dtype)
        return peak / self.bandwidth.value if peak and self.bandwidth else None

    def to_dict(self) -> dict:
        def figure(f: Figure | None) -> dict | None:
            return None if f is None else {"value": f.value, "sources": list(f.sources), "status": f.status,
                                           "note": f.note}

        return {"name": self.name, "class": self.device_class, "family": self.family,
                "peak_flops": {d: figure(f) for d, f in self.peak.items()},
                "bandwidth_bytes_per_s": figure(self.bandwidth), "memory_bytes": figure(self.memory),
                "efficiency": {k: figure(f) for k, f in self.efficiency.items()},
                "overhead_s": figure(self.overhead),
                "architecture": self.architecture, "compute_units": figure(self.compute_units),
                "performance_cores": figure(self.performance_cores), "boost_clock_hz": figure(self.boost_clock),
                "cache_bytes": figure(self.cache), "fp16_acc16_flops": figure(self.fp16_acc16),
                "ridge_point": {d: self.ridge_point(d) for d in self.peak}, "notes": self.notes}


class CatalogError(UserError):
    """A catalog file that breaks the schema (e.g. a figure without a source)."""


def _figure(raw: dict, scale: float, sources: dict[str, str], where: str) -> Figure:
    if not isinstance(raw, dict) or "value" not in raw:
        raise CatalogError(f"{where}: expected {{value, source}}")
    ids = raw.get("source") or []
    if not ids:
        raise CatalogError(f"{where}: figure {raw['value']} has no source")
    unknown = [s for s in ids if s not in sources]
    if unknown:
        raise CatalogError(f"{where}: unknown source id(s) {', '.join(unknown)}")
    status = raw.get("status", "verified")
    if status not in STATUSES:
        raise CatalogError(f"{where}: status {status!r} is not one of {', '.join(STATUSES)} "
                           "(unverified figures stay out of the catalog)")
    return Figure(float(raw["value"]) * scale, tuple(sources[s] for s in ids), status, raw.get("note", ""))


_OPTIONAL = (("bandwidth_gbs", _GIGA), ("memory_gb", _GIGA), ("overhead_us", 1e-6), ("compute_units", 1.0),
             ("performance_cores", 1.0), ("boost_clock_ghz", _GIGA), ("cache_mb", _MIB), ("fp16_acc16_tflops", _TERA))


def _counts(optional: dict[str, Figure], where: str) -> None:
    """Compute units and performance cores are positive whole numbers, P cores among all."""
    for key in ("compute_units", "performance_cores"):
        f = optional.get(key)
        if f is not None and (f.value <= 0 or f.value != int(f.value)):
            raise CatalogError(f"{where}.{key}: {f.value:g} is not a positive whole number")
    units, big = optional.get("compute_units"), optional.get("performance_cores")
    if big is not None and (units is None or big.value > units.value):
        raise CatalogError(f"{where}.performance_cores: needs compute_units (all cores) at least as many")


def _architecture(device: dict, where: str) -> str:
    arch = device.get("architecture", "")
    if not isinstance(arch, str) or (arch and not _ARCHITECTURE.fullmatch(arch)):
        raise CatalogError(f"{where}.architecture: {arch!r} is not a lowercase name (e.g. ampere, zen4, cortex_a57)")
    return arch


def parse_family(data: dict, origin: str) -> list[HardwareSpec]:
    """Validate one catalog file's content and build its specs."""
    sources = data.get("sources") or {}
    family = data.get("family") or Path(origin).stem
    specs = []
    for index, device in enumerate(data.get("devices") or []):
        name = device.get("name") or f"#{index}"
        where = f"{origin}: {name}"
        if device.get("class") not in CLASSES:
            raise CatalogError(f"{where}: class must be one of {', '.join(CLASSES)}")
        peaks = device.get("peak_tflops") or {}
        if not peaks:
            raise CatalogError(f"{where}: no peak_tflops")
        bad = [d for d in peaks if d not in PEAK_PRECISIONS]
        if bad:
            raise CatalogError(f"{where}: unknown dtype(s) {', '.join(bad)}")
        optional = {key: _figure(device[key], scale, sources, f"{where}.{key}")
                    for key, scale in _OPTIONAL if key in device}
        _counts(optional, where)
        specs.append(HardwareSpec(
            name=name, device_class=device["class"], family=family,
            peak={d: _figure(f, _TERA, sources, f"{where}.peak_tflops.{d}") for d, f in peaks.items()},
            bandwidth=optional.get("bandwidth_gbs"), memory=optional.get("memory_gb"),
            efficiency={k: _figure(f, 1.0, sources, f"{where}.efficiency.{k}")
                        for k, f in (device.get("efficiency") or {}).items()},
            overhead=optional.get("overhead_us"), notes=device.get("notes", ""),
            architecture=_architecture(device, where), compute_units=optional.get("compute_units"),
            performance_cores=optional.get("performance_cores"), boost_clock=optional.get("boost_clock_ghz"),
            cache=optional.get("cache_mb"), fp16_acc16=optional.get("fp16_acc16_tflops")))
    return specs


def _catalog_files(directory: Path | None) -> list[tuple[str, dict]]:
    """(file name, parsed content) of each catalog file (the package's own unless ``directory``)."""
    files = sorted(Path(directory).glob("*.yaml")) if directory else sorted(
        (p for p in resources.files("deploylens.hardware").joinpath("catalog").iterdir() if p.name.endswith(".yaml")),
        key=lambda p: p.name)
    return [(path.name, yaml.safe_load(path.read_text()) or {}) for path in files]


def unsourced(directory: Path | None = None) -> dict[str, str]:
    """Devices the catalog names but cannot rate, each with what no source was found for
    (a catalog file's ``unsourced:`` mapping)."""
    return {name: str(why) for _, data in _catalog_files(directory) for name, why in (data.get("unsourced") or {}).items()}


def load_catalog(directory: Path | None = None) -> dict[str, HardwareSpec]:
    """Every device of every catalog file (the package's own unless ``directory``)."""
    catalog: dict[str, HardwareSpec] = {}
    for name, data in _catalog_files(directory):
        for spec in parse_family(data, name):
            if spec.name in catalog:
                raise CatalogError(f"{name}: device {spec.name} defined twice")
            catalog[spec.name] = spec
    return catalog

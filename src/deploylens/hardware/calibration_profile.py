"""This machine's device model: the typed calibration profile `deploylens hw calibrate`
measures and `predict --target this` reads, stored as versioned JSON (never a pickle),
with migration from the versions before it."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from deploylens.dtypes import RUN_PRECISIONS
from deploylens.errors import UserError
from deploylens.hardware.kernel_classes import CLASSES, GPU_CHANNEL_MULTIPLE
from deploylens.hardware.local import cpu_info, vector_lanes
from deploylens.output import write_atomically

FORMAT, VERSION = "deploylens-calibration", 13
DEVICES = ("cpu", "cuda")
BACKENDS = ("torch", "onnxruntime")
# a calibration with fewer of its cases timed quiet ran in a busy spell (docs/device-models.md)
BUSY_QUIET_SHARE = 0.10


@dataclass
class CalibrationPoint:
    """One calibration case as timed: its cost (fused view), its time and, for a conv,
    its geometry (see :func:`deploylens.hardware.kernel_classes.conv_geometry`)."""
    label: str
    flops: int
    bytes: int
    seconds: float
    input_shape: list[int]
    geometry: dict | None = None
    launch_per_op_s: float | None = None  # CUDA: the CPU's time to launch one of its eager ops
    reorder_bytes: int | None = None  # ONNX Runtime: bytes of the layout reorders around the case
    boundary_s: float = 0.0  # the time of those reorders, which a conv inside a network does not run
    seconds_each: list[float] | None = None  # every calibration's time, when several were combined
    # the time as timed when that was faster than the hardware allows: ``seconds`` is then
    # the physical bound's time (see Bounds; a note in the profile says so)
    measured_s: float | None = None


@dataclass
class Machine:
    cpu: str
    isa: list[str] = field(default_factory=list)
    mhz: float | None = None
    node: str | None = None
    gpu: str | None = None


@dataclass
class Probe:
    """The interference probe's quiet level and how many cases timed quiet."""
    level_s: float
    tolerance: float
    quiet_share: float
    exponent: float


@dataclass
class Bounds:
    """What the calibrated cores cannot exceed (:func:`deploylens.hardware.local.physical_bounds`):
    fp32 FLOP/s (the ISA peak at the highest boost clock) and bytes/s for data within the
    cores' L1 data caches (``l1_bytes``) and beyond them."""
    flops: float
    in_l1_bps: float
    beyond_l1_bps: float
    l1_bytes: int
    source: str = ""

    def bandwidth(self, nbytes: int) -> float:
        """The bound on a memory-bound kernel moving ``nbytes``."""
        return self.in_l1_bps if nbytes <= self.l1_bytes else self.beyond_l1_bps


@dataclass
class Overheads:
    kernel: float = 0.0  # each kernel beyond the first in a call
    call: float = 0.0  # once per model call or session run
    view: float = 0.0  # an eager view op (torch)
    in_points: float = 0.0  # what a calibration point's time holds beyond its kernel


@dataclass
class CalibrationProfile:
    device: str
    backend: str
    threads: int
    dtype: str
    vector_lanes: int
    machine: Machine
    points: dict[str, list[CalibrationPoint]]
    fixed_s: dict[str, float] = field(default_factory=dict)  # overhead and whole-network timings
    created: str = ""
    torch: str = ""
    rounds: int = 1
    budget_s: float | None = None  # the time budget the run had (None: unbounded)
    allocator: Any = None
    isa_peak_flops: float | None = None
    probe: Probe | None = None
    fixed_each: dict[str, list[float]] | None = None
    seconds_taken: float | None = None
    bounds: Bounds | None = None  # CPU: the physical bounds its rates were capped at
    # what the time budget left untimed (case labels and synthetic network names): a partial
    # calibration; and what a reader should know (rates capped, parts skipped)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # derived from the timings (calibration.fit.derive)
    peak_flops: float | None = None
    overhead_s: Overheads = field(default_factory=Overheads)
    context_factor: dict[str, float] = field(default_factory=dict)  # per batch size (a str key, as in JSON)
    context_kernel_s: dict[str, float] = field(default_factory=dict)

    def identity(self) -> dict:
        """What the profile is valid for (see :func:`identity`)."""
        return {"device": self.device, "backend": self.backend, "threads": self.threads, "dtype": self.dtype,
                "vector_lanes": self.vector_lanes, "cpu": self.machine.cpu, "gpu": self.machine.gpu}

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: Any, where: str = "the profile") -> CalibrationProfile:
        """A profile from its JSON form, migrated from an older version where that is
        possible; one :class:`UserError` line otherwise."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{where} is not a deploylens calibration profile")
        version = data.get("version")
        while version in MIGRATIONS:
            data, version = MIGRATIONS[version](data), version + 1
        if version != VERSION:
            raise UserError(f"{where} is calibration format version {data.get('version')}; this deploylens reads "
                            f"version {VERSION} (and migrates {', '.join(map(str, MIGRATIONS))}): run "
                            "`deploylens hw calibrate` again")
        try:
            return _build(cls, data)
        except (TypeError, KeyError, AttributeError) as error:
            raise UserError(f"{where} is a damaged calibration profile: {error}") from error


def _build(cls, data: dict):
    """A profile dataclass from JSON, nested dataclasses included, unknown keys refused."""
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names - {"format", "version"}
    if unknown:
        raise TypeError(f"unknown keys {', '.join(sorted(unknown))}")
    values = {key: value for key, value in data.items() if key in names}
    values["machine"] = Machine(**values["machine"])
    values["points"] = {klass: [CalibrationPoint(**p) for p in points] for klass, points in values["points"].items()}
    if values.get("probe") is not None:
        values["probe"] = Probe(**values["probe"])
    if values.get("bounds") is not None:
        values["bounds"] = Bounds(**values["bounds"])
    if values.get("overhead_s") is not None:
        values["overhead_s"] = Overheads(**values["overhead_s"])
    return cls(**values)


def _from_11(data: dict) -> dict:
    """Version 11 had a fixed time budget (105 s on a CPU, none on a GPU) and no record of
    it in the profile."""
    return {**data, "version": 12, "budget_s": 105.0 if data.get("device") == "cpu" else None}


def _from_12(data: dict) -> dict:
    """Version 12 had no physical bounds (its rates were not capped), no record of what the
    budget left untimed (every case had its first round) and no notes."""
    return {**data, "version": 13, "bounds": None, "skipped": [], "notes": []}


# version -> the function that brings a profile of it to the next version
MIGRATIONS = {11: _from_11, 12: _from_12}


def empty_points() -> dict[str, list[CalibrationPoint]]:
    return {klass: [] for klass in CLASSES}


def identity(device: str, backend: str, threads: int, dtype: str) -> dict:
    """What a calibration is valid for: this CPU (and GPU), backend, threads, dtype and
    the channel multiple that runs the fast path (SIMD lanes; tensor-core multiple). A
    combination that cannot be calibrated is one :class:`UserError` line."""
    import torch

    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}: cpu or cuda")
    if backend not in BACKENDS:
        raise UserError(f"calibration backends: torch or onnxruntime, not {backend!r}")
    if dtype not in RUN_PRECISIONS:
        raise UserError(f"calibration dtypes: {', '.join(RUN_PRECISIONS)}, not {dtype!r}")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA GPU is visible here")
        if backend != "torch":
            raise UserError("on a CUDA GPU the calibration runs the torch backend")
    elif dtype != "fp32":
        raise UserError("on the CPU the calibration runs fp32")
    info = cpu_info()
    return {"device": device, "backend": backend, "threads": threads, "dtype": dtype,
            "vector_lanes": GPU_CHANNEL_MULTIPLE if device == "cuda" else vector_lanes(info["isa"]),
            "cpu": info["model"], "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None}


def check_combinable(profile: CalibrationProfile, expected: dict) -> None:
    """Refuses to combine ``profile`` with a calibration of another machine, backend,
    threads or dtype (``expected``: see :func:`identity`)."""
    differ = [key for key, value in expected.items() if profile.identity().get(key) != value]
    if differ:
        raise UserError(f"the calibrations to combine differ in {', '.join(differ)}")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def directory() -> Path:
    """Where profiles are stored: $DEPLOYLENS_CALIBRATION_DIR, else the user's data folder."""
    return Path(os.environ.get("DEPLOYLENS_CALIBRATION_DIR",
                               Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
                               / "deploylens" / "calibration"))


def profile_path(backend: str, threads: int, device: str = "cpu", dtype: str = "fp32",
                 folder: Path | None = None) -> Path:
    """Where the profile of this CPU (or its CUDA GPU), backend, threads and dtype lives."""
    import torch

    machine = torch.cuda.get_device_name(0) if device == "cuda" else cpu_info()["model"]
    return (folder or directory()) / f"{_slug(machine)}-{backend}-{threads}t-{dtype}.json"


def known_probe_level(threads: int, folder: Path | None = None) -> float | None:
    """The quietest interference-probe level (seconds) of the CPU profiles saved for this
    CPU with ``threads`` (any backend, dtype or format version: the probe is the same
    torch conv), or None. A calibration made in a busy spell measures against it."""
    levels = []
    for path in (folder or directory()).glob(f"{_slug(cpu_info()['model'])}-*-{threads}t-*.json"):
        try:
            data = json.loads(path.read_text())
            level = data["probe"]["level_s"] if data.get("format") == FORMAT else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            continue  # not a profile of ours, or one without a probe: nothing to learn from it
        if isinstance(level, (int, float)) and level > 0:
            levels.append(float(level))
    return min(levels, default=None)


def save(profile: CalibrationProfile, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(profile.to_json(), indent=1))
    return path


def load(path: Path) -> CalibrationProfile:
    """Read a calibration profile: JSON only, its format and version checked."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read calibration profile {path}: {error}") from error
    return CalibrationProfile.from_json(data, str(path))

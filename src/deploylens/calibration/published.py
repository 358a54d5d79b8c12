"""Fit a family device model (:mod:`deploylens.hardware.device_model`) on measured
whole-network rows: published tables, or a user's own measurements of a device
deploylens cannot run on (a phone's or an NPU vendor's benchmark app).

Why a bounded, regularised least-squares fit: the data are whole-network times, not
per-kernel ones, and a whole-network time is *linear* in the inverse efficiencies of the
kernel classes (each kernel's time is its FLOPs over the rated peak plus its bytes over
the rated bandwidth plus an overhead). A per-kernel learner (nn-Meter's boosted trees)
needs per-kernel timings we do not have; a meta-learner (HELP) needs many devices. With
30-40 rows per device and 18 unknowns, the fit minimises the squared *relative* error
(each row weighs the same whatever its latency), keeps each inverse efficiency inside
physical bounds (no class above 4x the catalogued peak or bandwidth: Winograd and caches
exceed the roofline's figures, nothing exceeds them by more), and shrinks toward a prior
(a shipped family model when the device's family has one: that is what makes 8-10 rows
of a new device enough) with a strength chosen by leave-one-out error and the
one-standard-error rule (the strongest pull within one standard error of the best).
docs/device-models.md gives the measured comparison with the roofline.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from deploylens.dtypes import analysis_name, precision_key
from deploylens.errors import UserError
from deploylens.hardware.device_model import (BACKEND_RUNTIMES, COMPUTE_CLASSES, MEMORY_CLASSES, Accuracy, FamilyModel,
                                              FittedOn, device_family, on_threads)
from deploylens.hardware.spec import HardwareSpec

# what a rows file may call a runtime -> how it runs a network (device_model.RUNTIMES)
RUNTIME_ALIASES = {**BACKEND_RUNTIMES, "eager": "eager", "pytorch": "eager", "fused": "fused", "dynamo": "fused",
                   "inductor": "fused", "trt": "fused"}
# the columns of a rows file: model, input_shape, batch, precision, runtime, and either
# samples_per_s or ms_per_batch; device, threads and source are optional (--device gives
# the device; threads, when the run used fewer than all its cores)
REQUIRED = ("model", "input_shape", "batch", "precision", "runtime")
# inverse efficiencies are at least this: no class above 4x the catalogued peak or bandwidth
MIN_INVERSE_EFFICIENCY = 0.25
# the generic prior (no family model yet): half the peak, 70% of the bandwidth, 5 us a kernel
PRIOR_COMPUTE, PRIOR_MEMORY, PRIOR_KERNEL_S, CALL_SCALE_S = 0.5, 0.7, 5e-6, 1e-4
# the least a kernel costs beyond its work, per family: a CUDA launch takes 4-6 us of driver
# and runtime calls (susun-blog "pegainfer (3)", RTX 5070 Ti, CUDA 13), which rows at batch
# 1024 cannot show and batch 1 is made of
KERNEL_FLOOR_S = {"nvidia_gpu": 4e-6}
STRENGTHS = (0.0, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
METHOD = "bounded least squares on relative error, ridge toward the prior, strength by leave-one-out (1-SE rule)"


@dataclass
class MeasuredRow:
    """One measured whole network: ``model`` a reference ``resolve_model`` takes (a zoo
    name, ``NAME:deploy`` for a zoo model's deploy form), its per-sample input shape,
    batch, precision key, runtime, milliseconds per batch, device and source."""
    model: str
    input_shape: tuple[int, ...]
    batch: int
    precision: str
    runtime: str
    ms_per_batch: float
    device: str
    source: str
    where: str  # "rows.csv line 7", for messages
    threads: int | None = None  # threads of the run (None: every core)

    @property
    def network(self) -> tuple:
        """What its analysis depends on: rows that share it share one analysis."""
        return self.model, self.input_shape, self.batch, self.precision


def _shape(text: str) -> tuple[int, ...]:
    dims = tuple(int(d) for d in text.lower().replace("x", ",").split(",") if d.strip())
    if len(dims) == 1:
        dims = (3, dims[0], dims[0])
    if not dims or any(d <= 0 for d in dims):
        raise ValueError
    return dims


def parse_row(record: dict, where: str, device: str | None, catalog: dict[str, HardwareSpec]) -> MeasuredRow:
    """One CSV record as a row, or a :class:`UserError` naming the row and its fault."""
    missing = [c for c in REQUIRED if not (record.get(c) or "").strip()]
    if missing:
        raise UserError(f"{where}: no {', '.join(missing)}")
    try:
        shape, batch = _shape(record["input_shape"]), int(record["batch"])
    except ValueError:
        raise UserError(f"{where}: input_shape {record['input_shape']!r} / batch {record['batch']!r} are not "
                        "positive integers (input_shape: 224, 3x224x224 or 3,224,224)") from None
    if batch <= 0:
        raise UserError(f"{where}: batch {batch} is not positive")
    try:
        ms = float(record["ms_per_batch"]) if (record.get("ms_per_batch") or "").strip() else \
            batch / float(record["samples_per_s"]) * 1e3
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        raise UserError(f"{where}: no positive samples_per_s or ms_per_batch") from None
    if not ms > 0 or math.isinf(ms):
        raise UserError(f"{where}: the measured time {ms} ms is not positive")
    runtime = RUNTIME_ALIASES.get(record["runtime"].strip().lower())
    if runtime is None:
        raise UserError(f"{where}: runtime {record['runtime']!r} is not one of {', '.join(RUNTIME_ALIASES)}")
    try:
        precision = precision_key(record["precision"].strip().lower().replace("amp", "fp16"))
    except UserError as error:
        raise UserError(f"{where}: {error}") from None
    name = (record.get("device") or "").strip() or device
    if not name:
        raise UserError(f"{where}: no device (a device column, or --device)")
    if name not in catalog:
        raise UserError(f"{where}: device {name!r} is not in the catalog (deploylens hw list)")
    threads_text = (record.get("threads") or "").strip()
    if threads_text and not (threads_text.isdigit() and int(threads_text) > 0):
        raise UserError(f"{where}: threads {threads_text!r} is not a positive integer")
    return MeasuredRow(record["model"].strip(), shape, batch, precision, runtime, ms, name,
                       (record.get("source") or "").strip() or "user measurements", where,
                       int(threads_text) if threads_text else None)


def read_rows(path: str | Path, catalog: dict[str, HardwareSpec], device: str | None = None
              ) -> tuple[list[MeasuredRow], list[str]]:
    """The rows of a CSV file and one line per row that cannot be used."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}") from error
    reader = csv.DictReader(text.splitlines())
    columns = set(reader.fieldnames or ())
    lacking = [c for c in REQUIRED if c not in columns]
    if lacking or not columns & {"samples_per_s", "ms_per_batch"}:
        raise UserError(f"{path}: needs columns {', '.join(REQUIRED)} and samples_per_s or ms_per_batch "
                        f"(has: {', '.join(sorted(columns)) or 'none'})")
    rows, problems = [], []
    for line, record in enumerate(reader, start=2):
        try:
            rows.append(parse_row(record, f"{Path(path).name} line {line}", device, catalog))
        except UserError as error:
            problems.append(str(error))
    return rows, problems


def row_sums(row: MeasuredRow, spec: HardwareSpec, cache: dict | None = None) -> dict:
    """The per-class sums (:func:`deploylens.predict.fitted.class_sums`) of a row's network
    on its device (as the row's threads see it), its analysis kept in ``cache`` under
    :attr:`MeasuredRow.network`; a :class:`UserError` naming the row when the network cannot be built or
    does not take the shape."""
    from deploylens.analysis.api import analyze
    from deploylens.capture.loader import resolve_model
    from deploylens.predict.fitted import class_sums, fitted_kernels

    if cache is not None and row.network in cache:
        profile = cache[row.network]
    else:
        reference, suffix, rest = row.model.partition(":deploy")
        try:
            built, name = resolve_model(reference, deploy=bool(suffix) and not rest)
            profile = analyze(built, [((row.batch, *row.input_shape), "float")], analysis_name(row.precision),
                              name=name)
        except UserError as error:
            raise UserError(f"{row.where}: {error}") from None
        except Exception as error:  # noqa: BLE001 - a shape the network does not take fails anywhere inside it
            raise UserError(f"{row.where}: {row.model} does not run on input "
                            f"{'x'.join(map(str, row.input_shape))}: {type(error).__name__}") from None
        if cache is not None:
            cache[row.network] = profile
    try:
        threaded = on_threads(spec, row.threads)
    except UserError as error:
        raise UserError(f"{row.where}: {error}") from None
    return class_sums(profile, fitted_kernels(profile, row.runtime), threaded, row.precision)


def design_vector(sums: dict) -> np.ndarray:
    """A row of the design matrix: seconds at peak per compute class, at full bandwidth
    per class, the kernel count, and 1 (the call)."""
    return np.array([sums.get(c, {}).get("compute", 0.0) for c in COMPUTE_CLASSES]
                    + [sums.get(c, {}).get("memory", 0.0) for c in MEMORY_CLASSES]
                    + [sum(s["kernels"] for s in sums.values()), 1.0])


def parameters(model: FamilyModel) -> np.ndarray:
    """A model's parameters in design-vector order: inverse efficiencies, then overheads."""
    return np.array([1 / model.compute_efficiency[c] for c in COMPUTE_CLASSES]
                    + [1 / model.memory_efficiency[c] for c in MEMORY_CLASSES]
                    + [model.kernel_overhead_s, model.call_overhead_s])


def _generic_prior() -> np.ndarray:
    return np.array([1 / PRIOR_COMPUTE] * len(COMPUTE_CLASSES) + [1 / PRIOR_MEMORY] * len(MEMORY_CLASSES)
                    + [PRIOR_KERNEL_S, 0.0])


def _scales(prior: np.ndarray) -> np.ndarray:
    """How far each parameter may stray from the prior at unit cost."""
    scales = np.maximum(prior, MIN_INVERSE_EFFICIENCY)
    scales[-2], scales[-1] = max(prior[-2], PRIOR_KERNEL_S), max(prior[-1], CALL_SCALE_S)
    return scales


def nnls(matrix: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Non-negative least squares (Lawson and Hanson's active-set method)."""
    columns = matrix.shape[1]
    solution, passive = np.zeros(columns), np.zeros(columns, dtype=bool)
    gradient = matrix.T @ (target - matrix @ solution)
    for _ in range(3 * columns):
        candidates = np.where(~passive & (gradient > 1e-12))[0]
        if not len(candidates):
            break
        passive[candidates[np.argmax(gradient[candidates])]] = True
        while True:
            trial = np.zeros(columns)
            trial[passive] = np.linalg.lstsq(matrix[:, passive], target, rcond=None)[0]
            if np.all(trial[passive] > 0):
                solution = trial
                break
            falling = passive & (trial <= 0)
            step = np.min(solution[falling] / (solution[falling] - trial[falling]))
            solution = solution + step * (trial - solution)
            passive &= solution > 1e-15
        gradient = matrix.T @ (target - matrix @ solution)
    return solution


def solve(design: np.ndarray, seconds: np.ndarray, prior: np.ndarray, strength: float,
          kernel_floor_s: float = 0.0) -> np.ndarray:
    """Parameters minimising the squared relative error of ``design @ p`` against
    ``seconds`` plus ``strength`` times the squared scaled distance from ``prior``, each
    inverse efficiency at least :data:`MIN_INVERSE_EFFICIENCY` and the overheads at least 0."""
    lower = np.array([MIN_INVERSE_EFFICIENCY] * (len(COMPUTE_CLASSES) + len(MEMORY_CLASSES)) + [kernel_floor_s, 0.0])
    scales = _scales(prior)
    relative = design / seconds[:, None] * scales  # unknowns in units of their scale
    penalty = math.sqrt(strength) * np.eye(len(prior))
    matrix = np.vstack([relative, penalty])
    target = np.concatenate([np.ones(len(seconds)), penalty @ (prior / scales)])
    shifted = nnls(matrix, target - matrix @ (lower / scales))
    return shifted * scales + lower


def _errors(design: np.ndarray, seconds: np.ndarray, prior: np.ndarray, strength: float,
            groups: np.ndarray, kernel_floor_s: float = 0.0) -> np.ndarray:
    """Predicted / measured for every row, fitted without the rows of its group."""
    ratios = np.empty(len(seconds))
    for group in np.unique(groups):
        out = groups == group
        fitted = solve(design[~out], seconds[~out], prior, strength, kernel_floor_s)
        ratios[out] = design[out] @ fitted / seconds[out]
    return ratios


def accuracy_of(ratios: np.ndarray) -> Accuracy:
    """Share within 10% / 25% and the median absolute relative error of predicted /
    measured ratios."""
    errors = np.abs(np.asarray(ratios) - 1)
    return Accuracy(len(errors), float(np.mean(errors <= 0.10)), float(np.mean(errors <= 0.25)),
                    float(np.median(errors)))


@dataclass
class DesignFit:
    """Parameters fitted on a design matrix, the strength chosen, and per row the
    predicted / measured ratio with the row left out and (rows of several devices) with
    its device left out."""
    values: np.ndarray
    strength: float
    row_left_out: np.ndarray | None
    device_left_out: np.ndarray | None

    def accuracy(self) -> Accuracy | None:
        return None if self.row_left_out is None else accuracy_of(self.row_left_out)

    def device_accuracy(self) -> Accuracy | None:
        return None if self.device_left_out is None else accuracy_of(self.device_left_out)


def fit_design(design: np.ndarray, seconds: np.ndarray, prior: np.ndarray | None = None,
               devices: list[str] | None = None, kernel_floor_s: float = 0.0) -> DesignFit:
    """Fit ``design @ p = seconds`` with a strength (of :data:`STRENGTHS`) chosen on the
    mean absolute log error when each device's rows are left out in turn (what a family
    model is for: devices it has not seen), or each row when the rows come from one
    device, by the one-standard-error rule. With fewer than 3 rows there is no
    leave-one-out and the prior's weight is fixed at 1e-2. ``kernel_floor_s``: the least a
    kernel's overhead may be (a GPU's launch cost)."""
    prior = _generic_prior() if prior is None else prior
    if len(seconds) < 3:
        return DesignFit(solve(design, seconds, prior, 1e-2, kernel_floor_s), 1e-2, None, None)
    rows = np.arange(len(seconds))
    groups = np.array(devices) if devices and len(set(devices)) > 1 else None
    errors = {s: np.abs(np.log(np.maximum(_errors(design, seconds, prior, s, rows if groups is None else groups,
                                                  kernel_floor_s), 1e-9))) for s in STRENGTHS}
    best = min(STRENGTHS, key=lambda s: errors[s].mean())
    # the one-standard-error rule: the strongest pull toward the prior whose error is within
    # one standard error of the best (few rows cannot tell the weaker pulls apart)
    bound = errors[best].mean() + errors[best].std() / math.sqrt(len(seconds))
    strength = max(s for s in STRENGTHS if errors[s].mean() <= bound)
    def left_out(by: np.ndarray | None) -> np.ndarray | None:
        return None if by is None else _errors(design, seconds, prior, strength, by, kernel_floor_s)

    return DesignFit(solve(design, seconds, prior, strength, kernel_floor_s), strength, left_out(rows), left_out(groups))


def to_model(fit: DesignFit, family: str, precision: str, runtime: str, fitted_on: list[FittedOn],
             prior_name: str) -> FamilyModel:
    values, count = fit.values, len(COMPUTE_CLASSES)
    return FamilyModel(
        family, precision, runtime,
        compute_efficiency={c: float(1 / v) for c, v in zip(COMPUTE_CLASSES, values[:count])},
        memory_efficiency={c: float(1 / v) for c, v in zip(MEMORY_CLASSES, values[count:-2])},
        kernel_overhead_s=float(values[-2]), call_overhead_s=float(values[-1]), fitted_on=fitted_on,
        accuracy=fit.accuracy(), device_left_out=fit.device_accuracy(),
        method=f"{METHOD} (strength {fit.strength:g}, prior: {prior_name})")


@dataclass
class Fit:
    """A fitted family model and, per row, the fitted and the leave-one-out prediction."""
    model: FamilyModel
    rows: list[MeasuredRow]
    fitted_ms: list[float]
    left_out_ms: list[float] | None
    skipped: list[str]  # one line per row whose network could not be built or run on its shape

    def to_dict(self) -> dict:
        return {"model": self.model.to_json(),
                "rows": [{"model": r.model, "input_shape": list(r.input_shape), "batch": r.batch, "device": r.device,
                          "measured_ms": r.ms_per_batch, "fitted_ms": fitted,
                          "left_out_ms": self.left_out_ms[i] if self.left_out_ms else None, "where": r.where}
                         for i, (r, fitted) in enumerate(zip(self.rows, self.fitted_ms))],
                "skipped": self.skipped}


def fit_rows(rows: list[MeasuredRow], catalog: dict[str, HardwareSpec], prior: FamilyModel | None = None,
             advance: Callable[[], None] | None = None, cache: dict | None = None) -> Fit:
    """One family model from ``rows`` (all of one device family, precision and runtime),
    shrunk toward ``prior`` (None: the generic prior). ``advance`` is called after each
    row's network is analysed (a progress bar). A row whose network cannot be built or
    does not take its shape is skipped and named in :attr:`Fit.skipped`."""
    vectors, usable, skipped = [], [], []
    for row in rows:
        try:
            vectors.append(design_vector(row_sums(row, catalog[row.device], cache)))
            usable.append(row)
        except UserError as error:
            skipped.append(str(error))
        if advance:
            advance()
    rows = usable
    if not rows:
        raise UserError("no usable rows to fit on" + (f" ({skipped[0]})" if skipped else ""))
    groups = sorted({(device_family(catalog[r.device]), r.precision, r.runtime) for r in rows})
    if len(groups) > 1:
        raise UserError("the rows mix device families, precisions or runtimes ("
                        + "; ".join("/".join(g) for g in groups) + "): fit each group on its own")
    family, precision, runtime = groups[0]
    seconds, design = np.array([r.ms_per_batch / 1e3 for r in rows]), np.array(vectors)
    fitted = fit_design(design, seconds, None if prior is None else parameters(prior), [r.device for r in rows],
                        KERNEL_FLOOR_S.get(family, 0.0))
    fitted_on = [FittedOn(device, sum(1 for r in rows if r.device == device),
                          "; ".join(sorted({r.source for r in rows if r.device == device})),
                          sorted({r.batch for r in rows if r.device == device}))
                 for device in sorted({r.device for r in rows})]
    model = to_model(fitted, family, precision, runtime, fitted_on, prior.key if prior else "generic")
    left_out = None if fitted.row_left_out is None else list(fitted.row_left_out * seconds * 1e3)
    return Fit(model, rows, list(design @ fitted.values * 1e3), left_out, skipped)

"""The studies by name, and the runner: build a study's arms, cost them with the
analyzer, prepare them on a backend (the interface `deploylens bench` uses), time them
interleaved within the budget and judge the paper's claims."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from deploylens.analysis.api import analyze
from deploylens.bench.backends import BACKENDS, resolve_backends
from deploylens.bench.environment import capture as environment
from deploylens.dtypes import analysis_name, precision_key
from deploylens.errors import UserError
from deploylens.numerics import example_inputs
from deploylens.onnx_runtime import export_for_runtime
from deploylens.studies.core import Arm, Expectation, StudyResult, compare, overall, time_interleaved

# seconds a study may take in all (preparing its arms included), and with --quick
BUDGET_S, QUICK_BUDGET_S = 90.0, 30.0


@dataclass(frozen=True)
class Settings:
    device: str = "cpu"
    backend: str = "torch"
    dtype: str = "fp32"
    threads: int = 1
    quick: bool = False


@dataclass
class Design:
    """What a study runs for some settings: its arms, the paper's claims about them, the
    paper's table (column -> value per arm) and notes on how the arms were built."""
    arms: list[Arm]
    expectations: list[Expectation]
    paper: dict
    notes: list[str] = field(default_factory=list)
    # notes from the timed arms (achieved FLOP/s, a rank correlation, ...), made after timing
    summarize: Callable[[list[Arm]], list[str]] | None = None


@dataclass(frozen=True)
class Study:
    name: str
    claim: str
    source: str
    design: Callable[[Settings], Design]
    devices: tuple[str, ...] = ("cpu", "cuda")


STUDIES: dict[str, Study] = {}


def study(name: str, claim: str, source: str, devices: tuple[str, ...] = ("cpu", "cuda")):
    """Register ``design(settings) -> Design`` as the study ``name``."""
    def register(design: Callable[[Settings], Design]) -> Callable[[Settings], Design]:
        if name in STUDIES:
            raise ValueError(f"study {name!r} is registered twice")
        STUDIES[name] = Study(name, claim, source, design, devices)
        return design
    return register


def _prepared(arm: Arm, settings: Settings, onnx_path: str):
    """``arm`` ready to run once on the settings' backend (an ONNX backend runs its export
    at ``onnx_path``), and its analysis costed."""
    model = arm.build().eval()
    inputs = example_inputs([(arm.input_shape, "float")])
    profile = analyze(model, [(arm.input_shape, "float")], analysis_name(settings.dtype))
    totals = profile.totals
    arm.flops, arm.bytes, arm.params, arm.peak_activation_bytes = (totals.flops, totals.bytes_fused, totals.params,
                                                                   totals.peak_activation_bytes)
    backend = BACKENDS[settings.backend]
    if backend.needs_torch_model:
        return backend.prepare(model, inputs, settings.threads, settings.device, settings.dtype)
    export_for_runtime(model, inputs, onnx_path)
    return backend.prepare(onnx_path, [x.numpy() for x in inputs], settings.threads, settings.device)


def resolve_study(name: str, backend: str = "torch", device: str = "cpu", dtype: str = "fp32",
                  budget_s: float | None = None) -> Study:
    """The study ``name``, after checking that it can run as asked (one line otherwise)."""
    if name not in STUDIES:
        raise UserError(f"unknown study {name!r}; one of: {', '.join(STUDIES)} (deploylens study --list)")
    chosen = STUDIES[name]
    if device not in chosen.devices:
        raise UserError(f"study {name} runs on --device {' or '.join(chosen.devices)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible here")
    resolve_backends([backend], precision_key(dtype), device)
    if budget_s is not None and not budget_s > 0:
        raise UserError("a study's time budget must be positive seconds")
    return chosen


def run_study(name: str, backend: str = "torch", device: str = "cpu", dtype: str = "fp32",
              threads: int | None = None, quick: bool = False, budget_s: float | None = None,
              progress: Callable[[int, int], None] = lambda done, total: None) -> StudyResult:
    """Run the study ``name`` on this machine and judge the paper's claims."""
    chosen = resolve_study(name, backend, device, dtype, budget_s)
    dtype = precision_key(dtype)
    budget_s = budget_s or (QUICK_BUDGET_S if quick else BUDGET_S)
    # one thread on a CPU by default, as ShuffleNetV2 timed its ARM CPU: a thread that waits
    # for a busy sibling core stalls the other, so fewer threads measure steadier
    threads = threads or (1 if device == "cpu" else torch.get_num_threads())
    torch.set_num_threads(threads)
    settings = Settings(device, backend, dtype, threads, quick)
    started = time.perf_counter()
    design = chosen.design(settings)
    with tempfile.TemporaryDirectory(prefix="deploylens-study-") as workdir:
        prepared = [_prepared(arm, settings, f"{workdir}/arm{index}.onnx") for index, arm in enumerate(design.arms)]
        left = budget_s - (time.perf_counter() - started)
        # on a GPU the blocks are timed by CUDA events (the bench backends' device timer)
        samples = time_interleaved([p.run for p in prepared], max(left * 0.9, 1.0), prepared[0].sync,
                                   progress=progress, device_timer=prepared[0].device_timer)
    for arm, own in zip(design.arms, samples):
        arm.samples = own
    arms = {arm.name: arm for arm in design.arms}
    comparisons = [compare(arms[e.a], arms[e.b], e) for e in design.expectations]
    machine = environment(threads)
    where = machine["gpu"]["name"] if device == "cuda" else machine["cpu"]["model"]
    measured = design.summarize(design.arms) if design.summarize else []
    notes = design.notes + measured + [f"measured on {where} ({device}, {backend}, {dtype}, {threads} threads); the verdict "
                            "speaks for this device and backend"]
    return StudyResult(name, chosen.claim, chosen.source,
                       {"device": device, "backend": backend, "dtype": dtype, "threads": threads, "quick": quick,
                        "budget_s": budget_s},
                       machine, design.arms, comparisons, overall(comparisons), notes, design.paper)

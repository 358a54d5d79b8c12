"""The lint registry: a rule is one small function registered with :func:`rule`, with
an id, a rationale, its source, where it applies (:class:`Applies`) and its named options
(:class:`Option`); it receives a :class:`Context` and returns :class:`Finding` s."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from deploylens.analysis.profile import Profile
from deploylens.capture.ir import Graph
from deploylens.cost.records import KernelCost, LayerCost
from deploylens.dtypes import lookup
from deploylens.errors import UserError
from deploylens.hardware.calibration_profile import CalibrationProfile
from deploylens.hardware.targets import Target

# lint judges a model as deployed: a catalogued device runs what a deploy toolchain runs
DEPLOY_BACKEND = "tensorrt"


@dataclass
class Finding:
    rule: str
    severity: str  # info, warning or error
    layer: str
    message: str
    source: str
    impact: dict | None = None  # {"value": float, "unit": "bytes" | "ms" | "MACs"}
    module: str = ""


@dataclass
class Context:
    graph: Graph
    profile: Profile
    target: Target
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # rule id -> option name -> value
    not_judged: dict[str, str] = field(default_factory=dict)  # rule id -> why it could not judge this target
    layers: dict[str, LayerCost] = field(default_factory=dict)
    kernels: dict[str, KernelCost] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.layers = {layer.name: layer for layer in self.profile.layers}
        self.kernels = {kernel.name: kernel for kernel in self.profile.kernels}

    def option(self, rule_id: str, name: str) -> Any:
        """The value of ``rule_id``'s option ``name``: as configured, else its default."""
        configured = self.options.get(rule_id, {})
        return configured[name] if name in configured else RULES[rule_id].option(name).default

    @property
    def elem(self) -> int:
        return lookup(self.target.dtype).bytes

    def ms(self, flops: float, nbytes: float, kernel_class: str) -> float | None:
        """Predicted time of a (real or hypothetical) kernel on the target, or None."""
        from deploylens.hardware.device_model import FittedDevice, rated_class
        from deploylens.predict.calibrated import calibrated_time
        from deploylens.predict.fitted import fitted_time
        from deploylens.predict.roofline import roofline_time

        kernel = KernelCost("what-if", "conv", [], int(flops), int(flops // 2), int(nbytes), 0, None, True)
        try:
            model = self.target.latency_model(DEPLOY_BACKEND)
        except UserError:  # no latency model here: impacts in bytes only
            return None
        if isinstance(model, FittedDevice):  # the fitted models add compute and memory time
            compute, memory, overhead = fitted_time(kernel, rated_class(kernel_class), model, self.target.dtype)
            return (compute + memory + overhead) * 1e3
        if isinstance(model, CalibrationProfile):
            compute, memory, overhead = calibrated_time(kernel, kernel_class, model)
        else:
            compute, memory, overhead = roofline_time(kernel, kernel_class, model, self.target.dtype)
        return (max(compute, memory) + overhead) * 1e3

    def kernel_ms(self, kernel: KernelCost, kernel_class: str) -> float | None:
        return self.ms(kernel.flops, kernel.bytes, kernel_class)


@dataclass(frozen=True)
class Option:
    """A rule's named threshold: its default and what it means (a number; ``minimum`` and
    ``maximum`` bound what a configuration may set)."""
    name: str
    default: int | float
    meaning: str
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class Applies:
    """Where a rule runs: ``text`` says it, ``test`` decides it for a target."""
    text: str
    test: Callable[[Target], bool]

    def __call__(self, target: Target) -> bool:
        return self.test(target)


EVERY_TARGET = Applies("every target", lambda target: True)


@dataclass(frozen=True)
class Rule:
    id: str
    rationale: str
    source: str
    check: Callable[[Context], list[Finding]]
    applies: Applies
    options: tuple[Option, ...] = ()

    def option(self, name: str) -> Option:
        return next(option for option in self.options if option.name == name)


RULES: dict[str, Rule] = {}


def rule(rule_id: str, rationale: str, source: str, applies: Applies = EVERY_TARGET, options: tuple[Option, ...] = ()):
    def register(check: Callable[[Context], list[Finding]]) -> Callable[[Context], list[Finding]]:
        RULES[rule_id] = Rule(rule_id, rationale, source, check, applies, options)
        return check

    return register

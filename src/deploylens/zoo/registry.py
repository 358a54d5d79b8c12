"""Registry of zoo variants: a builder plus the metadata a comparison needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

from deploylens.errors import UserError

_SCALE = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}


def parse_figure(text: str) -> tuple[float, float]:
    """A printed figure and half its last printed unit: "8.31M" -> (8.31e6, 5e3)."""
    text = text.strip()
    unit = text[-1] if text[-1] in _SCALE else ""
    digits = text[: len(text) - len(unit)]
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return float(digits) * _SCALE[unit], 0.5 * 10 ** -decimals * _SCALE[unit]


@dataclass(frozen=True)
class Published:
    """Published figures as printed (so their precision is known) and their source."""

    params: str | None = None  # e.g. "4.24M" or the exact "11689512"
    macs: str | None = None  # multiply-accumulates at the variant's resolution, e.g. "569M"
    macs_convention: str = "MACs"  # what the source called the number it printed
    top1: float | None = None
    source: str = ""
    # what the source counted: "params" (all trainable tensors, as PyTorch), "weights"
    # (conv/linear only, no BatchNorm, as the TF MobileNetV2 README), or "variables"
    # (TF-slim checkpoint variables: BN shift and moving statistics, no BN scale), or
    # "backbone" (all but the final classifier)
    params_counts: str = "params"


@dataclass(frozen=True)
class Variant:
    name: str
    build: Callable[[], nn.Module]
    family: str
    resolution: int = 224
    published: Published = field(default_factory=Published)
    deploy_counts: bool = False  # published params/MACs are of the re-parameterized form


def comparable_params(profile, counts: str) -> int:
    """Our parameter count (from an analysis ``profile``) under the counting rule a
    source used (see ``Published``)."""
    params = profile.totals.params
    batch_norm = sum(layer.params for layer in profile.layers if layer.op == "batch_norm")
    classifier = next((layer.params for layer in reversed(profile.layers) if layer.kind == "linear"), 0)
    return {"params": params, "weights": params - batch_norm, "variables": params + batch_norm // 2,
            "backbone": params - classifier}[counts]


_REGISTRY: dict[str, Variant] = {}


def register(name: str, *, family: str, resolution: int = 224, published: Published | None = None,
             deploy_counts: bool = False):
    """Register a zero-argument builder under ``name``."""

    def decorate(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"zoo name {name!r} registered twice")
        _REGISTRY[name] = Variant(name, build, family, resolution, published or Published(), deploy_counts)
        return build

    return decorate


def names() -> list[str]:
    return sorted(_REGISTRY)


def variant(name: str) -> Variant:
    if name not in _REGISTRY:
        raise UserError(f"unknown zoo model {name!r}; known: {', '.join(names())}")
    return _REGISTRY[name]


def create(name: str, deploy: bool = False) -> nn.Module:
    """Build the zoo model ``name`` (random init) in eval mode; ``deploy=True`` returns
    the re-parameterized form where the family has one."""
    from deploylens.zoo.reparam import reparameterize

    model = variant(name).build().eval()
    return reparameterize(model) if deploy else model


def resolution_of(name: str) -> int | None:
    return _REGISTRY[name].resolution if name in _REGISTRY else None

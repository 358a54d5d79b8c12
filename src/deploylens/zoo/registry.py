"""Registry of zoo variants: a builder plus the metadata a comparison needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn


@dataclass(frozen=True)
class Published:
    """A published figure and where it comes from."""

    params: int | None = None
    macs: int | None = None  # multiply-accumulates at `resolution`
    macs_convention: str = "MACs"  # what the source called the number it printed
    top1: float | None = None
    source: str = ""


@dataclass(frozen=True)
class Variant:
    name: str
    build: Callable[[], nn.Module]
    resolution: int = 224
    published: Published = field(default_factory=Published)
    family: str = ""


_REGISTRY: dict[str, Variant] = {}


def register(name: str, *, resolution: int = 224, published: Published | None = None, family: str = ""):
    """Register a zero-argument builder under ``name``."""

    def decorate(build: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"zoo name {name!r} registered twice")
        _REGISTRY[name] = Variant(name, build, resolution, published or Published(), family)
        return build

    return decorate


def names() -> list[str]:
    return sorted(_REGISTRY)


def variant(name: str) -> Variant:
    from deploylens.errors import UserError

    if name not in _REGISTRY:
        raise UserError(f"unknown zoo model {name!r}; known: {', '.join(names())}")
    return _REGISTRY[name]


def create(name: str) -> nn.Module:
    """Build the zoo model ``name`` (random init) in eval mode."""
    return variant(name).build().eval()


def resolution_of(name: str) -> int | None:
    return _REGISTRY[name].resolution if name in _REGISTRY else None

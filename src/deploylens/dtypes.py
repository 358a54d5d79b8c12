"""The one dtype table: every element type deploylens names, its size, its short
precision key (``fp32``, as commands and calibration profiles write it) and the torch
dtype it runs as."""

from __future__ import annotations

from dataclasses import dataclass

from deploylens.errors import UserError


@dataclass(frozen=True)
class DType:
    name: str  # torch's and the IR's name: float32, float16, ...
    bytes: int
    key: str  # the precision key: fp32, fp16, bf16, int8, ...
    floating: bool


_TABLE = (
    DType("float64", 8, "fp64", True),
    DType("float32", 4, "fp32", True),
    DType("float16", 2, "fp16", True),
    DType("bfloat16", 2, "bf16", True),
    DType("float8_e4m3fn", 1, "fp8_e4m3", True),
    DType("float8_e5m2", 1, "fp8_e5m2", True),
    DType("int64", 8, "int64", False),
    DType("int32", 4, "int32", False),
    DType("int16", 2, "int16", False),
    DType("int8", 1, "int8", False),
    DType("uint8", 1, "uint8", False),
    DType("bool", 1, "bool", False),
    DType("complex64", 8, "complex64", False),
    DType("complex128", 16, "complex128", False),
)
BY_NAME = {d.name: d for d in _TABLE}
_BY_KEY = {d.key: d for d in _TABLE}

DTYPE_BYTES = {d.name: d.bytes for d in _TABLE}
FLOAT_DTYPES = frozenset(d.name for d in _TABLE if d.floating)
# the precisions models run in on the torch backends (bench, calibration)
RUN_PRECISIONS = ("fp32", "fp16", "bf16")
# the precisions a device catalog rates peaks in (int8: ops/s)
PEAK_PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def lookup(text: str) -> DType:
    """The dtype named ``text`` by its name (``float16``) or precision key (``fp16``)."""
    found = BY_NAME.get(text) or _BY_KEY.get(text)
    if found is None:
        raise UserError(f"unknown dtype {text!r}: one of {', '.join(d.name for d in _TABLE)} "
                        f"(or {', '.join(d.key for d in _TABLE if d.key != d.name)})")
    return found


def precision_key(text: str) -> str:
    """``float16`` or ``fp16`` -> ``fp16``."""
    return lookup(text).key


def analysis_name(text: str) -> str:
    """``fp16`` or ``float16`` -> ``float16``."""
    return lookup(text).name


def torch_dtype(text: str):
    """The torch dtype of ``text`` (``fp16`` or ``float16``)."""
    import torch

    return getattr(torch, lookup(text).name)

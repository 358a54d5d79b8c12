"""The numbers a check runs a model on and the one way its outputs are compared with a
reference: benchmark backends against torch eager, deploy transforms and ONNX exports
against the original model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

# max |reference| below this is taken as this, so that an all-zero output divides by something
SCALE_FLOOR = 1e-12


@dataclass(frozen=True)
class OutputError:
    max_abs: float  # the largest |output - reference| over every output
    max_rel: float  # the largest of each output's max |output - reference| / max |reference|


def _array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, on any device and in any precision
        value = value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _one(output: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    if output.shape != reference.shape:
        return float("inf"), float("inf")
    if not reference.size:
        return 0.0, 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        agree = (output == reference) | (np.isnan(output) & np.isnan(reference))
        diff = np.where(agree, 0.0, np.abs(output - reference))
    worst = float(np.nan_to_num(diff, nan=np.inf).max())  # a NaN on one side only is no agreement
    finite = np.abs(reference[np.isfinite(reference)])
    scale = max(float(finite.max()) if finite.size else 0.0, SCALE_FLOOR)
    return worst, worst / scale


def _listed(outputs: Any) -> list:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def output_error(outputs: Any, reference: Any) -> OutputError:
    """How far ``outputs`` are from ``reference`` (each a model's outputs: an array or
    tensor, or a list or tuple of them, in order): per output, max |difference| and that
    relative to the output's max |reference|; the worst of each over all outputs. A
    different count or shape of outputs is an infinite error, and so is a NaN where the
    reference has a number."""
    outputs, reference = _listed(outputs), _listed(reference)
    if len(outputs) != len(reference):
        return OutputError(float("inf"), float("inf"))
    pairs = [_one(_array(o), _array(r)) for o, r in zip(outputs, reference)]
    return OutputError(max((a for a, _ in pairs), default=0.0), max((r for _, r in pairs), default=0.0))


def max_relative_error(outputs: Any, reference: Any) -> float:
    """:func:`output_error`'s relative figure."""
    return output_error(outputs, reference).max_rel


def example_inputs(specs: Sequence[tuple[tuple[int, ...], str]], seed: int = 0) -> list:
    """Tensors to run a model on: for each (shape, dtype) spec, standard normal values
    (seeded: the same on every call) for a ``float`` input, zeros for an integer one."""
    import torch

    from deploylens.dtypes import torch_dtype

    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) if kind == "float" else torch.zeros(shape, dtype=torch_dtype(kind))
            for shape, kind in specs]

"""Model references and input shapes: what a user names on the command line or passes
to the API, turned into an ``nn.Module`` or ONNX model and the shapes to run it on."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from deploylens.dtypes import DTYPE_BYTES
from deploylens.errors import UserError

InputSpec = tuple[tuple[int, ...], str]  # (shape, dtype); dtype "float" follows --dtype
DEFAULT_IMAGE_SHAPE = (1, 3, 224, 224)


def parse_input_shapes(value: Any) -> list[InputSpec] | None:
    """Accept ``(1, 3, 224, 224)``, a list of shapes, or text ``"1,3,224,224;1,16:int64"``."""
    if value is None:
        return None
    if isinstance(value, str):
        specs = []
        for part in [p for p in value.replace(" ", "").split(";") if p]:
            dims, _, dtype = part.partition(":")
            try:
                shape = tuple(int(d) for d in dims.lower().replace("x", ",").split(",") if d)
            except ValueError:
                raise UserError(f"bad input shape {part!r}: expected comma-separated integers like 1,3,224,224")
            if dtype and dtype not in DTYPE_BYTES:
                raise UserError(f"bad input dtype {dtype!r}: one of {', '.join(DTYPE_BYTES)}")
            specs.append((shape, dtype or "float"))
        value = specs
    elif all(isinstance(d, int) for d in value):
        value = [(tuple(value), "float")]
    else:
        value = [v if len(v) == 2 and isinstance(v[1], str) else (tuple(v), "float") for v in value]
    for shape, _ in value:
        if not shape or any(d <= 0 for d in shape):
            raise UserError(f"bad input shape {list(shape)}: every dim must be a positive integer")
    return [(tuple(s), d) for s, d in value]


def _import_factory(reference: str):
    target, _, attr = reference.rpartition(":")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise UserError(f"no such file: {target}")
            spec = importlib.util.spec_from_file_location(f"deploylens_user_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - user code may raise anything
        raise UserError(f"cannot import {target!r}: {type(error).__name__}: {error}") from error
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise UserError(f"{target!r} has no callable {attr!r}")
    try:
        return factory()
    except Exception as error:  # noqa: BLE001
        raise UserError(f"{reference}() raised {type(error).__name__}: {error}") from error


def resolve_model(model: Any) -> tuple[Any, str]:
    """Turn a model reference into an ``nn.Module`` or ``onnx.ModelProto`` and a display name.

    Accepted: an ``nn.Module``; an ``onnx.ModelProto``; a path to an ``.onnx`` file;
    ``package.module:factory`` or ``path/to/file.py:factory``; a zoo name.
    """
    import onnx
    import torch

    from deploylens import zoo
    from deploylens.capture.onnx_capture import load_onnx

    if isinstance(model, (torch.nn.Module, onnx.ModelProto)):
        return model, type(model).__name__ if isinstance(model, torch.nn.Module) else model.graph.name or "onnx"
    reference = str(model)
    if reference.lower().endswith(".onnx") or Path(reference).suffix.lower() == ".onnx":
        return load_onnx(reference), Path(reference).name
    if ":" in reference and not Path(reference).exists():
        built = _import_factory(reference)
        if not isinstance(built, torch.nn.Module):
            raise UserError(f"{reference}() returned {type(built).__name__}, not a torch.nn.Module")
        return built, reference
    if reference in zoo.names():
        return zoo.create(reference), reference
    if Path(reference).is_file():
        return load_onnx(reference), Path(reference).name
    raise UserError(f"unknown model {reference!r}: give an .onnx file, package.module:factory, "
                    f"file.py:factory or a zoo name (deploylens zoo list)")


def default_input_specs(model: Any, built: Any, notes: list[str] | None = None) -> list[InputSpec]:
    """The input a model runs on when none is given: a zoo model's published resolution,
    1x3x224x224 for any other module, an ONNX model's own input shapes (a dynamic batch
    of 1, which ``notes`` record)."""
    import torch

    from deploylens import zoo
    from deploylens.capture.onnx_shapes import own_input_specs

    if not isinstance(built, torch.nn.Module):
        return own_input_specs(built, [] if notes is None else notes)
    resolution = zoo.resolution_of(model) if isinstance(model, str) else None
    return [((1, 3, resolution, resolution) if resolution else DEFAULT_IMAGE_SHAPE, "float")]

"""Model references and input shapes: what a user names on the command line or passes
to the API, turned into an ``nn.Module`` or ONNX model and the shapes to run it on."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from deploylens.dtypes import DTYPE_BYTES
from deploylens.errors import UserError, first_line

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


# files that hold PyTorch weights or a pickled object: never unpickled here
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".pth.tar")


def _is_checkpoint(path: str) -> bool:
    return path.lower().endswith(CHECKPOINT_SUFFIXES)


def _checkpoint_error(path: str) -> UserError:
    return UserError(
        f"{path} is a PyTorch checkpoint: it holds weights or a pickled object, which deploylens will not "
        f"unpickle (loading one can run code); give file.py:factory, the code that builds the model (load the "
        f"weights there with model.load_state_dict(torch.load(PATH, weights_only=True))), or an ONNX export")


def _factory_candidates(path: Path) -> list[str]:
    """Public top-level functions and classes of a Python file that can be called without
    arguments, read with ``ast``: the file is not run."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return []

    def bare(args: ast.arguments, skip_self: bool) -> bool:
        positional = [*args.posonlyargs, *args.args][1 if skip_self else 0:]
        return len(positional) <= len(args.defaults) and None not in args.kw_defaults

    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            if bare(node.args, skip_self=False):
                names.append(node.name)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
            if init is None or bare(init.args, skip_self=True):
                names.append(node.name)
    return names


def _listed(names: list[str], most: int = 8) -> str:
    return ", ".join(names[:most]) + (", ..." if len(names) > most else "")


def _missing_factory_error(reference: str) -> UserError:
    path = Path(reference)
    if not path.is_file():
        return UserError(f"no such file: {reference}")
    candidates = _factory_candidates(path)
    example = f"{reference}:{candidates[0] if len(candidates) == 1 else 'NAME'}"
    listed = f" (callable without arguments in it: {_listed(candidates)})" if candidates else ""
    return UserError(f"{reference} is Python code: name the function or class in it that builds the model, "
                     f"as {example}{listed}")


@contextmanager
def _importable(folder: Path | None) -> Iterator[None]:
    """``folder`` first on ``sys.path`` while the block runs (a model file imports the
    files beside it: ``from se_block import SEBlock``), taken off afterwards."""
    if folder is None:
        yield
        return
    entry = str(folder.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)


def _import_factory(reference: str):
    target, _, attr = reference.rpartition(":")
    if _is_checkpoint(target):
        raise _checkpoint_error(target)
    if not attr:
        if target.endswith(".py"):
            raise _missing_factory_error(target)
        raise UserError(f"{reference!r} names no factory after ':'")
    path = Path(target) if target.endswith(".py") else None
    if path is not None and not path.is_file():
        raise UserError(f"no such file: {target}")
    folder = path.parent if path is not None else None
    try:
        with _importable(folder):
            if path is not None:
                spec = importlib.util.spec_from_file_location(f"deploylens_user_{path.stem}", path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module
                spec.loader.exec_module(module)
            else:
                module = importlib.import_module(target)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - user code may raise anything
        raise UserError(f"cannot import {target!r}: {_described(error)}") from error
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        candidates = _factory_candidates(path) if path is not None else []
        listed = f" (callable without arguments in it: {_listed(candidates)})" if candidates else ""
        raise UserError(f"{target!r} has no callable {attr!r}{listed}")
    try:
        with _importable(folder):  # the factory may import too
            return factory()
    except (Exception, SystemExit) as error:  # noqa: BLE001
        raise UserError(f"{reference}() raised {_described(error)}") from error


def _described(error: BaseException) -> str:
    if isinstance(error, SystemExit):
        return f"SystemExit: exit({error.code})"
    return f"{type(error).__name__}: {first_line(error)}"


def resolve_model(model: Any, deploy: bool = False) -> tuple[Any, str]:
    """Turn a model reference into an ``nn.Module`` or ``onnx.ModelProto`` and a display name.

    Accepted: an ``nn.Module``; an ``onnx.ModelProto``; a path to an ``.onnx`` file;
    ``package.module:factory`` or ``path/to/file.py:factory`` (the file's folder is on
    ``sys.path`` while it is imported and the factory runs); a zoo name. A Python file
    without ``:factory`` and a PyTorch checkpoint (``.pt``, ``.pth``, ``.ckpt``, ...)
    are refused with what to give instead: deploylens never unpickles a file.

    ``deploy``: a zoo model's deploy form (its re-parameterizable blocks folded, the name
    suffixed ``:deploy``); any other reference is refused with what to run instead.
    """
    import onnx
    import torch

    from deploylens import zoo
    from deploylens.capture.onnx_capture import load_onnx

    if deploy:
        if isinstance(model, str) and model in zoo.names():
            return zoo.create(model, deploy=True), f"{model}:deploy"
        raise UserError(f"--deploy takes a zoo model's deploy form; {_display(model)} is not a zoo model: "
                        "fold your own model with `deploylens deploy MODEL --reparam --fuse --onnx model.onnx` and give that file")
    if isinstance(model, (torch.nn.Module, onnx.ModelProto)):
        return model, type(model).__name__ if isinstance(model, torch.nn.Module) else model.graph.name or "onnx"
    reference = str(model)
    suffix = Path(reference).suffix.lower()
    if suffix == ".onnx":
        return load_onnx(reference), Path(reference).name
    if _is_checkpoint(reference):
        raise _checkpoint_error(reference)
    if suffix == ".py":
        raise _missing_factory_error(reference)
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


def _display(model: Any) -> str:
    return repr(model) if isinstance(model, str) else type(model).__name__


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

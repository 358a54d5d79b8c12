"""The one way deploylens exports a PyTorch model for a runtime and opens an ONNX
Runtime session: benchmarking, calibration, kernel introspection, deploy checks and
ONNX shape inference all come through here."""

from __future__ import annotations

import os
import warnings
from typing import Any

from deploylens.errors import UserError, first_line

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
EXPORT_OPSET = 17


def export_for_runtime(model: Any, inputs: list, path: str | os.PathLike, opset: int = EXPORT_OPSET,
                       names: list[str] | None = None, dynamic_batch: bool = True) -> None:
    """A float32, eval-mode ONNX export with the TorchScript exporter (inputs ``names``,
    by default ``input0``, ``input1``, ...; the batch dim dynamic with ``dynamic_batch``)."""
    import torch

    names = names or [f"input{i}" for i in range(len(inputs))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.float().eval(), tuple(inputs), str(path), dynamo=False, opset_version=opset,
                          input_names=names, dynamic_axes={n: {0: "batch"} for n in names} if dynamic_batch else None)


def session(model: str | os.PathLike | bytes, threads: int | None = None, device: str = "cpu",
            optimized: str | None = None, profile_prefix: str | None = None, quiet: bool = False):
    """An ONNX Runtime session of ``model`` (a path or serialized bytes): ``threads``
    intra-op threads (None: ONNX Runtime's default) and one inter-op thread, run
    sequentially; its optimized graph saved at ``optimized``; profiling into files
    starting ``profile_prefix``; ``quiet``: only errors logged. A model it cannot load
    is a one-line error."""
    import onnxruntime as ort

    providers = [CUDA] if device == "cuda" else [CPU]
    if device == "cuda" and CUDA not in ort.get_available_providers():
        raise UserError("onnxruntime has no CUDA provider here (install onnxruntime-gpu)")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if optimized:
        options.optimized_model_filepath = str(optimized)
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    if quiet or optimized:  # a saved optimized graph fits this CPU only: ONNX Runtime warns so
        options.log_severity_level = 3
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=providers)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
        where = "the model" if isinstance(model, bytes) else str(model)
        raise UserError(f"onnxruntime cannot load {where}: {first_line(error)}") from error

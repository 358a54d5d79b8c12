"""Running a calibration case: a callable that runs it once on a backend (ONNX Runtime
with its inputs and outputs bound to buffers made once; on a CUDA GPU as one CUDA graph
replay, so that its time is the GPU's alone), and what launching its eager ops costs the
CPU, measured apart."""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import torch
import torch.nn as nn

from deploylens.bench.backends import BACKENDS
from deploylens.hardware.calibration_profile import Overheads
from deploylens.kernels.onnxruntime_graph import reorder_kernels
from deploylens.onnx_runtime import export_for_runtime


def launch_seconds(run: Callable[[], object], sync: Callable[[], None], calls: int = 10, blocks: int = 5) -> float:
    """Host time of one eager call among calls launched back to back, as a network's ops
    are: what launching its ops costs the CPU while the GPU runs them asynchronously (the
    median over ``blocks`` blocks of ``calls`` calls, after one warm-up block)."""
    means = []
    for index in range(blocks + 1):
        sync()
        start = time.perf_counter()
        for _ in range(calls):
            run()
        if index:
            means.append((time.perf_counter() - start) / calls)
    sync()
    return statistics.median(means)


def launch_per_op(call_seconds: float, ops: int, overheads: Overheads) -> float:
    """A case's launch cost per eager op, from the host time of one call of its ``ops`` ops:
    the call's own cost (``overheads.call``) is paid once per inference, not per op, and
    no op launches for less than an element-wise op in a chain (``overheads.kernel``)."""
    return max((call_seconds - overheads.call) / max(ops, 1), overheads.kernel)


def boundary_reorder_bytes(optimized: str, numels: dict[str, int]) -> int:
    """Bytes of the reorders ONNX Runtime put at the boundary of a float32 calibration case
    (its optimized graph saved at ``optimized``; ``numels``: elements by tensor name)."""
    return sum(kernel.bytes for kernel in reorder_kernels(optimized, numels))


def case_runner(backend: str, model: nn.Module | None, inputs: list[torch.Tensor], threads: int, workdir: str,
                onnx_model: bytes | None = None, device: str = "cpu", dtype: str = "fp32", graph: bool = False,
                optimized: str | None = None) -> Callable[[], object]:
    """A callable running ``model`` once on ``backend``, prepared by the backend interface
    `deploylens bench` uses (:mod:`deploylens.bench.backends`): torch eager, on a CUDA
    device with ``graph`` as one CUDA graph replay; ONNX Runtime (``onnx_model`` when
    given, else the model's export, its optimized graph saved at ``optimized`` if given)
    with its inputs and outputs bound to buffers made once."""
    if backend == "torch":
        return BACKENDS["torch-cudagraph" if graph else "torch"].prepare(model, inputs, threads, device, dtype).run
    if onnx_model is None:
        onnx_model = os.path.join(workdir, "case.onnx")
        export_for_runtime(model, inputs, onnx_model)
    return BACKENDS["onnxruntime"].prepare(onnx_model, [x.numpy() for x in inputs], threads, device,
                                           bound=True, optimized=optimized).run

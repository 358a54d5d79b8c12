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

from deploylens.dtypes import torch_dtype
from deploylens.hardware.calibration_profile import Overheads
from deploylens.kernels.onnxruntime_graph import nchwc_reorders
from deploylens.onnx_runtime import export_for_runtime, session


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


def _cuda_graph(model: nn.Module, inputs: list[torch.Tensor]) -> Callable[[], None]:
    """``model`` captured as a CUDA graph: its replay runs the kernels without the eager
    launch cost, so the time is the GPU's alone."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.no_grad():
        with torch.cuda.stream(stream):  # warm-up off the default stream, as capture requires
            for _ in range(3):
                model(*inputs)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(*inputs)
    return graph.replay


def boundary_reorder_bytes(optimized: str, numels: dict[str, int]) -> int:
    """Bytes of the reorders ONNX Runtime put at the boundary of a calibration case (its
    optimized graph saved at ``optimized``): each reads and writes its float32 tensor."""
    return sum(2 * 4 * numels.get(plain, 0) for _, plain in nchwc_reorders(optimized))


def case_runner(backend: str, model: nn.Module | None, inputs: list[torch.Tensor], threads: int, workdir: str,
                onnx_model: bytes | None = None, device: str = "cpu", dtype: str = "fp32", graph: bool = False,
                optimized: str | None = None):
    """A callable running ``model`` once on ``backend`` (ONNX Runtime: ``onnx_model`` when
    given, else the model's export, its optimized graph saved at ``optimized`` if given);
    on a CUDA device as eager ops or, with ``graph``, as one CUDA graph replay."""
    if backend == "torch":
        model = model.to(device=device, dtype=torch_dtype(dtype))
        inputs = [x.to(device=device, dtype=torch_dtype(dtype)) for x in inputs]
        if graph:
            return _cuda_graph(model, inputs)

        def run():
            with torch.inference_mode():
                model(*inputs)
        return run
    import onnxruntime as ort

    if onnx_model is None:
        path = os.path.join(workdir, "case.onnx")
        export_for_runtime(model, inputs, path)
    runner = session(onnx_model or path, threads, optimized=optimized)
    # inputs and outputs bound to buffers made once: a run returning its outputs as new
    # arrays copies them, which a kernel inside a network does not (measured here: a
    # 3x3 conv 32->32 at 112x112, 1.09 ms returning its output, 0.87-0.93 ms bound)
    names = [port.name for port in runner.get_inputs()]
    arrays = [x.numpy() for x in inputs]
    arrays += runner.run(None, dict(zip(names, arrays)))
    binding = runner.io_binding()
    # an OrtValue made from an array does not own its memory: the closure keeps both
    values = [ort.OrtValue.ortvalue_from_numpy(array) for array in arrays]
    for name, value in zip(names, values):
        binding.bind_ortvalue_input(name, value)
    for port, value in zip(runner.get_outputs(), values[len(names):]):
        binding.bind_ortvalue_output(port.name, value)

    def run():
        runner.run_with_iobinding(binding)
        return arrays, values
    return run

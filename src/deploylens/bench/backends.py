"""Inference backends behind one interface: prepare once (cold timings), then a
``run()`` that performs one inference on fixed inputs.

torch eager, torch.compile and ONNX Runtime always; OpenVINO and TensorRT when
installed. A backend that is not installed says so in one line.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from deploylens.dtypes import RUN_PRECISIONS, torch_dtype
from deploylens.errors import UserError
from deploylens.onnx_runtime import session as onnxruntime_session


@dataclass
class Prepared:
    run: Callable[[], Any]  # one inference
    outputs: Callable[[], list[np.ndarray]]  # one inference, outputs as float32 arrays
    load_s: float  # model load / session creation / compile set-up
    first_s: float  # the first inference (includes lazy compilation)
    sync: Callable[[], None] = lambda: None
    device_timer: Callable[[Callable[[], None]], float] | None = None  # CUDA events
    info: dict = field(default_factory=dict)
    close: Callable[[], None] = lambda: None


def _numpy(outputs: Any) -> list[np.ndarray]:
    flat = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [o.detach().float().cpu().numpy() if isinstance(o, torch.Tensor) else np.asarray(o, dtype=np.float32)
            for o in flat]


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _cuda_event_timer(block: Callable[[], None]) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    block()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3


def _torch_prepare(model: torch.nn.Module, inputs: list[torch.Tensor], device: str, dtype: str,
                   compile_model: bool) -> Prepared:
    precision = torch_dtype(dtype)

    def load():
        moved = model.to(device=device, dtype=precision).eval()
        return torch.compile(moved) if compile_model else moved

    runnable, load_s = _timed(load)
    args = [x.to(device=device, dtype=precision if x.is_floating_point() else x.dtype) for x in inputs]
    cuda = device == "cuda"

    def run():
        with torch.inference_mode():
            return runnable(*args)

    def first():
        out = run()
        if cuda:
            torch.cuda.synchronize()
        return out

    _, first_s = _timed(first)  # torch.compile compiles here: warm-up, never a sample
    return Prepared(run=run, outputs=lambda: _numpy(run()), load_s=load_s, first_s=first_s,
                    sync=torch.cuda.synchronize if cuda else (lambda: None),
                    device_timer=_cuda_event_timer if cuda else None,
                    info={"torch": torch.__version__, "compiled": compile_model})


def _cuda_graph_prepare(model: torch.nn.Module, inputs: list[torch.Tensor], threads: int, device: str,
                        dtype: str) -> Prepared:
    """``model`` captured as one CUDA graph: a run replays its kernels without the eager
    launch cost, so its time is the GPU's alone (on the inputs captured: fixed buffers)."""
    precision = torch_dtype(dtype)

    def capture():
        moved = model.to(device=device, dtype=precision).eval()
        args = [x.to(device=device, dtype=precision if x.is_floating_point() else x.dtype) for x in inputs]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode():
            with torch.cuda.stream(stream):  # warm-up off the default stream, as capture requires
                for _ in range(3):
                    moved(*args)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = moved(*args)
        return graph, outputs

    (graph, outputs), load_s = _timed(capture)

    def first():
        graph.replay()
        torch.cuda.synchronize()

    _, first_s = _timed(first)

    def replayed():
        graph.replay()
        torch.cuda.synchronize()
        return _numpy(outputs)
    return Prepared(run=graph.replay, outputs=replayed, load_s=load_s, first_s=first_s, sync=torch.cuda.synchronize,
                    device_timer=_cuda_event_timer, info={"torch": torch.__version__, "cuda_graph": True})


def _onnxruntime_prepare(onnx_model: str | bytes, inputs: list[np.ndarray], threads: int, device: str,
                         bound: bool = False, optimized: str | None = None) -> Prepared:
    """``bound``: inputs and outputs bound to buffers made once, as a kernel inside a
    network reads and writes them (a run returning its outputs as new arrays copies them:
    docs/device-models.md); ``optimized``: where to save the optimized graph."""
    import onnxruntime as ort

    session, load_s = _timed(lambda: onnxruntime_session(onnx_model, threads, device, optimized=optimized))
    feeds = {port.name: x for port, x in zip(session.get_inputs(), inputs)}

    def run():
        return session.run(None, feeds)

    _, first_s = _timed(run)
    return Prepared(run=_bound(session, feeds) if bound else run, outputs=lambda: _numpy(session.run(None, feeds)),
                    load_s=load_s, first_s=first_s,
                    info={"onnxruntime": ort.__version__, "providers": session.get_providers()})


def _bound(session, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
    """One run of ``session`` on inputs and outputs bound to buffers made once."""
    import onnxruntime as ort

    arrays = list(feeds.values()) + session.run(None, feeds)
    # an OrtValue made from an array does not own its memory: the closure keeps both
    values = [ort.OrtValue.ortvalue_from_numpy(array) for array in arrays]
    binding = session.io_binding()
    for name, value in zip(feeds, values):
        binding.bind_ortvalue_input(name, value)
    for port, value in zip(session.get_outputs(), values[len(feeds):]):
        binding.bind_ortvalue_output(port.name, value)

    def run():
        session.run_with_iobinding(binding)
        return arrays, values
    return run


def _openvino_prepare(onnx_path: str, inputs: list[np.ndarray], threads: int, device: str) -> Prepared:
    import openvino as ov

    if device != "cpu":
        raise UserError("the openvino backend runs on --device cpu here")
    core = ov.Core()
    # fp32 means fp32: OpenVINO would otherwise pick bf16 on CPUs with AMX / AVX512-BF16
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    compiled, load_s = _timed(lambda: core.compile_model(onnx_path, "CPU", config))
    request = compiled.create_infer_request()

    def run():
        return request.infer(inputs)

    _, first_s = _timed(run)
    return Prepared(run=run, outputs=lambda: [np.asarray(v, dtype=np.float32) for v in run().values()],
                    load_s=load_s, first_s=first_s, info={"openvino": ov.__version__})


def _tensorrt_prepare(onnx_path: str, inputs: list[np.ndarray], threads: int, device: str) -> Prepared:
    raise UserError("the tensorrt backend needs TensorRT and a CUDA GPU; neither path is available here")


@dataclass(frozen=True)
class Backend:
    name: str
    needs_torch_model: bool
    module: str | None  # the package that must be importable
    prepare: Callable[..., Prepared]
    dtypes: tuple[str, ...] = ("fp32",)  # precision keys (deploylens.dtypes)
    devices: tuple[str, ...] = ("cpu", "cuda")

    def missing(self) -> str | None:
        if self.module and importlib.util.find_spec(self.module) is None:
            return f"backend {self.name!r} is not installed (pip install {self.module})"
        return None


BACKENDS = {
    "torch": Backend("torch", True, None, lambda m, x, t, d, dt: _torch_prepare(m, x, d, dt, False),
                     RUN_PRECISIONS),
    "torch-compile": Backend("torch-compile", True, None, lambda m, x, t, d, dt: _torch_prepare(m, x, d, dt, True),
                             RUN_PRECISIONS),
    "torch-cudagraph": Backend("torch-cudagraph", True, None, _cuda_graph_prepare, RUN_PRECISIONS, ("cuda",)),
    "onnxruntime": Backend("onnxruntime", False, "onnxruntime", _onnxruntime_prepare),
    "openvino": Backend("openvino", False, "openvino", _openvino_prepare),
    "tensorrt": Backend("tensorrt", False, "tensorrt", _tensorrt_prepare),
}


def resolve_backends(names: list[str], dtype: str, device: str = "cpu") -> list[Backend]:
    """Validate the requested backends before anything runs or is stored."""
    chosen = []
    for name in names:
        if name not in BACKENDS:
            raise UserError(f"unknown backend {name!r}; one of {', '.join(BACKENDS)}")
        backend = BACKENDS[name]
        reason = backend.missing()
        if reason:
            raise UserError(reason)
        if dtype not in backend.dtypes:
            raise UserError(f"backend {name!r} runs {', '.join(backend.dtypes)} here, not {dtype}")
        if device not in backend.devices:
            raise UserError(f"backend {name!r} runs on --device {' or '.join(backend.devices)}, not {device}")
        chosen.append(backend)
    return chosen


def temporary_onnx_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="deploylens-bench-", dir=os.environ.get("TMPDIR"))

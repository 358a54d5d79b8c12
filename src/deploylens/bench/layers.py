"""Per-layer measured times joined to the analyzer's layers: torch.profiler ranges per
leaf module on torch, ONNX Runtime's profiler per node on onnxruntime."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections import defaultdict

import torch

from deploylens.analysis.profile import Profile
from deploylens.onnx_runtime import session as onnxruntime_session


@contextlib.contextmanager
def _quiet_stderr():
    """The profiler's native library prints start/stop lines on fd 2; keep them out."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def torch_module_times(model: torch.nn.Module, inputs: list[torch.Tensor], repeats: int = 10) -> dict[str, float]:
    """Mean seconds per call of every leaf module, from torch.profiler ranges."""
    names = {id(m): n for n, m in model.named_modules() if n and not any(m.children())}
    open_ranges: list = []

    def enter(module, args):
        if id(module) in names:
            scope = torch.autograd.profiler.record_function(f"deploylens::{names[id(module)]}")
            scope.__enter__()
            open_ranges.append(scope)

    def leave(module, args, output):
        if id(module) in names and open_ranges:
            open_ranges.pop().__exit__(None, None, None)

    handles = [torch.nn.modules.module.register_module_forward_pre_hook(enter),
               torch.nn.modules.module.register_module_forward_hook(leave, always_call=True)]
    try:
        with torch.inference_mode(), _quiet_stderr():
            model(*inputs)  # warm
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(repeats):
                    model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return {e.key.removeprefix("deploylens::"): e.cpu_time_total / 1e6 / repeats
            for e in prof.key_averages() if e.key.startswith("deploylens::")}


def onnxruntime_node_times(onnx_path: str, feeds: dict, threads: int, repeats: int = 10) -> dict[str, float]:
    """Mean seconds per run of every node ONNX Runtime executed (fused nodes keep the
    name of the node they absorbed into)."""
    session = onnxruntime_session(onnx_path, threads,
                                  profile_prefix=os.path.join(os.path.dirname(onnx_path), "ort_profile"))
    session.run(None, feeds)
    for _ in range(repeats):
        session.run(None, feeds)
    trace_path = session.end_profiling()
    with open(trace_path) as handle:
        events = json.load(handle)
    os.unlink(trace_path)
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            totals[event["name"].removesuffix("_kernel_time")] += event["dur"] / 1e6
    # the first run is the warm one: every node ran repeats + 1 times
    return {name: seconds / (repeats + 1) for name, seconds in totals.items()}


def _node_work(profile: Profile) -> dict[str, dict]:
    """ONNX node name -> the work of the fused kernel it runs in: ONNX Runtime fuses
    Conv+Relu (and renames the result after its output), as our fused view does."""
    kernels = {k.name: k for k in profile.kernels}
    work = {}
    for layer in profile.layers:
        kernel = kernels.get(layer.kernel or "")
        if kernel:
            work[layer.name] = {"layer": layer.name, "kind": kernel.kind, "flops": kernel.flops,
                                "bytes": kernel.bytes}
    return work


def _module_work(profile: Profile) -> dict[str, dict]:
    work: dict[str, dict] = {}
    for layer in profile.layers:
        g = work.setdefault(layer.module, {"layer": layer.module, "kind": layer.kind, "flops": 0, "bytes": 0})
        g["flops"] += layer.flops or 0
        g["bytes"] += layer.bytes_read + layer.bytes_written
    return work


def output_owners(onnx_path: str) -> dict[str, str]:
    """Tensor name -> the node that produces it: ONNX Runtime names the nodes its
    optimizer rewrites after their output tensor (``<output>_nchwc``)."""
    import onnx

    graph = onnx.load(onnx_path, load_external_data=False).graph
    return {output: node.name for node in graph.node for output in node.output}


def _onnx_node(key: str, work: dict, owners: dict[str, str]) -> str | None:
    for candidate in (key, key.removesuffix("_nchwc")):
        if candidate in work:
            return candidate
        if owners.get(candidate) in work:
            return owners[candidate]
    return None


def join(times: dict[str, float], profile: Profile, by: str, owners: dict[str, str] | None = None) -> list[dict]:
    """Measured time per layer beside its FLOPs and bytes: achieved GFLOP/s and GB/s.

    ``by`` is "module" (torch: leaf module paths, eager layers) or "name" (ONNX Runtime
    nodes, matched through ``owners`` to the fused kernel of the node they came from).
    """
    work = _module_work(profile) if by == "module" else _node_work(profile)
    groups = {}
    for key in times:
        node = key if by == "module" else _onnx_node(key, work, owners or {})
        if node in work:
            groups[key] = {**work[node], "layer": key}
    total = sum(times.values())
    rows = []
    for key, seconds in times.items():
        g = groups.get(key, {"layer": key, "kind": "unmatched", "flops": 0, "bytes": 0})
        rows.append({**g, "time_ms": seconds * 1e3, "share": seconds / total if total else 0.0,
                     "achieved_gflops": g["flops"] / seconds / 1e9 if seconds else None,
                     "achieved_gbs": g["bytes"] / seconds / 1e9 if seconds else None})
    return sorted(rows, key=lambda r: r["time_ms"], reverse=True)

"""Latency prediction per fused kernel: a roofline on a catalogued device, or the
calibrated rates of this machine.

For every kernel of the analyzer's fused view:

    compute time = FLOPs / (peak x compute efficiency)
    memory time  = bytes / (bandwidth x memory efficiency)
    time         = max(compute, memory) + per-kernel overhead

plus, on ``this``, the calibrated per-call overhead once (a model call or session run).
On a CUDA GPU the CPU launches eager ops while the GPU runs earlier ones: a kernel
starts once it is launched and the one before it is done, so launch overhead costs time
only where the GPU runs out of work (small kernels, batch 1).

On a catalogued device the efficiencies are the catalog's (1.0 when it has none: an
optimistic bound) and the overhead its sourced figure (0 when none). On ``this``
machine the rates are measured: each kernel is matched to the calibration points of its
class (dense / pointwise / depthwise / grouped conv, matmul, element-wise, pool, copy)
nearest to it, whose achieved rate it takes: a conv by its geometry (channels, groups,
output pixels, kernel size, stride, channel alignment to the SIMD width), any other
kernel by (log FLOPs, log bytes).
"""

from __future__ import annotations

import math
import platform
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from deploylens.analysis.profile import KernelCost, LayerCost, Profile
from deploylens.errors import UserError
from deploylens.calibration.run import BUSY_QUIET_SHARE, COMPUTE_CLASSES, channel_alignment, conv_geometry
from deploylens.hardware.spec import HardwareSpec
from deploylens.dtypes import DTYPE_BYTES

_DTYPE_KEYS = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "int8": "int8", "fp32": "fp32",
               "fp16": "fp16", "bf16": "bf16"}
_NEIGHBOURS = 4
# steps of the conv geometry distance, in log10 units of channels or pixels
_KERNEL_STEP, _STRIDE_STEP, _ALIGNMENT_STEP = 0.5, 0.3, 1.0


# element-wise ops that compute an exponential or a tanh per element: slower than a copy
_TRANSCENDENTAL = frozenset({"sigmoid", "silu", "gelu", "tanh", "elu", "softplus", "mish"})
# the class a kernel takes where its own is not calibrated (on the other backend only)
_CLASS_FALLBACK = {"reorder": "copy", "slice": "copy", "transcendental": "elementwise"}


@dataclass
class KernelTime:
    name: str
    kind: str
    kernel_class: str
    flops: int
    bytes: int
    compute_ms: float
    memory_ms: float
    overhead_ms: float
    time_ms: float
    bound: str  # "compute", "memory" or "overhead"
    complete: bool


@dataclass
class Prediction:
    model: str
    target: str
    backend: str
    batch: int
    dtype: str
    totals: dict
    kernels: list[KernelTime]
    share_by_kind: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def conv_geometry_of(anchor: LayerCost) -> dict | None:
    """The conv geometry (see :func:`deploylens.calibration.run.conv_geometry`) of a
    conv anchor; None for other ops."""
    if anchor.kind not in ("conv", "conv_transpose") or len(anchor.inputs) < 2 or not anchor.outputs:
        return None
    x, w, y = anchor.inputs[0], anchor.inputs[1], anchor.outputs[0]
    if len(x) < 3 or len(w) < 3 or len(y) < 3:
        return None
    c_in = x[1]
    groups = c_in // w[1] if anchor.kind == "conv" and w[1] else 1
    stride = max(1, round(x[2] / y[2])) if anchor.kind == "conv" and y[2] else 1
    return conv_geometry(c_in, y[1], groups, max(w[2:]), stride, math.prod(y) // y[1])


def kernel_class(anchor: LayerCost) -> str:
    """The calibration class of a kernel, from the op that anchors it."""
    geometry = conv_geometry_of(anchor)
    if geometry:
        if geometry["groups"] > 1 and geometry["groups"] == geometry["c_in"]:
            return "conv_depthwise"
        if geometry["groups"] > 1:
            return "conv_grouped"
        return "conv_pointwise" if geometry["kernel"] == 1 else "conv_dense"
    if anchor.kind in ("linear", "matmul", "attention"):
        return "matmul"
    if anchor.kind in ("pool", "reduce"):  # a global average pool is a mean
        return "pool"
    if anchor.native in _RUNTIME_COPIES:  # a kernel only where slicing copies (see runtime_copies)
        return "slice"
    if anchor.kind == "data_movement":
        return "copy"
    return "transcendental" if anchor.op in _TRANSCENDENTAL else "elementwise"


def _log(value: float) -> float:
    return math.log10(max(value, 1.0))


def size_distance(flops: int, nbytes: int, compute: bool) -> Callable[[dict], float]:
    """Distance in (log FLOPs, log bytes); bytes only for a memory-bound class."""
    def distance(p: dict) -> float:
        if not compute:
            return abs(_log(p["bytes"]) - _log(nbytes))
        return math.hypot(_log(p["flops"]) - _log(flops), _log(p["bytes"]) - _log(nbytes))
    return distance


def _geometry_distance(geometry: dict, lanes: int) -> Callable[[dict], float]:
    """Distance between conv geometries: log channels, log channels per group and log
    output pixels, plus fixed steps for another kernel size, stride or each level of
    channel alignment (a conv whose channels do not fill the SIMD vectors runs a slower
    path: :func:`~deploylens.calibration.run.channel_alignment`)."""
    alignment = channel_alignment(geometry["c_in"], geometry["c_out"], geometry["groups"], lanes)

    def features(g: dict) -> tuple[float, ...]:
        return (_log(g["pixels"]), _log(g["c_in"]), _log(g["c_out"]), _log(g["c_in"] // g["groups"]))

    mine = features(geometry)

    def distance(p: dict) -> float:
        other = p["geometry"]
        return (math.dist(mine, features(other))
                + _KERNEL_STEP * (other["kernel"] != geometry["kernel"])
                + _STRIDE_STEP * (other["stride"] != geometry["stride"])
                + _ALIGNMENT_STEP * abs(channel_alignment(other["c_in"], other["c_out"], other["groups"], lanes)
                                        - alignment))
    return distance


def _nearest(points: list[dict], distance: Callable[[dict], float]) -> list[tuple[float, dict]]:
    """The calibration points nearest to a kernel, with inverse-square-distance weights."""
    return [(1.0 / (distance(p) + 0.05) ** 2, p) for p in sorted(points, key=distance)[:_NEIGHBOURS]]


def _log_mean(weighted: list[tuple[float, float]]) -> float:
    return math.exp(sum(w * math.log(v) for w, v in weighted) / sum(w for w, _ in weighted))


def nearest_rate(points: list[dict], distance: Callable[[dict], float], compute: bool, overhead: float) -> float:
    """Achieved rate (FLOP/s or bytes/s) of the calibration points nearest to a kernel,
    weighted in log space, with the fixed overhead taken out."""
    def seconds(p: dict) -> float:  # a point's own kernel: without the overhead and boundary copies it holds
        return max(p["seconds"] - overhead - p.get("boundary_s", 0.0), p["seconds"] * 0.1)

    return _log_mean([(w, (p["flops"] if compute else p["bytes"]) / seconds(p)) for w, p in _nearest(points, distance)])


def _by_batch(table: dict | None, batch: int, default: float, log_values: bool) -> float:
    """A calibrated per-batch figure at ``batch``, interpolated in log batch between the
    batch sizes calibrated (in log value too with ``log_values``)."""
    points = sorted((int(b), v) for b, v in (table or {}).items())
    if not points:
        return default
    if batch <= points[0][0]:
        return points[0][1]
    scale, unscale = (math.log, math.exp) if log_values else (float, float)
    for (b0, v0), (b1, v1) in zip(points, points[1:]):
        if batch <= b1:
            t = math.log(batch / b0) / math.log(b1 / b0)
            return unscale(scale(v0) + t * (scale(v1) - scale(v0)))
    return points[-1][1]


def context_factor(calibration: dict, batch: int) -> float:
    """The calibrated whole-network factor for ``batch`` (1.0 before any is measured)."""
    return _by_batch(calibration.get("context_factor"), batch, 1.0, log_values=True)


def context_kernel_seconds(calibration: dict, batch: int) -> float:
    """The calibrated cost per kernel inside a network for ``batch`` (0 before any is measured)."""
    return _by_batch(calibration.get("context_kernel_s"), batch, 0.0, log_values=False)


def kernel_overhead(calibration: dict, batch: int, launch: float | None = None) -> float:
    """Seconds a kernel costs inside a network beyond its work: its launch (by default the
    calibrated per-kernel overhead of a CPU), which kernels inside a network pay
    ``context_factor`` times over, plus the per-kernel cost fitted on the synthetic
    networks (both measured at calibration)."""
    launch = calibration["overhead_s"]["kernel"] if launch is None else launch
    return launch * context_factor(calibration, batch) + context_kernel_seconds(calibration, batch)


def calibrated_time(kernel: KernelCost, klass: str, calibration: dict, batch: int = 1,
                    geometry: dict | None = None) -> tuple[float, float, float]:
    """Compute, memory and overhead seconds of ``kernel`` from this machine's calibration:
    a conv is matched to the calibrated convs of the nearest ``geometry``, any other
    kernel to the points of its class nearest in size."""
    points = calibration["points"].get(klass) or []
    if not points:
        raise UserError(f"the calibration profile has no {klass} points: run `deploylens hw calibrate` again")
    fixed = calibration["overhead_s"]["in_points"]
    compute = klass in COMPUTE_CLASSES
    distance = (_geometry_distance(geometry, calibration["vector_lanes"]) if geometry
                else size_distance(kernel.flops, kernel.bytes, compute))
    factor = context_factor(calibration, batch)
    # on a GPU, launching an eager op costs the CPU what the nearest points' ops did; a CPU
    # point's time holds its own launch, and a kernel costs the calibrated per-kernel overhead
    launch = (_log_mean([(w, p["launch_per_op_s"]) for w, p in _nearest(points, distance)]) * len(kernel.layers)
              if calibration["device"] == "cuda" else None)
    overhead = kernel_overhead(calibration, batch, launch)
    alone = nearest_rate(points, distance, compute, fixed)
    ceiling = calibration.get("peak_flops")
    # a kernel that runs near the ceiling alone runs so inside a network too: the factor fades
    near = min(alone / ceiling, 1.0) if compute and ceiling else 0.0
    rate = alone / factor ** (1.0 - near)
    if compute and ceiling:  # and never faster than the machine goes (compute_ceiling)
        rate = min(rate, ceiling)
    if compute:
        copies = calibration["points"]["copy"]
        bandwidth = nearest_rate(copies, size_distance(0, kernel.bytes, False), False, fixed) / factor
        return kernel.flops / rate, kernel.bytes / bandwidth, overhead
    return 0.0, kernel.bytes / rate, overhead


def roofline_time(kernel: KernelCost, klass: str, spec: HardwareSpec, dtype: str) -> tuple[float, float, float]:
    """Compute, memory and overhead seconds of ``kernel`` on ``spec``."""
    peak = spec.peak_flops(dtype)
    if peak is None:
        raise UserError(f"{spec.name} has no {dtype} peak in the catalog (has: {', '.join(spec.peak)})")
    if spec.bandwidth is None:
        raise UserError(f"{spec.name} has no sourced memory bandwidth in the catalog: no roofline possible")
    kind_efficiency = spec.efficiency.get(klass) or spec.efficiency.get(kernel.kind)
    efficiency = kind_efficiency.value if kind_efficiency else 1.0
    overhead = spec.overhead.value if spec.overhead else 0.0
    return kernel.flops / (peak * efficiency), kernel.bytes / (spec.bandwidth.value * efficiency), overhead


def eager_epilogue(layer: LayerCost) -> bool:
    """PyTorch eager: a conv's BatchNorm and activation, the calibrated conv-BN-act unit."""
    return layer.op == "batch_norm" or layer.kind == "activation"


# the activations ONNX Runtime fuses into a conv (FusedConv, or the blocked conv's own
# activation), read from its optimized graphs of the zoo: SiLU, GELU and Mish stay nodes
# of their own (SiLU as QuickGelu)
_ONNXRUNTIME_FUSED_ACTIVATIONS = frozenset({"relu", "clamp", "hardtanh", "leaky_relu", "sigmoid", "tanh",
                                            "hardsigmoid", "hardswish"})


def onnxruntime_epilogue(layer: LayerCost) -> bool:
    """ONNX Runtime: a conv's BatchNorm (folded), the activations it fuses, and a residual
    add (the blocked conv's sum input)."""
    return layer.op in ("batch_norm", "add") or layer.op in _ONNXRUNTIME_FUSED_ACTIVATIONS


def split_kernels(profile: Profile, epilogue: Callable[[LayerCost], bool]) -> list[KernelCost]:
    """The kernels a runtime that fuses less than the analyzer's fused view really runs:
    a conv / linear with the ops right after it that ``epilogue`` accepts is one unit;
    every other op of a fused kernel (a residual add in eager, an op of an element-wise
    chain, an activation the runtime does not fuse) is a kernel of its own."""
    layers = {layer.name: layer for layer in profile.layers}
    units: list[KernelCost] = []
    for kernel in profile.kernels:
        members = [layers[name] for name in kernel.layers]
        head = 1
        if members[0].kind in ("conv", "conv_transpose", "linear", "matmul"):
            while head < len(members) and epilogue(members[head]):
                head += 1
        groups = [members[:head]] + [[m] for m in members[head:]]
        for group in groups:
            flops = sum(m.flops or 0 for m in group)
            nbytes = group[0].bytes_read + group[-1].bytes_written if len(group) > 1 else \
                group[0].bytes_read + group[0].bytes_written
            units.append(KernelCost(group[0].name, group[0].kind, [m.name for m in group], flops,
                                    sum(m.macs or 0 for m in group), nbytes - group[-1].bytes_written,
                                    group[-1].bytes_written, None, all(m.flops is not None for m in group)))
    return units


# slicing PyTorch runs as a view and ONNX Runtime as a copy (Split, Slice, Gather nodes);
# a slice over a whole dimension dispatches as aten.alias in PyTorch and still exports as Slice
_RUNTIME_COPIES = frozenset({"aten.split", "aten.split_with_sizes", "aten.slice", "aten.select", "aten.narrow",
                             "aten.unbind", "aten.chunk", "aten.alias"})


def runtime_copies(profile: Profile) -> list[KernelCost]:
    """The copy kernels ONNX Runtime runs for slicing that costs nothing in PyTorch
    (measured: 32 Slices are 10% of GhostNet's time there): each reads and writes its
    outputs."""
    elem = DTYPE_BYTES.get(profile.dtype, 4)
    copies = []
    for layer in profile.layers:
        if layer.native in _RUNTIME_COPIES:
            nbytes = sum(math.prod(shape) for shape in layer.outputs) * elem
            copies.append(KernelCost(layer.name, "data_movement", [layer.name], 0, 0, nbytes, nbytes, 0.0, True))
    return copies


# the kind of the kernels ONNX Runtime runs on tensor shapes (see onnxruntime_added_kernels)
SHAPE_KIND = "shape_arithmetic"


def onnxruntime_added_kernels(model: Any, input_shapes: list[tuple[int, ...]], threads: int,
                              elem: int = 4) -> list[KernelCost]:
    """The kernels ONNX Runtime runs on this CPU that the model's analysis does not hold
    (see :func:`onnxruntime_run_and_added`)."""
    import tempfile

    import torch

    with tempfile.TemporaryDirectory(prefix="deploylens-reorders-") as workdir:
        return onnxruntime_run_and_added(model, [torch.randn(shape) for shape in input_shapes], threads, workdir,
                                         elem)[1]


def onnxruntime_run_and_added(model: Any, inputs: list, threads: int, workdir: str, elem: int = 4
                              ) -> tuple[Callable[[], object], list[KernelCost]]:
    """An ONNX Runtime session of ``model`` (an nn.Module, exported as `bench` does, or an
    ONNX model) on this CPU, as a callable running it once, and the kernels its optimized
    graph (saved in ``workdir``) runs beyond the model's own (see :func:`added_kernels_in`)."""
    import os

    import onnx
    import torch

    from deploylens.bench.backends import export_onnx_for_bench
    from deploylens.calibration.run import case_runner

    if isinstance(model, torch.nn.Module):
        export_onnx_for_bench(model, inputs, os.path.join(workdir, "model.onnx"))
        model = onnx.load(os.path.join(workdir, "model.onnx"))
    optimized = os.path.join(workdir, "optimized.onnx")
    run = case_runner("onnxruntime", None, inputs, threads, workdir, model.SerializeToString(), optimized=optimized)
    return run, added_kernels_in(model, optimized, [tuple(x.shape) for x in inputs], elem)


def added_kernels_in(model: Any, optimized: str, input_shapes: list[tuple[int, ...]], elem: int = 4
                     ) -> list[KernelCost]:
    """The kernels that ONNX Runtime's optimized graph of the ONNX ``model`` (saved at
    ``optimized``) runs beyond the model's own:

    * layout copies: its optimizer runs convs in a channel-blocked layout (NCHWc) and puts
      a ReorderInput / ReorderOutput wherever such a tensor meets an op without a blocked
      kernel (a Slice, a Concat, an SE block's Mul); measured: on GhostNet, 108 of them are
      27% of the time. Each reads and writes its tensor.
    * shape arithmetic (kind ``SHAPE_KIND``): a dynamic-batch export computes a view's
      sizes in nodes of their own (:func:`deploylens.calibration.run.shape_arithmetic_nodes`),
      each a kernel that moves nothing (measured: ShuffleNetV2 x1.0 exported so, 455 nodes,
      ran 0.54 ms slower at batch 1 than exported with a fixed batch, 169 nodes)."""
    from deploylens.capture.onnx_capture import tensor_shapes
    from deploylens.calibration.run import nchwc_reorders, shape_arithmetic_nodes

    _, shapes = tensor_shapes(model, [(shape, "float") for shape in input_shapes], [])
    added = []
    for op_type, plain in nchwc_reorders(optimized):
        numel = math.prod(shapes[plain][0]) if plain in shapes else 0
        added.append(KernelCost(f"{op_type}:{plain}", "data_movement", [], 0, 0, numel * elem, numel * elem, 0.0,
                                bool(numel)))
    added += [KernelCost(f"{op_type}:shape{index}", SHAPE_KIND, [], 0, 0, 0, 0, 0.0, True)
              for index, op_type in enumerate(shape_arithmetic_nodes(optimized))]
    return added


class _Timeline:
    """When each kernel finishes. Serial (a CPU): launch, then run. Overlapped (a GPU):
    the CPU launches op after op; the GPU starts a kernel once it is launched and the one
    before it is done."""

    def __init__(self, start_ms: float, overlapped: bool):
        self.launched = self.finished = start_ms
        self.overlapped = overlapped

    def add(self, body_ms: float, overhead_ms: float) -> float:
        """Adds a kernel; returns how much later the last kernel finishes because of it."""
        before = self.finished
        self.launched += overhead_ms
        self.finished = (max(self.finished, self.launched) if self.overlapped
                         else self.finished + overhead_ms) + body_ms
        return self.finished - before


def predict_profile(profile: Profile, target: str, spec: HardwareSpec | None, calibration: dict | None,
                    backend: str, batch: int, runtime_kernels: list[KernelCost] = ()) -> Prediction:
    """Predict from an analysis ``profile`` on ``spec`` (roofline) or ``calibration``.

    PyTorch eager runs its ops one by one and ONNX Runtime fuses less than the analyzer's
    fused view (:func:`split_kernels`), ONNX Runtime with its slicing copies
    (:func:`runtime_copies`) and ``runtime_kernels``, the layout copies and shape
    arithmetic the runtime adds that the model does not have
    (:func:`onnxruntime_added_kernels`); the catalogued devices run the fused view's kernels.
    """
    dtype = _DTYPE_KEYS.get(profile.dtype, profile.dtype)
    anchors = {layer.name: layer for layer in profile.layers}
    kernels = []
    if backend == "torch" and calibration:
        run = split_kernels(profile, eager_epilogue)
    elif backend == "onnxruntime" and calibration:
        run = split_kernels(profile, onnxruntime_epilogue) + runtime_copies(profile) + list(runtime_kernels)
    else:
        run = profile.kernels
    views = sum(1 for layer in profile.layers if layer.op == "view")
    view_ms = views * calibration["overhead_s"].get("view", 0.0) * 1e3 if calibration and backend == "torch" else 0.0
    timeline = _Timeline(view_ms, overlapped=bool(calibration) and calibration["device"] == "cuda")
    for kernel in run:
        anchor = anchors.get(kernel.layers[0]) if kernel.layers else None
        # no anchor: a kernel the runtime adds, a layout copy or shape arithmetic
        klass = kernel_class(anchor) if anchor else SHAPE_KIND if kernel.kind == SHAPE_KIND else "reorder"
        if calibration and not calibration["points"].get(klass):  # a class only some backends calibrate
            klass = _CLASS_FALLBACK.get(klass, klass)
        if klass == SHAPE_KIND:  # it moves nothing: a kernel's overhead alone (added with a calibration)
            compute, memory, overhead = 0.0, 0.0, kernel_overhead(calibration, batch)
        elif calibration:
            compute, memory, overhead = calibrated_time(kernel, klass, calibration, batch,
                                                        conv_geometry_of(anchor) if anchor else None)
        else:
            compute, memory, overhead = roofline_time(kernel, klass, spec, dtype)
        body = max(compute, memory)
        spent = timeline.add(body * 1e3, overhead * 1e3)
        bound = "overhead" if spent - body * 1e3 > body * 1e3 else "compute" if compute >= memory else "memory"
        kernels.append(KernelTime(kernel.name, kernel.kind, klass, kernel.flops, kernel.bytes, compute * 1e3,
                                  memory * 1e3, overhead * 1e3, spent, bound, kernel.complete))
    call_ms = calibration["overhead_s"].get("call", 0.0) * 1e3 if calibration else 0.0
    total_ms = timeline.finished + call_ms
    by_kind: dict[str, float] = {}
    for k in kernels:
        by_kind[k.kind] = by_kind.get(k.kind, 0.0) + k.time_ms
    complete = profile.totals.complete
    notes = list(profile.notes)
    if not complete:
        notes.append(f"incomplete: no cost formula for {', '.join(profile.totals.unknown_ops)}; their kernels are "
                     "counted by bytes only, so the real latency is higher")
    host = (calibration or {}).get("machine", {}).get("node")
    if host and host != platform.node():
        # measured on two H100 machines lent in turn: launch-bound models ran 0.65-2.31x (median 1.44x) apart
        notes.append(f"calibrated on host {host}, predicted on {platform.node()}: per-op costs differ between "
                     "hosts, even of the same CPU or GPU model; calibrate here for this host's figures")
    quiet_share = ((calibration or {}).get("probe") or {}).get("quiet_share")
    if quiet_share is not None and quiet_share < BUSY_QUIET_SHARE:
        # measured here: two calibrations minutes apart timed a case within 10% for only 26-33%
        # of the cases, and ONNX Runtime's whole-network factor came out at 0.42-0.69 in nine
        # profiles of one afternoon
        notes.append(f"the calibration ran while the host was busy (only {quiet_share:.1%} of its cases timed "
                     "quiet): its times rest on the interference probe's adjustment; `deploylens hw calibrate "
                     "--combine` in a quieter spell steadies them")
    if spec is not None and calibration is None and (spec.overhead is None or not spec.efficiency):
        notes.append("catalog roofline with peak efficiency and no launch overhead: an optimistic lower bound")
    bounds = {b: sum(1 for k in kernels if k.bound == b) for b in ("compute", "memory", "overhead")}
    return Prediction(
        model=profile.model, target=target, backend=backend, batch=batch, dtype=dtype,
        totals={"latency_ms": total_ms, "complete": complete, "call_overhead_ms": call_ms,
                "flops": profile.totals.flops, "bytes": profile.totals.bytes_fused, "kernels": len(kernels),
                "bound_counts": bounds,
                "throughput": batch / total_ms * 1e3 if total_ms else None},
        kernels=kernels, share_by_kind={k: v / total_ms for k, v in by_kind.items()} if total_ms else {},
        notes=notes)


def resolve_target(target: str | HardwareSpec, backend: str, threads: int | None, calibrate_if_missing: bool = True,
                   progress: Any = None, device: str = "cpu", dtype: str = "fp32"
                   ) -> tuple[HardwareSpec | None, dict | None]:
    """A device spec (roofline): a ``HardwareSpec`` or a catalog name; or ``this`` on
    ``device`` (calibration profile, measured and saved if absent)."""
    from deploylens.hardware.spec import load_catalog

    if isinstance(target, HardwareSpec):
        return target, None
    if target != "this":
        catalog = load_catalog()
        if target not in catalog:
            raise UserError(f"unknown target {target!r}; one of: this, {', '.join(sorted(catalog))}")
        return catalog[target], None
    import torch

    from deploylens.calibration import run as calibration

    threads = threads or torch.get_num_threads()
    calibration.identity(device, backend, threads, dtype)  # a bad combination fails before any file is read
    path = calibration.profile_path(backend, threads, device, dtype)
    if path.exists():
        return None, calibration.load(path)
    if not calibrate_if_missing:
        raise UserError(f"no calibration for backend {backend} with {threads} threads on {device} ({dtype}): run "
                        f"`deploylens hw calibrate --backend {backend} --threads {threads} --device {device} "
                        f"--dtype {dtype}`")
    profile = calibration.calibrate(backend, threads, device=device, dtype=dtype,
                                    progress=progress or (lambda *a: None),
                                    probe_level=calibration.known_probe_level(threads))
    calibration.save(profile, path)
    return None, profile


def predict(model: Any, target: str | HardwareSpec = "this", backend: str = "torch", batch: int = 1,
            dtype: str | None = None,
            input_shape: Any = None, threads: int | None = None, progress: Any = None,
            calibration: dict | None = None, device: str = "cpu") -> Prediction:
    """Predicted latency of ``model`` (any form ``analyze`` takes) on ``target``
    (``this``: this machine's CPU or, with ``device="cuda"``, its GPU).

    ``calibration``: a profile to use instead of the stored one for ``this``.
    """
    from deploylens.analysis.api import analyze
    from deploylens.capture.loader import parse_input_shapes

    if batch <= 0:
        raise UserError("--batch must be a positive integer")
    if backend not in ("torch", "onnxruntime", "openvino", "tensorrt"):
        raise UserError(f"unknown backend {backend!r}: torch, onnxruntime, openvino or tensorrt")
    spec = None
    if calibration is None:
        spec, calibration = resolve_target(target, backend if target == "this" else "torch", threads,
                                           progress=progress, device=device,
                                           dtype=_DTYPE_KEYS.get(dtype or "float32", dtype))
    if target == "this" and backend not in ("torch", "onnxruntime"):
        raise UserError("calibration exists for the torch and onnxruntime backends only")
    specs = parse_input_shapes(input_shape)
    if specs is None:
        # the model's own default shapes (zoo resolution, 1x3x224x224, or the ONNX file's)
        specs = [(tuple(shape), "float") for shape in analyze(model, None, dtype).input_shapes]
    shapes = [((batch, *shape[1:]), kind) for shape, kind in specs]
    profile = analyze(model, shapes, dtype)
    added = []
    if backend == "onnxruntime" and calibration:
        from deploylens.capture.loader import resolve_model

        added = onnxruntime_added_kernels(resolve_model(model)[0], [shape for shape, _ in shapes],
                                          calibration["threads"], DTYPE_BYTES.get(profile.dtype, 4))
    name = target.name if isinstance(target, HardwareSpec) else target
    return predict_profile(profile, name, spec, calibration, backend, batch, added)

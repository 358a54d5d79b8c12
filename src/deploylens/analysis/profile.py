"""Turn a captured :class:`~deploylens.capture.ir.Graph` into a :class:`Profile`: per-layer and
per-kernel costs, totals and roll-ups."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from deploylens.cost.formulas import Formula, formulas, traffic, work
from deploylens.cost.records import KernelCost, LayerCost, intensity
from deploylens.kernels.fusion import alias_roots, consumers_by_kernel, group_kernels, kernel_bytes
from deploylens.capture.ir import FREE_OPS, PARAM, Graph


@dataclass
class Totals:
    flops: int
    macs: int
    params: int
    buffers: int
    bytes_eager: int
    bytes_fused: int
    peak_activation_bytes: int
    unknown_ops: dict[str, int]
    complete: bool
    layers: int
    kernels: int


@dataclass
class Profile:
    model: str
    source: str
    input_shapes: list[list[int]]
    dtype: str
    totals: Totals
    layers: list[LayerCost]
    kernels: list[KernelCost]
    notes: list[str] = field(default_factory=list)

    def by_kind(self) -> dict[str, dict]:
        """Sums per op kind (conv, norm, activation, ...)."""
        return _rollup(self.layers, lambda layer: layer.kind)

    def by_module(self, depth: int = 1) -> dict[str, dict]:
        """Sums per module path prefix of ``depth`` components (``layer1`` at depth 1)."""
        return _rollup(self.layers, lambda layer: ".".join(layer.module.split(".")[:depth]) or "(root)")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["by_kind"] = self.by_kind()
        return out


def _rollup(layers: list[LayerCost], key) -> dict[str, dict]:
    groups: dict[str, dict] = {}
    for layer in layers:
        g = groups.setdefault(key(layer), {"layers": 0, "flops": 0, "macs": 0, "params": 0,
                                           "bytes_read": 0, "bytes_written": 0, "unknown": 0})
        g["layers"] += 1
        g["flops"] += layer.flops or 0
        g["macs"] += layer.macs or 0
        g["params"] += layer.params
        g["bytes_read"] += layer.bytes_read
        g["bytes_written"] += layer.bytes_written
        g["unknown"] += layer.flops is None
    return groups


def _peak_activation_bytes(graph: Graph, root: dict[int, int]) -> int:
    """Peak of live activation memory when ops run eagerly in order and each tensor is
    freed after its last reader (in-place ops reuse their input's memory)."""
    size: dict[int, int] = {t.id: t.nbytes for t in graph.inputs}
    last_use: dict[int, int] = {}
    end = len(graph.ops)
    for index, op in enumerate(graph.ops):
        for t in op.inputs:
            last_use[root.get(t.id, t.id)] = index
    for t in graph.outputs:
        last_use[root.get(t.id, t.id)] = end
    freed_after: dict[int, list[int]] = {}
    for tensor_id, last in last_use.items():
        freed_after.setdefault(last, []).append(tensor_id)
    live = sum(size.values())
    peak = live
    for index, op in enumerate(graph.ops):
        if op.op not in FREE_OPS and not op.native.endswith("_"):
            for out in op.outputs:
                size[out.id] = out.nbytes
                live += out.nbytes
        peak = max(peak, live)
        for tensor_id in freed_after.get(index, ()):
            live -= size.pop(tensor_id, 0)
    return peak


def build_profile(graph: Graph, custom_formulas: Mapping[str, Formula] | None = None) -> Profile:
    """Cost every op of ``graph`` and group the ops into fused kernels.

    ``custom_formulas``: op name (as in ``layers[].op``) -> formula, used for this
    profile only, over the registered formulas (see :func:`deploylens.analyze`).
    """
    table = formulas(custom_formulas)
    root = alias_roots(graph)
    kernels = group_kernels(graph, root)
    consumer_kernels = consumers_by_kernel(graph, kernels, root)
    kernel_of: dict[int, str] = {}
    for kernel in kernels:
        for i in kernel.ops:
            kernel_of[i] = graph.ops[kernel.ops[0]].name

    layers: list[LayerCost] = []
    unknown: Counter[str] = Counter()
    for index, op in enumerate(graph.ops):
        cost = work(op, table)
        if cost is None:
            unknown[op.op] += 1
        read, written = traffic(op)
        params = 0 if op.op in FREE_OPS else sum({t.id: t.stored_numel for t in op.inputs if t.role == PARAM}.values())
        layers.append(LayerCost(
            name=op.name, module=op.module, kind=op.kind, op=op.op, native=op.native,
            inputs=[list(t.shape) for t in op.inputs], outputs=[list(t.shape) for t in op.outputs],
            flops=cost.flops if cost else None, macs=cost.macs if cost else None, params=params,
            bytes_read=read, bytes_written=written, intensity=intensity(cost.flops if cost else None, read + written),
            kernel=kernel_of.get(index)))

    kernel_costs = []
    for kernel in kernels:
        members = [layers[i] for i in kernel.ops]
        moved = kernel_bytes(graph, kernel, root, consumer_kernels)
        flops = sum(m.flops or 0 for m in members)
        kernel_costs.append(KernelCost(
            name=members[0].name, kind=members[0].kind, layers=[m.name for m in members], flops=flops,
            macs=sum(m.macs or 0 for m in members), bytes_read=moved.read, bytes_written=moved.written,
            intensity=intensity(flops, moved.read + moved.written),
            complete=all(m.flops is not None for m in members)))

    totals = Totals(
        flops=sum(layer.flops or 0 for layer in layers),
        macs=sum(layer.macs or 0 for layer in layers),
        params=sum(t.numel for t in graph.params),
        buffers=sum(t.numel for t in graph.buffers),
        bytes_eager=sum(layer.bytes_read + layer.bytes_written for layer in layers),
        bytes_fused=sum(k.bytes for k in kernel_costs),
        peak_activation_bytes=_peak_activation_bytes(graph, root),
        unknown_ops=dict(unknown),
        complete=not unknown,
        layers=len(layers),
        kernels=len(kernel_costs),
    )
    notes = list(graph.notes)
    unused = sorted(set(custom_formulas or ()) - {op.op for op in graph.ops})
    if unused:
        notes.append(f"custom formulas for ops this model does not run: {', '.join(unused)} "
                     "(keys are the op names of layers[].op)")
    return Profile(model=graph.model, source=graph.source, input_shapes=[list(t.shape) for t in graph.inputs],
                   dtype=graph.dtype, totals=totals, layers=layers, kernels=kernel_costs, notes=notes)

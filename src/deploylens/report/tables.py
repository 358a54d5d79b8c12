"""Render profiles for people (rich tables) and for scripts (JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json

from rich.console import Console
from rich.table import Table

from deploylens.analysis.profile import Profile
from deploylens.capture.ir import FREE_OPS


def human(n: float | int | None, unit: str = "") -> str:
    """1234567 -> '1.23 M' (decimal prefixes, as FLOP and byte counts are quoted)."""
    if n is None:
        return "?"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {prefix}{unit}"
    return f"{n:g} {unit}".rstrip() if isinstance(n, float) else f"{n} {unit}".rstrip()


def rows(profile: Profile, view: str, by: str, depth: int, sort: str, top: int) -> list[dict]:
    """The rows a table or CSV shows: layers, kernels, or a roll-up."""
    if by == "kind":
        return [{"kind": k, **v} for k, v in profile.by_kind().items()]
    if by == "module":
        return [{"module": k, **v} for k, v in profile.by_module(depth).items()]
    if view == "fused":
        out = [{"name": k.name, "kind": k.kind, "layers": len(k.layers), "flops": k.flops, "macs": k.macs,
                "bytes_read": k.bytes_read, "bytes_written": k.bytes_written, "intensity": k.intensity}
               for k in profile.kernels]
    else:
        out = [{"name": layer.name, "kind": layer.kind, "op": layer.op,
                "output": "x".join(map(str, layer.outputs[0])) if layer.outputs else "",
                "flops": layer.flops, "macs": layer.macs, "params": layer.params, "bytes_read": layer.bytes_read,
                "bytes_written": layer.bytes_written, "intensity": layer.intensity, "kernel": layer.kernel}
               for layer in profile.layers if layer.op not in FREE_OPS]
    if sort != "order":
        def key(row: dict) -> float:
            return (row["bytes_read"] + row["bytes_written"]) if sort == "bytes" else (row.get(sort) or 0)

        out.sort(key=key, reverse=True)
    return out[:top] if top > 0 else out


def to_json(profile: Profile, depth: int = 1) -> str:
    data = profile.to_dict()
    data["by_module"] = profile.by_module(depth)
    return json.dumps(data, indent=2)


def to_csv(table_rows: list[dict]) -> str:
    buffer = io.StringIO()
    if table_rows:
        writer = csv.DictWriter(buffer, fieldnames=list(table_rows[0]))
        writer.writeheader()
        writer.writerows(table_rows)
    return buffer.getvalue()


_NUMERIC_UNITS = {"flops": "FLOP", "macs": "MAC", "params": "", "bytes_read": "B", "bytes_written": "B"}


def render_table(profile: Profile, table_rows: list[dict], console: Console) -> None:
    t = profile.totals
    console.print(f"[bold]{profile.model}[/]  ({profile.source})  inputs {profile.input_shapes}  {profile.dtype}")
    console.print(
        f"FLOPs {human(t.flops)}  MACs {human(t.macs)}  params {human(t.params)}  buffers {human(t.buffers)}  "
        f"bytes eager {human(t.bytes_eager, 'B')}  fused {human(t.bytes_fused, 'B')}  "
        f"peak activations {human(t.peak_activation_bytes, 'B')}  "
        f"layers {t.layers}  kernels {t.kernels}  complete {'yes' if t.complete else 'NO'}")
    table = Table(show_lines=False, header_style="bold")
    if not table_rows:
        console.print("(no rows)")
        return
    columns = list(table_rows[0])
    for column in columns:
        table.add_column(column, justify="right" if column in _NUMERIC_UNITS or column == "intensity"
                         or column in ("layers", "unknown") else "left")
    for row in table_rows:
        table.add_row(*[human(row[c]) if c in _NUMERIC_UNITS else
                        ("" if row[c] is None else f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]))
                        for c in columns])
    console.print(table)
    for note in profile.notes:
        console.print(f"note: {note}")

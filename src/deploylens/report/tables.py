"""Render profiles for people (rich tables) and for scripts (JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterable, Sequence

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from deploylens.analysis.profile import Profile
from deploylens.capture.ir import FREE_OPS

# text columns whose cells are names of layers, kernels, tensors: shortened by keeping their end
NAME_COLUMNS = frozenset({"name", "layer", "kernel", "tensor", "module"})
_TEXT_MIN, _NAME_MIN, _LAST_RESORT_TEXT, _LAST_RESORT_NAME = 10, 16, 6, 4


class Tail:
    """A name that keeps its end when its column is narrower ('…stages.3.conv.1'): the
    end of a layer path says which layer it is."""

    def __init__(self, text: str):
        self.text = text

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        width = cell_len(self.text)
        return Measurement(min(width, _NAME_MIN), width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text(shorten(self.text, options.max_width), no_wrap=True, overflow="crop", end="")


def shorten(name: str, width: int) -> str:
    """``name`` in at most ``width`` cells, keeping its end: 'layer4.1.conv2' -> '…1.conv2'."""
    if cell_len(name) <= width:
        return name
    if width <= 1:
        return name[-width:] if width > 0 else ""
    tail = name
    while cell_len(tail) > width - 1:
        tail = tail[1:]
    return "…" + tail


def _lines_width(text: str) -> int:
    return max((cell_len(line) for line in text.split("\n")), default=0)


def _longest_word(text: str) -> int:
    return max((cell_len(word) for word in text.split()), default=0)


class FitTable:
    """A table that fits the width it is printed in (a terminal of 80 columns, ``COLUMNS``
    when piped): number columns are never cut nor wrapped (their headers wrap between
    words), text columns wrap, name columns keep the end of each name. When that is not
    enough, a lighter frame, then the ``optional`` columns are dropped in the order given.
    Columns, rows and ``add_row`` as rich's ``Table``; every cell is text."""

    def __init__(self, columns: Sequence[str], left: Iterable[str] = (), names: Iterable[str] | None = None,
                 optional: Sequence[str] = (), header_style: str = "bold"):
        self.columns = list(columns)
        self.left = set(left)
        self.names = set(names) if names is not None else {c for c in self.left if c in NAME_COLUMNS}
        self.optional = [c for c in optional if c in self.columns]
        self.header_style = header_style
        self.rows: list[list[str]] = []

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def add_row(self, *cells: Any) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"a row of {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(["" if cell is None else str(cell) for cell in cells])

    # -- layout -------------------------------------------------------------------------

    def _natural(self, index: int) -> int:
        return max([_lines_width(self.columns[index])] + [_lines_width(row[index]) for row in self.rows])

    def _minimum(self, index: int) -> int:
        column = self.columns[index]
        if column not in self.left:  # a number: as wide as its widest value, its header may wrap
            return max([_longest_word(column)] + [_lines_width(row[index]) for row in self.rows])
        return min(self._natural(index), _NAME_MIN if column in self.names else _TEXT_MIN)

    @staticmethod
    def _overhead(count: int, compact: bool) -> int:
        # full: a frame and a separator between columns, one space either side of each cell;
        # compact: no frame, two spaces between columns
        return 2 * (count - 1) if compact else 3 * count + 1

    def layout(self, width: int) -> tuple[bool, list[int], dict[int, int]]:
        """(compact frame?, the columns shown, their widths) for ``width`` cells: every
        text whole (number headers may wrap) in a full frame, else in a compact one, else
        with an optional column less, ...; when nothing fits whole, the first of those
        (fewest columns dropped) whose columns fit at their minimum widths, narrowed to fit."""
        everything = list(range(len(self.columns)))
        whole = narrowed = None

        def unwrapped(i: int) -> int:  # text on one line; a number as narrow as its values
            return self._minimum(i) if self.columns[i] not in self.left else self._natural(i)

        for dropped in range(len(self.optional) + 1):
            shown = [i for i in everything if self.columns[i] not in self.optional[:dropped]]
            for compact in (False, True):
                if sum(unwrapped(i) for i in shown) + self._overhead(len(shown), compact) <= width:
                    whole = compact, shown
                    break
            if whole:
                break
            if narrowed is None and sum(self._minimum(i) for i in shown) + self._overhead(len(shown), True) <= width:
                narrowed = True, shown
        compact, shown = whole or narrowed or (True, [i for i in everything if self.columns[i] not in self.optional])
        widths = {i: self._natural(i) for i in shown}
        budget = width - self._overhead(len(shown), compact)
        # number headers first wrap between words, then text columns narrow, the widest first,
        # to their minimum; in the last resort other text before names; numbers never narrow further
        numbers = [i for i in shown if self.columns[i] not in self.left]
        names = [i for i in shown if self.columns[i] in self.names]
        texts = [i for i in shown if self.columns[i] in self.left and i not in names]
        for narrowing, floor in ((numbers, self._minimum), (texts + names, self._minimum),
                                 (texts, lambda i: min(widths[i], _LAST_RESORT_TEXT)),
                                 (names, lambda i: min(widths[i], _LAST_RESORT_NAME))):
            while sum(widths.values()) > budget:  # the widest first, one cell at a time
                wider = [i for i in narrowing if widths[i] > floor(i)]
                if not wider:
                    break
                widths[max(wider, key=lambda i: widths[i])] -= 1
        return compact, shown, widths

    def build(self, width: int) -> Table:
        compact, shown, widths = self.layout(width)
        made = Table(header_style=self.header_style, box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD,
                     show_edge=not compact, pad_edge=not compact, collapse_padding=compact)
        for i in shown:
            column = self.columns[i]
            made.add_column(column, justify="left" if column in self.left else "right", width=widths[i],
                            overflow="fold")
        for row in self.rows:
            # cells are plain text: a '[...]' in a layer name is no markup
            made.add_row(*[Tail(row[i]) if self.columns[i] in self.names else Text(row[i]) for i in shown])
        return made

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.build(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        count = len(self.columns)
        return Measurement(1, sum(self._natural(i) for i in range(count)) + self._overhead(count, False))


def human(n: float | int | None, unit: str = "", significant: int | None = None) -> str:
    """1234567 -> '1.23 M' (decimal prefixes, as FLOP and byte counts are quoted); with
    ``significant`` digits instead of two decimals: 236030000 -> '236 M' at 3."""
    if n is None:
        return "?"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            scaled = n / factor
            if significant is None:
                return f"{scaled:.2f} {prefix}{unit}"
            # 3 significant digits: 9.41, 36.9, 803 (and 1000 from 999.96 stays 4 wide)
            decimals = max(0, significant - len(str(int(round(abs(scaled))))))
            return f"{scaled:.{decimals}f} {prefix}{unit}"
    return f"{n:g} {unit}".rstrip() if isinstance(n, float) else f"{n} {unit}".rstrip()


def wrap_items(items: Iterable[str], width: int, separator: str = "  ") -> list[str]:
    """``items`` joined by ``separator`` into lines of at most ``width`` cells, breaking
    only between items (never inside 'bytes eager 426.00 MB')."""
    lines: list[str] = []
    for item in items:
        if lines and cell_len(lines[-1]) + cell_len(separator) + cell_len(item) <= width:
            lines[-1] += separator + item
        else:
            lines.append(item)
    return lines


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


# below this width the table's numbers have 3 significant digits ('236 M', not '236.03 M')
_COMPACT_BELOW = 120


def render_table(profile: Profile, table_rows: list[dict], console: Console) -> None:
    t = profile.totals
    console.print(Text.assemble((profile.model, "bold"), f"  ({profile.source})  inputs {profile.input_shapes}  "
                                f"{profile.dtype}"))
    totals = [f"FLOPs {human(t.flops)}", f"MACs {human(t.macs)}", f"params {human(t.params)}",
              f"buffers {human(t.buffers)}", f"bytes eager {human(t.bytes_eager, 'B')}",
              f"fused {human(t.bytes_fused, 'B')}", f"peak activations {human(t.peak_activation_bytes, 'B')}",
              f"layers {t.layers}", f"kernels {t.kernels}", f"complete {'yes' if t.complete else 'NO'}"]
    for line in wrap_items(totals, console.width):
        console.print(line, markup=False, highlight=False)
    if not table_rows:
        console.print("(no rows)")
        return
    columns = list(table_rows[0])
    numeric = {column for column in columns if column in _NUMERIC_UNITS or column in ("intensity", "layers", "unknown")}
    headers = [_HEADERS.get(column, column.replace("_", " ")) for column in columns]
    significant = 3 if console.width < _COMPACT_BELOW else None
    # on a narrow terminal the op (the kind says it), the fused kernel and the output shape go first
    table = FitTable(headers, left=[h for c, h in zip(columns, headers) if c not in numeric],
                     optional=("op", "kernel", "output"))
    for row in table_rows:
        table.add_row(*[human(row[c], significant=significant) if c in _NUMERIC_UNITS else
                        ("" if row[c] is None else f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]))
                        for c in columns])
    console.print(table)
    for note in profile.notes:
        console.print(f"note: {note}", markup=False, highlight=False)


# the table's headers where the CSV key is not the plain word: intensity is FLOP per byte
_HEADERS = {"intensity": "FLOP/B"}

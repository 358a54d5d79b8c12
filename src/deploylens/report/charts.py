"""Charts as inline SVG, written by hand: a roofline, sorted bars, a scatter with its
Pareto front, and intervals (a ratio or a latency with its confidence interval). Each
function takes plain marks (position, size, colour group, tooltip text) and returns an
``<svg>`` string; every text in it is escaped, and each mark carries its tooltip in
``data-tip`` (shown by the page's script as text, never as HTML)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

from deploylens.report.html import escape

# colour per kernel group (a conv's class, else the kernel's kind); others grey
COLOURS = {"conv_dense": "#1f6fb4", "conv_3x3": "#1f6fb4", "conv_kxk": "#5b8fd6", "conv_pointwise": "#2e9b48",
           "conv_depthwise": "#d13b36", "conv_grouped": "#8a5cc2", "conv_transpose": "#4bb3c8", "linear": "#8c564b",
           "matmul": "#8c564b", "attention": "#b0763d", "pool": "#d468b5", "reduce": "#17a2b8",
           "elementwise": "#f08a24", "activation": "#e6b422", "norm": "#a9a52c", "softmax": "#c25b87",
           "resize": "#5f7d95"}
OTHER_COLOUR = "#8a8f98"
ACCENT = "#1f5fbf"
LEFT = 84  # the plot area's left edge: room for tick labels and the rotated axis title


def colour(group: str) -> str:
    return COLOURS.get(group, OTHER_COLOUR)


@dataclass
class Mark:
    """A point: ``x``, ``y`` in data units, ``size`` (any unit: radii scale with its square
    root), ``group`` (its colour), ``label`` (drawn beside it, optional) and ``tip``."""

    x: float
    y: float
    size: float = 1.0
    group: str = ""
    tip: str = ""
    label: str = ""


@dataclass
class Bar:
    label: str
    value: float
    group: str = ""
    tip: str = ""


@dataclass
class Interval:
    """A value with its interval (``low``..``high``, either None) and further named
    ``markers`` (a paper's ratio, p90, p99) on one row."""

    label: str
    value: float | None
    low: float | None = None
    high: float | None = None
    markers: list[tuple[str, float]] = field(default_factory=list)
    tip: str = ""


class Scale:
    """Data units to pixels along one axis, logarithmic or linear."""

    def __init__(self, low: float, high: float, start: float, end: float, log: bool):
        self.low, self.high, self.start, self.end, self.log = low, high, start, end, log
        self._f = math.log10 if log else (lambda v: v)

    def __call__(self, value: float) -> float:
        span = self._f(self.high) - self._f(self.low)
        clamped = min(max(value, self.low), self.high)
        return self.start + (self._f(clamped) - self._f(self.low)) / span * (self.end - self.start)

    def ticks(self) -> list[float]:
        """Decades on a log axis (1-2-5 steps where it spans few decades), else 1-2-5 steps."""
        if self.log:
            lowest, highest = math.floor(math.log10(self.low)), math.ceil(math.log10(self.high))
            decades_only = [10.0 ** k for k in range(lowest, highest + 1)]
            inside = [t for t in decades_only if self.low <= t <= self.high]
            if len(inside) >= 4:
                return inside
            steps = [m * 10.0 ** k for k in range(lowest, highest + 1) for m in (1, 2, 5)]
            inside = [t for t in steps if self.low <= t <= self.high]
            if len(inside) >= 3:
                return inside
        step = _nice_step((self.high - self.low) / 5)
        first = math.ceil(self.low / step) * step
        return [first + i * step for i in range(int((self.high - first) / step + 1e-9) + 1)]


def _nice_step(raw: float) -> float:
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def decades(low: float, high: float) -> tuple[float, float]:
    """The whole decades around ``low``..``high`` (at least one decade apart)."""
    bottom = 10.0 ** math.floor(math.log10(low))
    top = 10.0 ** math.ceil(math.log10(high))
    return bottom, max(top, bottom * 10)


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _tail(label: str, width: int) -> str:
    """``label`` in ``width`` characters, keeping its end (the end of a layer path says which layer)."""
    return label if len(label) <= width else "…" + label[-(width - 1):]


def _text(x: float, y: float, text: str, anchor: str = "start", css: str = "", extra: str = "") -> str:
    klass = f' class="{css}"' if css else ""
    return f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}"{klass}{extra}>{escape(text)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, width: float = 1, dash: str = "",
          css: str = "") -> str:
    dashed = f' stroke-dasharray="{dash}"' if dash else ""
    klass = f' class="{css}"' if css else ""
    return (f'<line x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}" stroke="{stroke}" '
            f'stroke-width="{width}"{dashed}{klass}/>')


def _svg(width: int, height: int, label: str, parts: list[str], css: str) -> str:
    return (f'<svg class="{css}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">' + "".join(parts) + "</svg>")


def _axes(x: Scale, y: Scale, x_title: str, y_title: str, x_format: Callable[[float], str],
          y_format: Callable[[float], str]) -> list[str]:
    """Grid, frame, tick labels and titles of a plot area."""
    parts = []
    for tick in x.ticks():
        parts.append(_line(x(tick), y.start, x(tick), y.end, "", css="grid"))
        parts.append(_text(x(tick), y.start + 15, x_format(tick), "middle"))
    for tick in y.ticks():
        parts.append(_line(x.start, y(tick), x.end, y(tick), "", css="grid"))
        parts.append(_text(x.start - 6, y(tick) + 4, y_format(tick), "end"))
    parts.append(f'<rect x="{_n(x.start)}" y="{_n(y.end)}" width="{_n(x.end - x.start)}" '
                 f'height="{_n(y.start - y.end)}" class="frame"/>')
    parts.append(_text((x.start + x.end) / 2, y.start + 34, x_title, "middle", "axis-title"))
    middle = (y.start + y.end) / 2
    parts.append(_text(14, middle, y_title, "middle", "axis-title", f' transform="rotate(-90 14 {_n(middle)})"'))
    return parts


def _radius(size: float, largest: float) -> float:
    return 3.0 + 11.0 * math.sqrt(size / largest) if largest > 0 else 4.0


def _circle(cx: float, cy: float, r: float, fill: str, tip: str, css: str, group: str = "") -> str:
    kind = f' data-kind="{escape(group)}"' if group else ""
    return (f'<circle cx="{_n(cx)}" cy="{_n(cy)}" r="{_n(r)}" fill="{fill}" fill-opacity="0.72" stroke="#fff" '
            f'stroke-width="0.8" class="{css}"{kind} tabindex="0" data-tip="{escape(tip)}"/>')


def roofline(marks: Sequence[Mark], peaks: dict[str, float], bandwidth: float, precision: str,
             format_flops: Callable[[float], str], format_intensity: Callable[[float], str]) -> str:
    """The roofline of a device with ``peaks`` (FLOP/s per precision) and ``bandwidth``
    (bytes/s), ``precision``'s ceiling and ridge point drawn strongest; a mark per kernel
    at (FLOP/byte, achieved FLOP/s). A mark outside the axes (no FLOPs, no bytes) sits on
    the axis it cannot reach."""
    width, height = 900, 440
    ridge = peaks[precision] / bandwidth
    xs = [m.x for m in marks if m.x > 0] + [ridge / 10, ridge * 10]
    ys = [m.y for m in marks if m.y > 0] + [max(peaks.values()) * 1.5]
    x = Scale(*decades(min(xs), max(xs)), LEFT, width - 20, log=True)
    y = Scale(*decades(min(ys + [bandwidth * x.low]), max(ys)), height - 50, 14, log=True)
    parts = _axes(x, y, "arithmetic intensity (FLOP/byte)", "attained FLOP/s (predicted)", format_intensity,
                  format_flops)
    top = max(peaks.values())
    start = max(x.low, y.low / bandwidth)
    parts.append(_line(x(start), y(bandwidth * start), x(top / bandwidth), y(top), ACCENT, 2, css="roof"))
    for name, peak in sorted(peaks.items(), key=lambda item: item[1]):
        strong = name == precision
        parts.append(_line(x(peak / bandwidth), y(peak), x.end, y(peak), ACCENT if strong else "#7f93b5",
                           2 if strong else 1, "" if strong else "5 4", css="roof"))
        parts.append(_text(x.end - 4, y(peak) - 4, f"{name} peak {format_flops(peak)}FLOP/s", "end",
                           extra=' font-weight="600"' if strong else ""))
    parts.append(_line(x(ridge), y.start, x(ridge), y(peaks[precision]), ACCENT, 1, "3 3", css="ridge"))
    parts.append(_text(x(ridge) + 4, y.start - 6, f"ridge {format_intensity(ridge)} FLOP/B ({precision})"))
    # the memory roof's label runs above it, half way up (kernels crowd its ends), at its angle on the page
    along = start * (top / bandwidth / start) ** 0.5
    label_x, label_y = x(along), y(bandwidth * along) - 6
    angle = math.degrees(math.atan2(y(bandwidth * start * 10) - y(bandwidth * start), x(start * 10) - x(start)))
    parts.append(_text(label_x, label_y, f"memory {format_flops(bandwidth)}B/s", "start",
                       extra=f' transform="rotate({angle:.1f} {_n(label_x)} {_n(label_y)})"'))
    largest = max((m.size for m in marks), default=0.0)
    for mark in sorted(marks, key=lambda m: -m.size):  # small marks on top of large ones
        cx = x(mark.x) if mark.x > 0 else x.start
        cy = y(mark.y) if mark.y > 0 else y.start
        parts.append(_circle(cx, cy, _radius(mark.size, largest), colour(mark.group), mark.tip, "mark", mark.group))
    return _svg(width, height, "roofline", parts, "roofline")


def legend(groups: Sequence[tuple[str, str]]) -> str:
    """A legend of (group, label) pairs, each with its colour."""
    items = "".join(f'<span><svg width="10" height="10" class="swatch"><circle cx="5" cy="5" r="5" '
                    f'fill="{colour(group)}"/></svg>{escape(label)}</span>' for group, label in groups)
    return f'<div class="legend">{items}</div>'


def bars(rows: Sequence[Bar], format_value: Callable[[float], str], title: str) -> str:
    """Horizontal bars in the order given (sort them first), labelled on the left with the
    end of each name (the full name in its tooltip)."""
    width, row, label_width = 560, 20, 190
    height = 24 + row * len(rows)
    largest = max((r.value for r in rows), default=0.0) or 1.0
    span = width - label_width - 80
    parts = [_text(label_width, 12, title, "start", "axis-title")]
    for index, r in enumerate(rows):
        top = 20 + index * row
        parts.append(_text(label_width - 6, top + 13, _tail(r.label, 28), "end"))
        length = max(r.value / largest * span, 1.0)
        parts.append(f'<rect x="{label_width}" y="{top + 3}" width="{_n(length)}" height="{row - 6}" '
                     f'fill="{colour(r.group) if r.group else ACCENT}" class="bar" tabindex="0" '
                     f'data-tip="{escape(r.tip or r.label)}"/>')
        parts.append(_text(label_width + length + 4, top + 13, format_value(r.value)))
    return _svg(width, height, title, parts, "bars")


def pareto_front(marks: Sequence[Mark]) -> list[Mark]:
    """The marks no other mark beats on both axes (lower x, higher y), by x."""
    front: list[Mark] = []
    for mark in sorted(marks, key=lambda m: (m.x, -m.y)):
        if not front or mark.y > front[-1].y:
            front.append(mark)
    return front


def scatter(marks: Sequence[Mark], x_title: str, y_title: str, format_x: Callable[[float], str],
            format_y: Callable[[float], str]) -> str:
    """``marks`` on a log x axis (latency) and a linear y axis (accuracy), labelled, with
    their Pareto front (lower x, higher y) as a staircase."""
    width, height = 900, 360
    x = Scale(*decades(min(m.x for m in marks), max(m.x for m in marks)), LEFT, width - 20, log=True)
    low, high = min(m.y for m in marks), max(m.y for m in marks)
    pad = max((high - low) * 0.15, 0.5)
    y = Scale(low - pad, high + pad, height - 50, 14, log=False)
    parts = _axes(x, y, x_title, y_title, format_x, format_y)
    front = pareto_front(marks)
    steps = []
    for index, mark in enumerate(front):
        if index:
            steps.append(f"{_n(x(mark.x))},{_n(y(front[index - 1].y))}")
        steps.append(f"{_n(x(mark.x))},{_n(y(mark.y))}")
    parts.append(f'<polyline points="{" ".join(steps)}" fill="none" stroke="{ACCENT}" stroke-width="1.5" '
                 f'stroke-dasharray="6 3" class="pareto"/>')
    for mark in marks:
        parts.append(_circle(x(mark.x), y(mark.y), 6, ACCENT, mark.tip, "mark"))
        parts.append(_text(x(mark.x) + 9, y(mark.y) - 7, mark.label))
    return _svg(width, height, "latency against accuracy", parts, "scatter")


def intervals(rows: Sequence[Interval], title: str, format_value: Callable[[float], str], log: bool = False,
              reference: float | None = None) -> str:
    """One row per entry: its value as a dot, its interval as a bar with whiskers, each
    marker as a labelled tick; ``reference`` (a ratio of 1) as a vertical line."""
    width, row, label_width = 900, 30, 230
    height = 60 + row * len(rows)
    values = [v for r in rows for v in (r.value, r.low, r.high, *(m for _, m in r.markers)) if v is not None]
    values += [reference] if reference is not None else []
    values = [v for v in values if v > 0] if log else values
    if log:
        low, high = min(values) / 1.25, max(values) * 1.25
    else:
        low, high = 0.0, max(values) * 1.1
    x = Scale(low, high if high > low else low + 1, label_width, width - 30, log=log)
    bottom = height - 30
    parts = [_text(label_width, 12, title, "start", "axis-title")]
    for tick in x.ticks():
        parts.append(_line(x(tick), 20, x(tick), bottom, "", css="grid"))
        parts.append(_text(x(tick), bottom + 15, format_value(tick), "middle"))
    if reference is not None:
        parts.append(_line(x(reference), 20, x(reference), bottom, "#444", 1, "4 3", css="reference"))
    for index, r in enumerate(rows):
        middle = 20 + index * row + row / 2
        parts.append(_text(label_width - 8, middle + 4, _tail(r.label, 34), "end"))
        if r.low is not None and r.high is not None:
            parts.append(_line(x(r.low), middle, x(r.high), middle, ACCENT, 3, css="interval"))
            for end in (r.low, r.high):
                parts.append(_line(x(end), middle - 6, x(end), middle + 6, ACCENT, 1.5))
        labelled = -math.inf  # where the row's last marker label sits: close ones keep only their tick
        for name, value in sorted(r.markers, key=lambda marker: marker[1]):
            parts.append(_line(x(value), middle - 9, x(value), middle + 9, "#c0392b", 2, css="marker"))
            if x(value) - labelled >= 28:
                parts.append(_text(x(value), middle - 11, name, "middle"))
                labelled = x(value)
        if r.value is not None:
            parts.append(_circle(x(r.value), middle, 5, ACCENT, r.tip, "mark"))
    return _svg(width, height, title, parts, "intervals")

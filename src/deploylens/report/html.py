"""The skeleton of every deploylens HTML page: one self-contained file (style, script and
data inline, system fonts, no request leaves it), its data embedded as JSON for other
tools, and every name a model supplies escaped. A Content-Security-Policy allows only the
page's own script and style (by hash), so even a name that slipped past escaping could
neither run nor load anything."""

from __future__ import annotations

import base64
import hashlib
import html
import json
from typing import Iterable, Sequence

from deploylens.report.tables import human

DATA_ID = "deploylens-data"

_STYLE = """
:root { --ink: #1d2430; --muted: #5b6472; --line: #d9dde3; --panel: #f6f7f9; --accent: #1f5fbf; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1220px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 4px 0 2px; }
h2 { font-size: 18px; margin: 28px 0 8px; padding-top: 12px; border-top: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
p, li { max-width: 110ch; }
.muted { color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 8px; margin: 10px 0; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 10px; }
.card .label { color: var(--muted); font-size: 12px; }
.card .value { font-size: 18px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .detail { color: var(--muted); font-size: 12px; overflow-wrap: anywhere; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
@media (max-width: 900px) { .pair { grid-template-columns: 1fr; } }
figure { margin: 8px 0; }
figcaption { color: var(--muted); font-size: 12px; }
svg { display: block; max-width: 100%; height: auto; font-family: inherit; }
svg text { fill: var(--ink); font-size: 11px; }
svg .axis-title { font-size: 12px; fill: var(--muted); }
svg .grid { stroke: #eceef1; }
svg .frame { stroke: #9aa2ad; fill: none; }
svg [data-tip] { cursor: crosshair; }
svg [data-tip]:hover { stroke: #000; stroke-width: 2; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; margin: 4px 0; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 4px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.name { word-break: break-all; }
details > summary { cursor: pointer; color: var(--accent); }
nav a { margin-right: 12px; color: var(--accent); }
#tip { position: fixed; z-index: 10; pointer-events: none; max-width: 460px; white-space: pre-line;
       background: #1d2430; color: #fff; font-size: 12px; padding: 6px 8px; border-radius: 4px; }
"""

# the one script: a tooltip showing the hovered (or focused) mark's data-tip as text
_SCRIPT = """
(function () {
  var tip = document.getElementById("tip");
  function place(mark, x, y) {
    tip.textContent = mark.getAttribute("data-tip");
    tip.hidden = false;
    var left = x + 14, top = y + 14;
    if (left + tip.offsetWidth > window.innerWidth - 8) { left = x - tip.offsetWidth - 14; }
    if (top + tip.offsetHeight > window.innerHeight - 8) { top = y - tip.offsetHeight - 14; }
    tip.style.left = Math.max(4, left) + "px";
    tip.style.top = Math.max(4, top) + "px";
  }
  function follow(event) {
    var mark = event.target.closest ? event.target.closest("[data-tip]") : null;
    if (mark) { place(mark, event.clientX, event.clientY); } else { tip.hidden = true; }
  }
  document.addEventListener("mouseover", follow);
  document.addEventListener("mousemove", follow);
  document.addEventListener("focusin", function (event) {
    var mark = event.target.closest ? event.target.closest("[data-tip]") : null;
    if (!mark) { tip.hidden = true; return; }
    var box = mark.getBoundingClientRect();
    place(mark, box.right, box.bottom);
  });
  document.addEventListener("focusout", function () { tip.hidden = true; });
})();
"""


def escape(text: object) -> str:
    """``text`` as HTML text or attribute value: a layer named ``<img onerror=...>`` stays text."""
    return html.escape(str(text), quote=True)


def script_json(data: object) -> str:
    """``data`` as JSON that cannot end its ``<script>`` element: ``<``, ``>`` and ``&`` are
    written as JSON escapes, which ``JSON.parse`` reads back unchanged."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def document(title: str, body: str, data: object) -> str:
    """The page: ``body`` (HTML whose every supplied name went through :func:`escape`)
    under ``title``, with ``data`` embedded as ``<script type="application/json"
    id="deploylens-data">``."""
    policy = (f"default-src 'none'; script-src {_sha256(_SCRIPT)}; style-src {_sha256(_STYLE)}; "
              "img-src 'none'; base-uri 'none'; form-action 'none'")
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{policy}\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
            f"<div id=\"tip\" role=\"tooltip\" hidden></div>\n"
            f"<script type=\"application/json\" id=\"{DATA_ID}\">{script_json(data)}</script>\n"
            f"<script>{_SCRIPT}</script>\n</body>\n</html>\n")


def cards(items: Iterable[tuple[str, str, str]]) -> str:
    """Summary figures as cards: (label, value, detail) each, all plain text."""
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="label">{escape(label)}</div><div class="value">{escape(value)}</div>'
        + (f'<div class="detail">{escape(detail)}</div>' if detail else "") + "</div>"
        for label, value, detail in items) + "</div>"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = (),
          names: Sequence[int] = ()) -> str:
    """A table of plain-text cells; ``numeric`` columns right-aligned, ``names`` columns
    (long layer paths) broken anywhere."""
    def cell(tag: str, index: int, value: object) -> str:
        kind = "num" if index in numeric else "name" if index in names else ""
        attribute = f' class="{kind}"' if kind else ""
        return f"<{tag}{attribute}>{escape(value)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bullet_list(items: Iterable[str]) -> str:
    listed = "".join(f"<li>{escape(item)}</li>" for item in items)
    return f"<ul>{listed}</ul>" if listed else ""


def figure(svg: str, caption: str = "") -> str:
    return f"<figure>{svg}" + (f"<figcaption>{escape(caption)}</figcaption>" if caption else "") + "</figure>"


def milliseconds(value: float | None) -> str:
    """A time in ms with 3 significant digits or more (0.344 ms, 12.3 ms, 1234 ms)."""
    if value is None:
        return "-"
    return f"{value:.3g} ms" if value < 100 else f"{value:.0f} ms"


def quantity(value: float | None, unit: str = "") -> str:
    return "-" if value is None else human(value, unit)

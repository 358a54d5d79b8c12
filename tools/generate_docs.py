"""Regenerate the parts of docs/ that are tables in the code, so they cannot drift.

    python tools/generate_docs.py           # rewrite docs/conventions.md in place
    python tools/generate_docs.py --check   # exit 1 (one line) when it is out of date

The per-element FLOPs table in docs/conventions.md is the region between
``<!-- generated:per-element-flops -->`` and ``<!-- end generated -->``; it is built
from ``deploylens.cost.formulas.PER_ELEMENT_FLOPS`` (FLOPs per output element) and the
IR's op table (``deploylens.capture.ops.kind_of``: the kind of each op).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Mapping

ROOT = Path(__file__).resolve().parents[1]
CONVENTIONS = ROOT / "docs" / "conventions.md"
BEGIN = "<!-- generated:per-element-flops -->"
END = "<!-- end generated -->"


def per_element_table(flops: Mapping[str, int], kind_of: Callable[[str], str]) -> str:
    """The markdown table: one row per op, in the order of ``flops``."""
    lines = ["| op | FLOPs / element | kind |", "|---|---|---|"]
    lines += [f"| `{op}` | {count} | {kind_of(op)} |" for op, count in flops.items()]
    return "\n".join(lines) + "\n"


def splice(text: str, table: str) -> str:
    """``text`` with the generated region replaced by ``table`` (a ValueError when the
    markers are missing or out of order)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers {BEGIN} ... {END} are missing or out of order")
    return text[: start + len(BEGIN)] + "\n" + table + text[end:]


def code_table() -> str:
    """The table as the code has it now."""
    from deploylens.capture.ops import kind_of
    from deploylens.cost.formulas import PER_ELEMENT_FLOPS

    return per_element_table(PER_ELEMENT_FLOPS, kind_of)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is out of date; write nothing")
    args = parser.parse_args(argv)
    text = CONVENTIONS.read_text()
    try:
        updated = splice(text, code_table())
    except ValueError as error:
        print(f"{CONVENTIONS.relative_to(ROOT)}: {error}", file=sys.stderr)
        return 1
    if args.check:
        if updated != text:
            print(f"{CONVENTIONS.relative_to(ROOT)} is out of date: run python tools/generate_docs.py",
                  file=sys.stderr)
            return 1
        return 0
    if updated != text:
        CONVENTIONS.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())

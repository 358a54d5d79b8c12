"""Regenerate the parts of docs/ that are tables in the code, so they cannot drift.

    python tools/generate_docs.py           # rewrite docs/conventions.md in place
    python tools/generate_docs.py --check   # exit 1 (one line) when it is out of date

docs/conventions.md has two generated regions, each between ``<!-- generated:NAME -->``
and ``<!-- end generated -->``:

* ``formulas``: one row per cost formula of the registry
  (``deploylens.cost.formulas.formulas()``; ops that share a formula's convention share a
  row): the ops, their kind from the IR's op table (``deploylens.capture.ops.kind_of``)
  and what the formula counts, the first line of its docstring
  (``deploylens.cost.formulas.conventions()``). A formula without a docstring is an error.
* ``per-element-flops``: ``deploylens.cost.formulas.PER_ELEMENT_FLOPS`` (FLOPs per output
  element) with each op's kind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Mapping

ROOT = Path(__file__).resolve().parents[1]
CONVENTIONS = ROOT / "docs" / "conventions.md"
BEGIN = "<!-- generated:per-element-flops -->"
FORMULAS_BEGIN = "<!-- generated:formulas -->"
END = "<!-- end generated -->"


def per_element_table(flops: Mapping[str, int], kind_of: Callable[[str], str]) -> str:
    """The markdown table: one row per op, in the order of ``flops``."""
    lines = ["| op | FLOPs / element | kind |", "|---|---|---|"]
    lines += [f"| `{op}` | {count} | {kind_of(op)} |" for op, count in flops.items()]
    return "\n".join(lines) + "\n"


def formula_table(conventions: Mapping[str, str | None], kind_of: Callable[[str], str]) -> str:
    """The markdown table of the formulas: ``conventions`` maps each op with a formula to
    the first line of its formula's docstring (None: it has none, a ValueError). One row
    per (convention, kind), in the order each first appears; its ops in registry order."""
    rows: dict[tuple[str, str], list[str]] = {}
    for op, convention in conventions.items():
        if not convention:
            raise ValueError(f"the formula of {op!r} has no docstring: its first line must say what it counts")
        rows.setdefault((convention, kind_of(op)), []).append(op)
    lines = ["| ops | kind | counts |", "|---|---|---|"]
    for (convention, kind), ops in rows.items():
        names = ", ".join(f"`{op}`" for op in ops)
        lines.append(f"| {names} | {kind} | {convention.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"


def splice(text: str, table: str, begin: str = BEGIN) -> str:
    """``text`` with the region that opens with ``begin`` replaced by ``table`` (a
    ValueError when the markers are missing or out of order)."""
    start = text.find(begin)
    end = text.find(END, start + len(begin)) if start >= 0 else -1
    if start < 0 or end < 0 or text.find(begin, start + len(begin)) >= 0:
        raise ValueError(f"the markers {begin} ... {END} are missing, out of order or repeated")
    return text[: start + len(begin)] + "\n" + table + text[end:]


def render(text: str, flops: Mapping[str, int], conventions: Mapping[str, str | None],
           kind_of: Callable[[str], str]) -> str:
    """``text`` with both generated regions rebuilt from these tables."""
    text = splice(text, formula_table(conventions, kind_of), FORMULAS_BEGIN)
    return splice(text, per_element_table(flops, kind_of), BEGIN)


def code_tables() -> tuple[Mapping[str, int], Mapping[str, str | None], Callable[[str], str]]:
    """The tables as the code has them now: per-element FLOPs, each formula's convention,
    the IR's op kinds."""
    from deploylens.capture.ops import kind_of
    from deploylens.cost.formulas import PER_ELEMENT_FLOPS, conventions

    return PER_ELEMENT_FLOPS, conventions(), kind_of


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is out of date; write nothing")
    args = parser.parse_args(argv)
    text = CONVENTIONS.read_text()
    try:
        updated = render(text, *code_tables())
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

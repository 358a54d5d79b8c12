"""docs/conventions.md's formula and per-element FLOPs tables are generated from the code
and stay so."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from deploylens.capture.ops import OP_KINDS, kind_of
from deploylens.cost.formulas import PER_ELEMENT_FLOPS, Work, conventions, formulas

ROOT = Path(__file__).resolve().parents[1]


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_docs", ROOT / "tools" / "generate_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generator = load_generator()


def in_tmp_docs(monkeypatch, tmp_path, text: str) -> Path:
    """Point the generator at a copy of docs/conventions.md holding ``text``."""
    monkeypatch.setattr(generator, "CONVENTIONS", tmp_path / "docs" / "conventions.md")
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    generator.CONVENTIONS.parent.mkdir()
    generator.CONVENTIONS.write_text(text)
    return generator.CONVENTIONS


def test_conventions_tables_are_generated_from_the_code(capsys):
    assert generator.main(["--check"]) == 0, capsys.readouterr().err


def test_every_registered_formula_states_its_convention_and_has_a_row():
    table = conventions()
    assert set(table) == set(formulas()) and set(table) <= set(OP_KINDS)
    assert all(table.values()), [op for op, convention in table.items() if not convention]
    text = generator.CONVENTIONS.read_text()
    region = text[text.index(generator.FORMULAS_BEGIN):]
    region = region[: region.index(generator.END)]
    for op, convention in table.items():
        rows = [line for line in region.splitlines() if f"`{op}`" in line.split(" | ")[0]]
        assert len(rows) == 1 and rows[0].endswith(f"| {kind_of(op)} | {convention} |"), (op, rows)
    conv = next(line for line in region.splitlines() if line.startswith("| `conv` |"))
    assert "output elements x (C_in / groups) x kernel volume MACs" in conv


def test_a_changed_table_makes_the_check_fail(tmp_path, monkeypatch, capsys):
    text = generator.CONVENTIONS.read_text()
    stale = text.replace("| `relu` | 1 | activation |", "| `relu` | 2 | activation |")
    assert stale != text
    assert generator.render(stale, *generator.code_tables()) == text
    in_tmp_docs(monkeypatch, tmp_path, stale)
    assert generator.main(["--check"]) == 1
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and "out of date" in message
    assert generator.main([]) == 0 and generator.CONVENTIONS.read_text() == text


def test_a_changed_docstring_makes_the_check_fail(tmp_path, monkeypatch, capsys):
    text = generator.CONVENTIONS.read_text()
    flops, table, kinds = generator.code_tables()
    changed = {**table, "conv": "output elements x C_in x kernel volume MACs"}
    regenerated = generator.render(text, flops, changed, kinds)
    assert regenerated != text and "| `conv` | conv | output elements x C_in x kernel volume MACs |" in regenerated
    # the file as the changed code would generate it is stale against the real code
    in_tmp_docs(monkeypatch, tmp_path, regenerated)
    assert generator.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err


def test_a_formula_added_without_a_docstring_makes_the_check_fail(tmp_path, monkeypatch, capsys):
    def cumsum(op):
        return Work(flops=op.outputs[0].numel)

    undocumented = conventions({**formulas(), "cumsum": cumsum})
    assert undocumented["cumsum"] is None
    with pytest.raises(ValueError, match="'cumsum' has no docstring"):
        generator.formula_table(undocumented, kind_of)

    cumsum.__doc__ = "\n    input elements FLOPs (one add per element).\n\n    More detail.\n    "
    documented = conventions({**formulas(), "cumsum": cumsum})
    assert documented["cumsum"] == "input elements FLOPs (one add per element)."
    assert generator.formula_table(documented, kind_of).splitlines()[-1] == (
        "| `cumsum` | other | input elements FLOPs (one add per element). |")

    # through main: the code now has a formula without a docstring -> one line, exit 1
    monkeypatch.setattr(generator, "code_tables", lambda: (PER_ELEMENT_FLOPS, undocumented, kind_of))
    in_tmp_docs(monkeypatch, tmp_path, generator.CONVENTIONS.read_text())
    assert generator.main(["--check"]) == 1 and generator.main([]) == 1
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 2 and all("'cumsum' has no docstring" in line for line in message)


def test_formula_rows_group_ops_of_one_convention_and_kind_in_registry_order():
    table = generator.formula_table(
        {"max_pool": "window FLOPs", "relu": "per element", "avg_pool": "window FLOPs", "add": "per element"},
        {"max_pool": "pool", "avg_pool": "pool", "relu": "activation", "add": "elementwise"}.get)
    assert table.splitlines()[2:] == ["| `max_pool`, `avg_pool` | pool | window FLOPs |",
                                      "| `relu` | activation | per element |",
                                      "| `add` | elementwise | per element |"]


def test_table_rows_follow_the_mapping_and_the_markers_are_required():
    table = generator.per_element_table({"relu": 1, "add": 1}, {"relu": "activation", "add": "elementwise"}.get)
    assert table.splitlines()[2:] == ["| `relu` | 1 | activation |", "| `add` | 1 | elementwise |"]
    with pytest.raises(ValueError):
        generator.splice("no markers here", table)
    with pytest.raises(ValueError):  # the formulas region missing
        generator.render(f"{generator.BEGIN}\n{generator.END}\n", {"relu": 1}, {"relu": "x"}, kind_of)
    with pytest.raises(ValueError):  # an end marker before its begin marker
        generator.splice(f"{generator.END}\n{generator.BEGIN}\n", table)

"""docs/conventions.md's per-element FLOPs table is generated from the code and stays so."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_docs", ROOT / "tools" / "generate_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generator = load_generator()


def test_conventions_table_is_generated_from_the_code(capsys):
    assert generator.main(["--check"]) == 0, capsys.readouterr().err


def test_a_changed_table_makes_the_check_fail(tmp_path, monkeypatch, capsys):
    text = generator.CONVENTIONS.read_text()
    stale = text.replace("| `relu` | 1 | activation |", "| `relu` | 2 | activation |")
    assert stale != text
    assert generator.splice(stale, generator.code_table()) == text
    monkeypatch.setattr(generator, "CONVENTIONS", tmp_path / "docs" / "conventions.md")
    monkeypatch.setattr(generator, "ROOT", tmp_path)
    generator.CONVENTIONS.parent.mkdir()
    generator.CONVENTIONS.write_text(stale)
    assert generator.main(["--check"]) == 1
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and "out of date" in message
    assert generator.main([]) == 0 and generator.CONVENTIONS.read_text() == text


def test_table_rows_follow_the_mapping_and_the_markers_are_required():
    table = generator.per_element_table({"relu": 1, "add": 1}, {"relu": "activation", "add": "elementwise"}.get)
    assert table.splitlines()[2:] == ["| `relu` | 1 | activation |", "| `add` | 1 | elementwise |"]
    with pytest.raises(ValueError):
        generator.splice("no markers here", table)

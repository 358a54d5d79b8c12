"""benchmarks/record.py: a benchmark's run written as JSON with the keys
benchmarks/results/README.md documents, and nothing written when the run fails."""

from __future__ import annotations

import importlib
import json
import re
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture
def record(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import it as `from record import recorded`
    module = importlib.import_module("record")
    assert Path(module.__file__).resolve() == BENCHMARKS / "record.py"
    return module


def documented_keys() -> list[str]:
    """The keys in the table of benchmarks/results/README.md (the first table of the file)."""
    text = (BENCHMARKS / "results" / "README.md").read_text()
    return re.findall(r"^\| `(\w+)` \|", text, flags=re.MULTILINE)


def test_a_run_is_written_with_the_documented_keys_and_what_it_printed(record, tmp_path, capsys):
    folder = tmp_path / "results"
    with record.recorded("toy_benchmark", folder=folder) as run:
        print("first line")
        print("median 1.5 ms")
        run.results = {"median_ms": 1.5}

    assert capsys.readouterr().out == "first line\nmedian 1.5 ms\n"  # still printed as usual
    files = list(folder.iterdir())
    assert len(files) == 1
    name = files[0].name
    assert re.fullmatch(r"toy_benchmark-\d{8}T\d{6}Z\.json", name), name
    written = json.loads(files[0].read_text())
    assert list(written) == documented_keys()
    assert written["benchmark"] == "toy_benchmark"
    assert written["output"] == ["first line", "median 1.5 ms"]
    assert written["results"] == {"median_ms": 1.5}
    started = datetime.fromisoformat(written["date"])
    assert started.utcoffset().total_seconds() == 0
    assert name == f"toy_benchmark-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    assert written["command"].startswith("python ")
    assert written["host"]["logical_cpus"] >= 1 and written["host"]["cpu"]
    assert written["versions"]["python"] and "deploylens" in written["versions"]


def test_a_run_that_raises_writes_nothing(record, tmp_path, capsys):
    folder = tmp_path / "results"
    with pytest.raises(RuntimeError, match="measurement failed"):
        with record.recorded("toy_benchmark", folder=folder) as run:
            print("started")
            run.results = {"partial": 1}
            raise RuntimeError("measurement failed")
    assert not folder.exists() or not any(folder.iterdir())
    assert "recorded in" not in capsys.readouterr().err


def test_the_documented_keys_are_the_ones_the_readme_lists():
    assert documented_keys() == ["benchmark", "command", "date", "host", "versions", "output", "results"]

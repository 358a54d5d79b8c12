"""`deploylens study` from the command line: the list, a run's JSON (the issue's contract),
its record in the results store, and bad input in one line with nothing written."""

from __future__ import annotations

import json

import pytest

from cli_runner import run




def test_study_list_names_every_study_with_its_claim(monkeypatch, capsys):
    code, out, err = run(monkeypatch, capsys, "study", "--list", "--format", "json")
    rows = {row["study"]: row for row in json.loads(out)}
    assert code in (0, None) and {"g1", "g2", "g3", "g4", "mac"} <= set(rows)
    assert rows["g1"]["claim"].startswith("G1: equal channel widths") and "Table 1" in rows["g1"]["source"]


def test_a_study_run_prints_the_contract_and_is_stored(monkeypatch, capsys, tmp_path):
    store = tmp_path / "runs.sqlite"
    code, out, err = run(monkeypatch, capsys, "study", "mac", "--threads", "1", "--budget", "4", "--format", "json",
                         "--store", str(store))
    assert code in (0, None), err
    data = json.loads(out)
    assert {"study", "claim", "source", "settings", "environment", "arms", "comparisons", "verdict", "notes"} <= \
        set(data)
    assert [set(a) >= {"name", "flops", "bytes", "median_ms", "samples"} for a in data["arms"]] == [True] * 3
    assert set(data["comparisons"][0]) >= {"a", "b", "ratio", "ci_low", "ci_high", "paper_ratio", "verdict"}
    code, out, err = run(monkeypatch, capsys, "runs", "list", "--store", str(store), "--format", "json")
    (stored,) = json.loads(out)
    assert stored["model"] == "study mac" and stored["measurements"] == 3 and stored["status"] == data["verdict"]


@pytest.mark.parametrize("args,message", [(("study", "g9"), "unknown study 'g9'"),
                                          (("study",), "name a study"),
                                          (("study", "g1", "--budget", "-3"), "budget must be positive"),
                                          (("study", "g1", "--backend", "nope"), "unknown backend 'nope'")])
def test_bad_study_input_is_one_line_and_writes_nothing(monkeypatch, capsys, tmp_path, args, message):
    code, out, err = run(monkeypatch, capsys, *args, "--store", str(tmp_path / "runs.sqlite"))
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []

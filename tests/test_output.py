"""The one output writer and the one output comparison."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from deploylens import output
from deploylens.numerics import OutputError, example_inputs, max_relative_error, output_error


def test_write_atomically_replaces_the_file_whole(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    output.write_atomically(target, '{"new": 1}')
    assert target.read_text() == '{"new": 1}' and os.listdir(tmp_path) == ["report.json"]


def test_a_failing_write_leaves_no_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "report.json"
    with pytest.raises(TypeError):
        output.write_atomically(target, None)  # fails inside the write itself
    assert os.listdir(tmp_path) == []


def test_a_failing_rename_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text("old")

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(output.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        output.write_atomically(target, "new")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["report.json"]


def test_emit_writes_the_file_as_given_or_stdout_with_a_final_newline(tmp_path, capsys):
    output.emit('{"a": 1}', None)
    output.emit("two lines\n", None)
    assert capsys.readouterr().out == '{"a": 1}\ntwo lines\n'
    output.emit('{"a": 1}', str(tmp_path / "out.json"))
    assert (tmp_path / "out.json").read_text() == '{"a": 1}' and capsys.readouterr().out == ""


def test_output_error_by_hand():
    # output 1: |2.5 - 2| = 0.5 over max |ref| 2 -> 0.25; output 2: |-18 - -20| = 2 over 20 -> 0.1
    error = output_error([np.array([1.0, 2.5]), np.array([-18.0, 10.0])],
                         [np.array([1.0, 2.0]), np.array([-20.0, 10.0])])
    assert (error.max_abs, error.max_rel) == (2.0, 0.25)
    # tensors and a lone output as well as lists; identical outputs differ by nothing
    assert max_relative_error(torch.tensor([[3.0, -4.0]]), (np.array([[3.0, -5.0]]),)) == pytest.approx(0.2)
    assert output_error(torch.ones(2, 3), torch.ones(2, 3)) == OutputError(0.0, 0.0)


def test_output_error_never_passes_a_mismatch():
    inf = math.inf
    assert max_relative_error([np.zeros(3)], [np.zeros(4)]) == inf  # another shape
    assert max_relative_error([np.zeros(3)], [np.zeros(3), np.zeros(3)]) == inf  # another count
    assert max_relative_error([np.array([1.0, np.nan])], [np.array([1.0, 2.0])]) == inf  # NaN where a number is
    assert max_relative_error([np.array([np.nan, 2.0])], [np.array([np.nan, 2.0])]) == 0.0  # the same NaN
    # an all-zero reference: the difference itself over the floor, never a division by zero
    assert max_relative_error([np.array([1e-13, 0.0])], [np.zeros(2)]) == pytest.approx(0.1)


def test_example_inputs_are_seeded_normal_floats_and_zero_integers():
    first, ids = example_inputs([((2, 3), "float"), ((1, 4), "int64")])
    again, _ = example_inputs([((2, 3), "float"), ((1, 4), "int64")])
    assert torch.equal(first, again) and first.dtype == torch.float32
    assert torch.equal(first, torch.randn((2, 3), generator=torch.Generator().manual_seed(0)))
    assert ids.dtype == torch.int64 and torch.equal(ids, torch.zeros(1, 4, dtype=torch.int64))


def test_a_destination_is_checked_before_the_work_starts(tmp_path):
    from deploylens.errors import UserError
    from deploylens.output import check_destination

    check_destination(None)  # stdout
    check_destination(tmp_path / "new.json")
    assert list(tmp_path.iterdir()) == []  # the check leaves nothing behind
    (tmp_path / "old.json").write_text("kept")
    for path, message in ((tmp_path, "is a folder"), (tmp_path / "nodir" / "x.json", "no folder"),
                          (tmp_path / "old.json", "exists: use --force")):
        with pytest.raises(UserError, match=message):
            check_destination(path)
    check_destination(tmp_path / "old.json", force=True)
    assert (tmp_path / "old.json").read_text() == "kept"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(UserError, match="cannot write"):
            check_destination(locked / "x.json")


def test_a_written_file_gets_the_umask_permissions_not_the_temporary_files(tmp_path):
    old_mask = os.umask(0o022)
    try:
        output.write_atomically(tmp_path / "new.json", "{}")
        assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o644  # mkstemp's 0o600 before
        kept = tmp_path / "kept.json"
        kept.write_text("old")
        kept.chmod(0o640)
        output.write_atomically(kept, "new")
        assert kept.stat().st_mode & 0o777 == 0o640 and kept.read_text() == "new"
    finally:
        os.umask(old_mask)


def test_a_fifo_is_written_in_place_never_replaced(tmp_path):
    import threading

    from deploylens.output import check_destination

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    check_destination(fifo)  # not "exists: use --force": writing to it overwrites nothing
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo).read()))
    reader.start()
    output.write_atomically(fifo, "through the pipe")
    reader.join(5)
    assert received == ["through the pipe"] and fifo.is_fifo() and os.listdir(tmp_path) == ["pipe"]


def test_move_into_place_moves_every_file_or_none(tmp_path, monkeypatch):
    staging, target = tmp_path / "staging", tmp_path / "target"
    staging.mkdir()
    target.mkdir()
    (staging / "a").write_text("A")
    (staging / "b").write_text("B")
    (target / "b.onnx").write_text("old B")
    output.move_into_place([(staging / "a", target / "a.onnx"), (staging / "b", target / "b.onnx")])
    assert (target / "a.onnx").read_text() == "A" and (target / "b.onnx").read_text() == "B"
    assert sorted(os.listdir(target)) == ["a.onnx", "b.onnx"]

    # the second file cannot be copied: the first is not placed either, no temporary file stays
    from deploylens.errors import UserError

    (staging / "a").write_text("A2")
    with pytest.raises(UserError, match=r"cannot write .*c\.onnx"):
        output.move_into_place([(staging / "a", target / "a.onnx"), (staging / "missing", target / "c.onnx")])
    assert (target / "a.onnx").read_text() == "A" and sorted(os.listdir(target)) == ["a.onnx", "b.onnx"]


def test_while_stdout_is_reserved_prints_go_to_stderr_and_emit_to_stdout(capsys):
    import sys

    with output.stdout_reserved():
        print("a model's print")
        sys.stdout.write("a raw write\n")
        output.emit('{"ok": true}')
    captured = capsys.readouterr()
    assert captured.out == '{"ok": true}\n'
    assert captured.err == "a model's print\na raw write\n"
    print("after")
    assert capsys.readouterr().out == "after\n"  # restored

"""Running the command line in-process, as a user would from a shell."""

from __future__ import annotations

import sys

import pytest

from deploylens.cli import main


def run(monkeypatch, capsys, *args):
    """Exit code, stdout and stderr of ``deploylens ARGS``."""
    monkeypatch.setattr(sys, "argv", ["deploylens", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err

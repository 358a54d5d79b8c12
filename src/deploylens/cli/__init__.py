"""The ``deploylens`` command: a thin shell over the Python API. Each module registers
its commands on the one typer app (``deploylens.cli.app.app``); every command parses its
arguments, calls the API and renders through the one writer (``deploylens.output.emit``)."""

# registered in --help's order
from deploylens.cli import (analyze, bench, runs, hw, predict, deploy, lint, recommend,  # noqa: F401,I001
                            report, study, zoo)
from deploylens.cli.app import main

__all__ = ["main"]

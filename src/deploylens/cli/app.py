"""The ``deploylens`` typer app, the options and helpers its commands share, and
``main``: a user's mistake is one line on stderr and exit 2; while a command runs, only
its output reaches stdout (what a model's code prints goes to stderr)."""

from __future__ import annotations

import functools
import io
import json
import os
import sys
from contextlib import contextmanager
from enum import Enum
from typing import IO, Any, Callable, Iterator, List, Optional

import typer
from rich.console import Console

from deploylens.errors import UserError
from deploylens.output import emit, real_stdout, stdout_reserved

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="How fast will this CNN run on that device, why, and what to change.")


def console_width(stream: IO[str]) -> Optional[int]:
    """The width a view is laid out in: a terminal's own (None: rich asks it), else
    $COLUMNS when set (``COLUMNS=80 deploylens ... | less``), else 200 (a pipe or a log
    keeps full tables rather than rich's 80-column default)."""
    if getattr(stream, "isatty", lambda: False)():
        return None
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else 200


def stdout_console() -> Console:
    """The console of a command's human view: the real stdout, even while a command runs."""
    stream = real_stdout()
    return Console(file=stream, width=console_width(stream))


stderr = Console(stderr=True, width=console_width(sys.stderr))

MODEL_HELP = "An .onnx file, package.module:factory, path/to/file.py:factory, or a zoo name."
SHAPE_HELP = ("Input shape, e.g. 1,3,224,224; repeat the option (or separate with ';') for several inputs; "
              "append :int64 for an integer input.")
OUTPUT_HELP = "Write to this file instead of stdout."
FORCE_HELP = "Overwrite the output file if it exists."
STORE_HELP = "SQLite results store (default: $DEPLOYLENS_STORE or ~/.local/share/deploylens/runs.sqlite)."


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def joined_shapes(shapes: Optional[List[str]]) -> Optional[str]:
    return ";".join(shapes) if shapes else None


def csv_list(text: str, convert=str) -> list:
    try:
        return [convert(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"bad list {text!r}: expected comma-separated values")


def emit_json(data, output: Optional[str] = None) -> None:
    emit(json.dumps(data, indent=2), output)


def emit_records(records: list[dict], fmt: Format, output: Optional[str] = None) -> bool:
    """Write ``records`` as JSON or CSV when that is the format asked; False for a table."""
    from deploylens.report.tables import to_csv

    if fmt is Format.json:
        emit_json(records, output)
    elif fmt is Format.csv:
        emit(to_csv(records), output)
    else:
        return False
    return True


@contextmanager
def page(output: Optional[str] = None) -> Iterator[Console]:
    """The console a human view prints on. What it printed goes through the one writer
    when the block ends (nothing when it raises): to ``output`` as plain text 200 columns
    wide, else to stdout as the terminal shows it."""
    console = Console(file=io.StringIO(), width=200) if output else stdout_console()
    with console.capture() as captured:
        yield console
    emit(captured.get(), output)


def show(data: Any, fmt: Format, render: Callable[[Console, Any], None], output: Optional[str] = None) -> None:
    """``data`` as JSON when that is the format asked, else the human view that
    ``render(console, data)`` prints: either way through the one writer."""
    if fmt is Format.json:
        emit_json(data, output)
        return
    with page(output) as console:
        render(console, data)


def table(columns: tuple[str, ...], left: tuple[str, ...], names: Optional[tuple[str, ...]] = None,
          optional: tuple[str, ...] = ()):
    """A table with ``columns`` that fits the terminal (80 columns included): numbers
    right-aligned and never cut, ``left`` ones text that wraps; ``names`` (by default the
    ``left`` columns called name, layer, kernel, tensor or module) keep the end of each
    name; ``optional`` columns are dropped, in that order, when nothing else fits.
    Cells are added with ``add_row`` as on a rich ``Table``."""
    from deploylens.report.tables import FitTable

    return FitTable(columns, left, names, optional)


def progress(counted: bool = False, enabled: bool = True):
    """A transient progress display on stderr for work over a second: a spinner, what is
    being done, with ``counted`` a bar and done/total, and the time so far. Only on a
    terminal: a log or a pipe gets no progress lines."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if counted:
        columns += [BarColumn(), MofNCompleteColumn()]
    return Progress(*columns, TimeElapsedColumn(), console=stderr, transient=True,
                    disable=not (enabled and stderr.is_terminal))


def warn(text: str) -> None:
    stderr.print(f"warning: {text}", markup=False, highlight=False, soft_wrap=True)  # one line, whatever the width


def _usage_error(error: Exception) -> bool:
    """An error of the command-line parser (a bad option value, a missing argument): the
    parser's exceptions carry their message and exit code."""
    return hasattr(error, "format_message") and isinstance(getattr(error, "exit_code", None), int)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("deploylens")
        except PackageNotFoundError:  # run from a source tree that is not installed
            from deploylens import __version__ as number
        emit(f"deploylens {number}")
        raise typer.Exit()


@app.callback()
def _root(show_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                            help="Print deploylens's version and exit.")) -> None:
    pass


def _reserving_stdout(callback: Callable) -> Callable:
    """``callback`` (a command's body) run with sys.stdout pointing at stderr: a model's
    own ``print`` cannot corrupt the output the one writer sends to the real stdout."""
    @functools.wraps(callback)
    def run(*args, **kwargs):
        with stdout_reserved():
            return callback(*args, **kwargs)

    return run


def command_line():
    """The click command behind ``app``, each command's body wrapped so that only its
    output reaches stdout (arguments, ``--help`` and usage are parsed before, as usual)."""
    root = typer.main.get_command(app)
    pending = [root]
    while pending:
        command = pending.pop()
        if getattr(command, "commands", None):  # a group: hw, runs, zoo, and the root
            pending.extend(command.commands.values())
        elif command.callback is not None:
            command.callback = _reserving_stdout(command.callback)
    return root


def main() -> None:
    try:
        # the parser's errors come here, to be said in one line too
        code = command_line().main(prog_name="deploylens", standalone_mode=False)
    except UserError as error:
        stderr.print(f"deploylens: error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as error:  # noqa: BLE001 - an internal fault: one line, traceback on request
        if _usage_error(error):
            message = error.format_message()
            if message.startswith("Usage:"):  # a command named without its arguments: its help
                sys.stdout.write(message + "\n")
            else:
                stderr.print(f"deploylens: error: {message}", markup=False, highlight=False, soft_wrap=True)
            sys.exit(error.exit_code)
        if os.environ.get("DEPLOYLENS_DEBUG"):
            raise
        stderr.print(f"deploylens: internal error: {type(error).__name__}: {error} "
                     "(set DEPLOYLENS_DEBUG=1 for the traceback)", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)

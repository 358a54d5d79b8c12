"""The one output writer: every command's output (tables, JSON, CSV, SARIF) goes to
stdout or to its ``-o`` file through :func:`emit`, and every file deploylens writes goes
through :func:`write_atomically`, so that a failure never leaves a half-written file;
:func:`check_destination` refuses a file that cannot be written before the work starts."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from deploylens.errors import UserError


def check_destination(path: str | Path | None, force: bool = False) -> None:
    """Refuse, in one line and before any work starts, a file a command could not write
    or would overwrite: a folder, a path whose folder does not exist or cannot be written
    (tried with a temporary file), an existing file without ``force``. None is stdout."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder: give a file name to write to")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"cannot write {path}: no folder {folder}")
    if path.exists() and not force:
        raise UserError(f"{path} exists: use --force to overwrite it")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror or error}") from error
    os.close(fd)
    os.unlink(probe)


def write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a failure never leaves a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def emit(text: str, output: str | Path | None = None) -> None:
    """A command's output: into the file ``output`` (atomically, as it is), or to stdout
    (ending in a newline) when there is none."""
    if output:
        write_atomically(output, text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")

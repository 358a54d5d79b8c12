"""The one output writer: every command's output (tables, JSON, CSV, SARIF) goes to
stdout or to its ``-o`` file through :func:`emit`, and every file deploylens writes goes
through :func:`write_atomically` (or, for files a step made elsewhere, :func:`move_into_place`),
so that a failure never leaves a half-written file; :func:`check_destination` refuses a
file that cannot be written before the work starts. While a command runs,
:func:`stdout_reserved` sends whatever else prints to stdout (a model's own ``print``) to
stderr, so that only the command's output reaches stdout."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterable, Iterator

from deploylens.errors import UserError

# the real stdout while a command runs (sys.stdout is then stderr): innermost last
_reserved: list[IO[str]] = []


def _special(path: Path) -> bool:
    """An existing file that is not a regular file (``/dev/null``, a FIFO, ``/dev/stdout``):
    written in place, never replaced by a regular file."""
    return path.exists() and not path.is_file() and not path.is_dir()


def check_destination(path: str | Path | None, force: bool = False) -> None:
    """Refuse, in one line and before any work starts, a file a command could not write
    or would overwrite: a folder, a path whose folder does not exist or cannot be written
    (tried with a temporary file), an existing file without ``force``. None is stdout; a
    device or FIFO (``/dev/null``) only has to be writable."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder: give a file name to write to")
    if _special(path):
        if not os.access(path, os.W_OK):
            raise UserError(f"cannot write {path}: permission denied")
        return
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


def _mode_for(path: Path) -> int:
    """The permissions a new file gets from ``open`` (0o666 less the umask), or those of
    the file it replaces: a temporary file is made 0o600, which a written file must not keep."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a failure never leaves a half-written file."""
    path = Path(path)
    if _special(path):
        with open(path, "w") as handle:
            handle.write(text)
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def move_into_place(moves: Iterable[tuple[str | Path, str | Path]]) -> None:
    """Move each staged file (made in a temporary folder) to its destination, all or none:
    every file is first copied next to its destination under a temporary name, and only
    when all are there are they renamed over their destinations; a failure removes every
    temporary copy and leaves the destinations as they were."""
    staged: list[tuple[str, Path]] = []
    special: list[tuple[str | Path, Path]] = []
    destination = None
    try:
        for source, destination in moves:
            destination = Path(destination)
            if _special(destination):
                special.append((source, destination))
                continue
            fd, tmp = tempfile.mkstemp(dir=destination.parent if str(destination.parent) else ".",
                                       prefix=f".{destination.name}.")
            os.close(fd)
            staged.append((tmp, destination))
            shutil.copyfile(source, tmp)
            os.chmod(tmp, _mode_for(destination))
        for tmp, destination in staged:
            os.replace(tmp, destination)
        for source, destination in special:
            shutil.copyfile(source, destination)
    except OSError as error:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise UserError(f"cannot write {destination}: {error.strerror or error}") from error
    except BaseException:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise


def real_stdout() -> IO[str]:
    """Where a command's output goes when it has no file: the process's stdout, even
    while :func:`stdout_reserved` points ``sys.stdout`` at stderr."""
    return _reserved[-1] if _reserved else sys.stdout


@contextmanager
def stdout_reserved() -> Iterator[IO[str]]:
    """While the block runs, ``sys.stdout`` is stderr: what a model's code (or any
    library) prints cannot corrupt the command's output, which :func:`emit` writes to the
    real stdout (yielded)."""
    real = real_stdout()
    _reserved.append(real)
    sys.stdout = sys.stderr
    try:
        yield real
    finally:
        _reserved.pop()
        sys.stdout = real


def emit(text: str, output: str | Path | None = None) -> None:
    """A command's output: into the file ``output`` (atomically, as it is), or to stdout
    (ending in a newline) when there is none."""
    if output:
        write_atomically(output, text)
    else:
        stream = real_stdout()
        stream.write(text if text.endswith("\n") else text + "\n")
        stream.flush()

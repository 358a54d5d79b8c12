"""The one output writer: every command's output (tables, JSON, CSV, SARIF) goes to
stdout or to its ``-o`` file through :func:`emit`, and every file deploylens writes goes
through :func:`write_atomically`, so that a failure never leaves a half-written file."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


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

"""Every benchmark's run written to benchmarks/results/ as JSON: what ran (the command),
when, on which machine, with which versions, what it printed and its numbers.

    with recorded("predict_accuracy") as run:
        ...                      # print as usual; run.results["rows"] = rows
"""

from __future__ import annotations

import contextlib
import io
import json
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def machine() -> dict:
    from deploylens.hardware.local import cpu_info

    info = cpu_info()
    host = {"cpu": info["model"], "logical_cpus": info["logical_cpus"], "isa": info["isa"], "node": platform.node()}
    try:
        import torch

        if torch.cuda.is_available():
            host["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return host


def versions() -> dict:
    found = {"python": platform.python_version()}
    for package in ("deploylens", "torch", "onnx", "onnxruntime", "openvino"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


class Run:
    def __init__(self, benchmark: str):
        self.benchmark, self.results = benchmark, {}
        self.started = datetime.now(timezone.utc)


@contextlib.contextmanager
def recorded(benchmark: str, folder: Path = RESULTS):
    """Run the block with its output printed and kept; on success write the run to
    ``folder/<benchmark>-<UTC time>.json`` (a failed run writes nothing)."""
    run, kept = Run(benchmark), io.StringIO()
    with contextlib.redirect_stdout(_Tee(sys.stdout, kept)):
        yield run
    record = {"benchmark": benchmark, "command": " ".join(["python", *sys.argv]),
              "date": run.started.isoformat(timespec="seconds"), "host": machine(), "versions": versions(),
              "output": kept.getvalue().splitlines(), "results": run.results}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{benchmark}-{run.started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(record, indent=1, default=str))
    print(f"recorded in {path}", file=sys.stderr)

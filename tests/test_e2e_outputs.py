"""End to end, as a user runs it: ``python -m deploylens.cli`` in a subprocess, real files.

Every command's ``-o`` in every format it offers writes a whole, parseable file and
nothing to stdout; a bad output path is one line on stderr, exit 2, nothing written or
changed, and the work never started; a model whose code prints cannot corrupt
``--format json`` on stdout. The model is a tiny file.py:factory that prints on import,
in its factory and in forward, and that leaves a marker file whenever it is built (so a
refused command can be seen not to have started the work).

The runs are started together, a few at a time, when the module's first test asks for
them (each is a fresh interpreter importing torch: seconds each on their own)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

MODEL = """\
import os
import sys

import torch.nn as nn

print("tiny: imported")


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        print("tiny: forward", tuple(x.shape))
        sys.stdout.write("tiny: a raw write\\n")
        return self.head(self.bn(self.conv(x)).relu().mean((2, 3)))


def build():
    print("tiny: building")
    marker = os.environ.get("E2E_MARKER")
    if marker:
        with open(marker, "a") as handle:
            handle.write("built\\n")
    return Tiny().eval()
"""

SHAPE = ["-i", "1,3,32,32"]
BENCH = ["--min-time", "0.02", "--max-time", "0.1", "--no-store"]

# name: (arguments, the file it writes or None for stdout); {m}: the model
WRITES = {
    "analyze table": (["analyze", "{m}", *SHAPE, "--by", "kind", "-o", "analyze.txt"], "analyze.txt"),
    "analyze json": (["analyze", "{m}", *SHAPE, "--format", "json", "-o", "analyze.json"], "analyze.json"),
    "analyze csv": (["analyze", "{m}", *SHAPE, "--format", "csv", "-o", "analyze.csv"], "analyze.csv"),
    "bench table": (["bench", "{m}", *SHAPE, *BENCH, "-o", "bench.txt"], "bench.txt"),
    "bench json": (["bench", "{m}", *SHAPE, *BENCH, "--format", "json", "-o", "bench.json"], "bench.json"),
    "bench csv": (["bench", "{m}", *SHAPE, *BENCH, "--format", "csv", "-o", "bench.csv"], "bench.csv"),
    "zoo list table": (["zoo", "list", "--family", "squeezenet", "-o", "zoo.txt"], "zoo.txt"),
    "zoo list json": (["zoo", "list", "--family", "squeezenet", "--format", "json", "-o", "zoo.json"], "zoo.json"),
    "zoo list csv": (["zoo", "list", "--family", "squeezenet", "--format", "csv", "-o", "zoo.csv"], "zoo.csv"),
    # stdout itself, with a model that prints: the JSON must still parse (tests/test_cli.py: analyze too)
    "deploy json on stdout": (["deploy", "{m}", *SHAPE, "--fuse", "--onnx", "tiny.onnx", "--int8", "--format",
                               "json"], None),
}

# name: (arguments, the one line of stderr), run in a folder holding existing.json: each kind of bad
# path at least once (tests/test_cli.py has every command with every kind, in-process)
REFUSALS = {
    "analyze -o /proc": (["analyze", "{m}", "-o", "/proc/x.json"], "deploylens: error: cannot write /proc/x.json: "),
    "analyze -o a folder": (["analyze", "{m}", "-o", "."], "deploylens: error: . is a folder"),
    "bench -o existing": (["bench", "{m}", "--store", "runs.sqlite", "--format", "csv", "-o", "existing.json"],
                          "deploylens: error: existing.json exists: use --force"),
    "bench --backend nope": (["bench", "{m}", "--store", "runs.sqlite", "--backend", "nope"],
                             "deploylens: error: unknown backend 'nope'"),
    "zoo list -o nodir": (["zoo", "list", "--format", "json", "-o", "nodir/zoo.json"],
                          "deploylens: error: cannot write nodir/zoo.json: no folder nodir"),
    "hw calibrate -o /proc": (["hw", "calibrate", "-o", "/proc/profile.json"],
                              "deploylens: error: cannot write /proc/profile.json: "),
    "deploy --onnx nodir": (["deploy", "{m}", "--onnx", "nodir/x.onnx"],
                            "deploylens: error: cannot write nodir/x.onnx: no folder nodir"),
    "deploy --onnx existing": (["deploy", "{m}", "--onnx", "existing.json"],
                               "deploylens: error: existing.json exists: use --force"),
    "deploy --int8 --method": (["deploy", "{m}", "--onnx", "fine.onnx", "--int8", "--method", "kl"],
                               "deploylens: error: calibration method 'kl': one of minmax, entropy, percentile"),
}


def _run(args: list[str], folder: Path) -> subprocess.CompletedProcess:
    # one thread each: the runs share the machine's cores
    env = {**os.environ, "E2E_MARKER": str(folder / "built.marker"), "DEPLOYLENS_CALIBRATION_DIR": str(folder),
           "OMP_NUM_THREADS": "1"}
    env.pop("COLUMNS", None)
    return subprocess.run([sys.executable, "-m", "deploylens.cli", *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run of this module, started together: {name: (folder, completed process)}."""
    model = tmp_path_factory.mktemp("model") / "tiny.py"
    model.write_text(MODEL)
    jobs = {}
    for name, (args, _) in {**WRITES, **REFUSALS}.items():
        folder = tmp_path_factory.mktemp(name.replace(" ", "_").replace("/", "").replace("-", ""))
        (folder / "existing.json").write_text("kept")
        jobs[name] = (folder, [a.replace("{m}", f"{model}:build") for a in args])
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_run, args, folder) for name, (folder, args) in jobs.items()}
    return {name: (jobs[name][0], future.result()) for name, future in futures.items()}


def _check_file(name: str, path: Path) -> None:
    text = path.read_text()
    assert text.strip(), f"{name}: {path.name} is empty"
    if path.suffix == ".json":
        data = json.loads(text)
        assert data, name
    elif path.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows and all(None not in row for row in rows), name  # every row as wide as the header
    else:
        assert "┃" in text and "┏" in text, name  # a whole table, frame and all


@pytest.mark.parametrize("name", list(WRITES))
def test_every_output_is_written_whole_and_nothing_else_reaches_stdout(runs, name):
    folder, result = runs[name]
    assert result.returncode == 0, result.stderr
    assert "tiny: building" in result.stderr or "zoo" in name  # the model's prints went to stderr
    target = WRITES[name][1]
    if target:
        assert result.stdout == "", f"{name}: stdout {result.stdout[:200]!r}"
        _check_file(name, folder / target)
        return
    data = json.loads(result.stdout)  # nothing the model printed is in it
    assert [s["step"] for s in data["steps"]] == ["original", "fuse_bn", "export_onnx", "quantize_int8"]
    assert [s["macs"] for s in data["steps"]] == [8 * 27 * 30 * 30 + 8 * 10] * 4  # conv 3->8 3x3 on 30x30, linear
    assert sorted(p.name for p in folder.glob("*.onnx")) == ["tiny.int8.onnx", "tiny.onnx"]
    assert data["steps"][3]["bytes_fused"] * 2 < data["steps"][2]["bytes_fused"]  # costed at int8


def test_the_formats_say_the_same(runs):
    folder = runs["analyze json"][0]
    profile = json.loads((folder / "analyze.json").read_text())
    rows = list(csv.DictReader(io.StringIO((runs["analyze csv"][0] / "analyze.csv").read_text())))
    assert sum(int(row["macs"]) for row in rows) == profile["totals"]["macs"]
    table = (runs["analyze table"][0] / "analyze.txt").read_text()
    assert any(line.startswith("│ conv ") for line in table.splitlines())
    bench = json.loads((runs["bench json"][0] / "bench.json").read_text())
    assert [(r["backend"], r["batch"]) for r in bench] == [("torch", 1)]
    zoo = json.loads((runs["zoo list json"][0] / "zoo.json").read_text())
    assert [r["name"] for r in zoo] == ["squeezenet1_0", "squeezenet1_1"]


@pytest.mark.parametrize("name", list(REFUSALS))
def test_a_bad_output_is_one_line_exit_2_and_nothing_runs_or_changes(runs, name):
    folder, result = runs[name]
    assert result.returncode == 2 and result.stdout == "", (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(REFUSALS[name][1]), result.stderr
    # the model was never built, no file was made (no store, no folder), the existing one is as it was
    assert sorted(p.name for p in folder.iterdir()) == ["existing.json"]
    assert (folder / "existing.json").read_text() == "kept"

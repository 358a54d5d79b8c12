"""The results store: every bench run in SQLite, so runs can be listed and compared
(the regression check a CI job wants). A run is written as "running" before its first
measurement and marked "complete" or "interrupted" at the end; each measurement is its
own transaction, so the store is consistent whatever happens."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from deploylens.errors import UserError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    model TEXT NOT NULL,
    arguments TEXT NOT NULL,
    environment TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    backend TEXT NOT NULL,
    device TEXT NOT NULL,
    dtype TEXT NOT NULL,
    batch INTEGER NOT NULL,
    data TEXT NOT NULL
);
"""


def default_path() -> Path:
    if os.environ.get("DEPLOYLENS_STORE"):
        return Path(os.environ["DEPLOYLENS_STORE"])
    base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "deploylens" / "runs.sqlite"


class Store:
    """The results store at ``path``. Nothing is created before the first run is saved:
    a command refused for a bad argument leaves no empty store behind, and reading a
    store that does not exist yet finds no runs."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_path()
        if self.path.is_dir():
            raise UserError(f"the results store {self.path} is a folder: give a file name")
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        """The database, opened (and created with its folder) on first use."""
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path)
                db.executescript(_SCHEMA)
            except (OSError, sqlite3.Error) as error:
                raise UserError(f"cannot open the results store {self.path}: {error}") from error
            self._db = db
        return self._db

    def _readable(self) -> bool:
        """Whether there is a store to read (reading never creates one)."""
        return self._db is not None or self.path.exists()

    def begin(self, model: str, arguments: dict, environment: dict) -> int:
        with self.db:
            cursor = self.db.execute(
                "INSERT INTO runs (created, model, arguments, environment, status) VALUES (?, ?, ?, ?, 'running')",
                (datetime.now(timezone.utc).isoformat(timespec="seconds"), model, json.dumps(arguments),
                 json.dumps(environment)))
        return int(cursor.lastrowid)

    def add(self, run_id: int, measurement: dict) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO measurements (run_id, backend, device, dtype, batch, data) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, measurement["backend"], measurement["device"], measurement["dtype"], measurement["batch"],
                 json.dumps(measurement)))

    def finish(self, run_id: int, status: str) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))

    def runs(self, limit: int = 50) -> list[dict]:
        if not self._readable():
            return []
        rows = self.db.execute(
            "SELECT r.id, r.created, r.model, r.status, COUNT(m.id) FROM runs r LEFT JOIN measurements m "
            "ON m.run_id = r.id GROUP BY r.id ORDER BY r.id DESC LIMIT ?", (limit,)).fetchall()
        return [{"id": i, "created": c, "model": m, "status": s, "measurements": n} for i, c, m, s, n in rows]

    def run(self, run_id: int) -> dict:
        if not self._readable():
            raise UserError(f"no run {run_id}: there is no results store at {self.path} yet")
        row = self.db.execute("SELECT id, created, model, arguments, environment, status FROM runs WHERE id = ?",
                              (run_id,)).fetchone()
        if row is None:
            raise UserError(f"no run {run_id} in {self.path}")
        measurements = [json.loads(d) for (d,) in self.db.execute(
            "SELECT data FROM measurements WHERE run_id = ? ORDER BY id", (run_id,))]
        return {"id": row[0], "created": row[1], "model": row[2], "arguments": json.loads(row[3]),
                "environment": json.loads(row[4]), "status": row[5], "measurements": measurements}

    def compare(self, baseline: int, candidate: int) -> dict:
        """Ratios candidate / baseline for every (backend, device, dtype, batch) both ran."""
        a, b = self.run(baseline), self.run(candidate)
        key = ("backend", "device", "dtype", "batch")
        index = {tuple(m[k] for k in key): m for m in a["measurements"]}
        rows = []
        for m in b["measurements"]:
            base = index.get(tuple(m[k] for k in key))
            if base:
                rows.append({**{k: m[k] for k in key}, "baseline_p50_ms": base["p50_ms"], "p50_ms": m["p50_ms"],
                             "p50_ratio": m["p50_ms"] / base["p50_ms"],
                             "throughput_ratio": m["throughput"] / base["throughput"]})
        return {"baseline": baseline, "candidate": candidate, "models": [a["model"], b["model"]],
                "statuses": [a["status"], b["status"]], "rows": rows}

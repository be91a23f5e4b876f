"""A sweep's results in one SQLite file (``<sweep folder>/sweep.sqlite``, standard ``sqlite3``).

Only the driver writes. Each finished cell is one transaction (its row and its history
together), so a driver killed at any moment leaves every cell either recorded whole or still
pending. The database runs in WAL mode: ``rnnlab report``, the ``sqlite3`` shell or
``pandas.read_sql`` read it while a sweep writes.

Tables
------
``cells``
    One row per cell: ``cell_id`` (primary key), ``group_id`` (the cells differing only in
    seed), ``position`` (order in the sweep file), ``label`` and ``axes`` (JSON: axis -> value),
    ``config`` (JSON, the complete run config), ``seed``, ``task``, ``model``, ``optimizer``,
    ``lr``; ``status`` (pending, done, diverged, failed), ``step`` (steps completed: a cell
    that diverged did so at step + 1, as its "diverged" history record says), ``reason``
    (why it diverged or failed), ``error`` (the exception, for failed cells); ``metric`` (the
    task's headline metric), ``final_metric`` and ``best_metric`` (validation split: last and
    best evaluation; for a diverged cell, its last good evaluation: filter on ``status``),
    ``test_metric`` (test split, done cells only), ``threshold`` and
    ``steps_to_threshold`` (first evaluation step that reached it), ``baseline``; ``seconds``
    (the run's own wall time), ``host``, ``pid``, ``finished_at`` (UTC), ``final`` and ``test``
    (JSON: every metric).
``history``
    Every metrics record of every recorded cell: ``cell_id``, ``seq``, ``kind`` (train, eval,
    test, diverged), ``step``, ``loss``, ``value`` (the headline metric of eval and test
    records) and ``record`` (JSON, the whole record).
``meta``
    ``key``/``value`` pairs: the sweep file last run here (JSON), the rnnlab version.

Example: ``sqlite3 sweep.sqlite "select optimizer, lr, status, test_metric from cells"``, or
``pandas.read_sql("select * from cells", sqlite3.connect("sweep.sqlite"))``.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import sqlite3

from ..errors import ConfigError, SinkError

STORE_FILE = "sweep.sqlite"
FINAL = ("done", "diverged", "failed")
STATUSES = ("pending",) + FINAL

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS cells (
    cell_id TEXT PRIMARY KEY, group_id TEXT NOT NULL, position INTEGER, label TEXT,
    axes TEXT, config TEXT NOT NULL, seed INTEGER, task TEXT, model TEXT, optimizer TEXT,
    lr REAL, status TEXT NOT NULL DEFAULT 'pending', step INTEGER, reason TEXT, error TEXT,
    metric TEXT, final_metric REAL, best_metric REAL, test_metric REAL, threshold REAL,
    steps_to_threshold INTEGER, baseline REAL, seconds REAL, host TEXT, pid INTEGER,
    finished_at TEXT, final TEXT, test TEXT);
CREATE TABLE IF NOT EXISTS history (
    cell_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT, step INTEGER, loss REAL,
    value REAL, record TEXT, PRIMARY KEY (cell_id, seq));
CREATE INDEX IF NOT EXISTS cells_by_group ON cells (group_id);
"""


def _finite(value):
    """A float for SQLite, or None for a missing or non-finite value (SQL NULL)."""
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _json(data) -> str:
    # non-finite floats (a diverged run's last loss) become null: the JSON stays standard
    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x
    return json.dumps(clean(data))


def summarise(history: list, metric: str | None, threshold, better: str) -> dict:
    """best_metric and steps_to_threshold of a history's eval records."""
    values = [(r["step"], r.get(metric)) for r in history
              if r.get("kind") == "eval" and metric is not None]
    values = [(s, v) for s, v in values if v is not None and math.isfinite(v)]
    if not values:
        return {"best_metric": None, "steps_to_threshold": None}
    pick = min if better == "lower" else max
    reached = (lambda v: v < threshold) if better == "lower" else (lambda v: v > threshold)
    first = next((s for s, v in values if threshold is not None and reached(v)), None)
    return {"best_metric": pick(v for _, v in values), "steps_to_threshold": first}


class Store:
    """The SQLite file of a sweep folder, opened for the driver (``readonly=False``) or for
    reading (reports, while a sweep runs)."""

    def __init__(self, folder: str, readonly: bool = False):
        self.path = os.path.join(folder, STORE_FILE)
        try:
            if readonly:
                if not os.path.isfile(self.path):
                    raise ConfigError(f"{folder} holds no sweep ({STORE_FILE} is missing); "
                                      "run rnnlab sweep SPEC --out FOLDER first")
                # a plain connection that refuses writes: a read-only (mode=ro) one cannot
                # open a WAL database whose -shm file is gone (no driver running)
                self._db = sqlite3.connect(self.path, timeout=30)
                self._db.execute("PRAGMA query_only=ON")
            else:
                os.makedirs(folder, exist_ok=True)
                self._db = sqlite3.connect(self.path, timeout=30)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.executescript(_SCHEMA)
                self._db.commit()
        except sqlite3.Error as exc:
            raise SinkError(f"cannot use {self.path} as a sweep database: {exc}") from None
        except OSError as exc:
            raise SinkError(f"cannot use {folder} as a sweep folder: "
                            f"{exc.strerror or exc}") from None
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _write(self, action):
        """Run ``action(db)`` in one transaction; sqlite errors become one-line SinkErrors."""
        try:
            with self._db:
                return action(self._db)
        except sqlite3.Error as exc:
            raise SinkError(f"could not write {self.path}: {exc}") from None

    # ------------------------------------------------------------------ the driver's writes
    def set_meta(self, key: str, value) -> None:
        self._write(lambda db: db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value))))

    def add_cells(self, cells) -> None:
        """Insert cells not held yet as pending (cells already held keep their results). Cells of
        an earlier spec that this one lacks keep their place after this spec's."""
        rows = [(c.cell_id, c.group_id, position, c.label, json.dumps(c.axes),
                 json.dumps(c.config.to_dict()), c.seed, c.config.task["name"],
                 c.config.model["name"], c.config.optimizer["name"],
                 c.config.optimizer.get("lr")) for position, c in enumerate(cells)]
        # a cell already held keeps its results; its position and label follow this spec,
        # so reports list cells in the order of the sweep file last run
        self._write(lambda db: db.executemany(
            "INSERT INTO cells (cell_id, group_id, position, label, axes, config, seed, task, "
            "model, optimizer, lr) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
            "(cell_id) DO UPDATE SET position = excluded.position, label = excluded.label, "
            "axes = excluded.axes", rows))

    def record(self, cell_id: str, outcome: dict) -> None:
        """A cell's outcome (from :func:`rnnlab.experiments.executors.run_cell`) and its
        history, in one transaction."""
        metric = outcome.get("metric")
        final, test = outcome.get("final") or {}, outcome.get("test") or {}
        summary = summarise(outcome.get("history", []), metric, outcome.get("threshold"),
                            outcome.get("better", "lower"))
        row = (outcome["status"], outcome.get("step"), outcome.get("reason"),
               outcome.get("error"), metric, _finite(final.get(metric)),
               _finite(summary["best_metric"]), _finite(test.get(metric)),
               _finite(outcome.get("threshold")), summary["steps_to_threshold"],
               _finite(outcome.get("baseline")), _finite(outcome.get("seconds")),
               outcome.get("host"), outcome.get("pid"),
               datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               _json(final), _json(test), cell_id)
        history = [(cell_id, seq, r.get("kind"), r.get("step"), _finite(r.get("loss")),
                    _finite(r.get(metric)) if metric else None, _json(r))
                   for seq, r in enumerate(outcome.get("history", []))]

        def write(db):
            db.execute("UPDATE cells SET status=?, step=?, reason=?, error=?, metric=?, "
                       "final_metric=?, best_metric=?, test_metric=?, threshold=?, "
                       "steps_to_threshold=?, baseline=?, seconds=?, host=?, pid=?, "
                       "finished_at=?, final=?, test=? WHERE cell_id=?", row)
            db.execute("DELETE FROM history WHERE cell_id=?", (cell_id,))
            db.executemany("INSERT INTO history (cell_id, seq, kind, step, loss, value, "
                           "record) VALUES (?, ?, ?, ?, ?, ?, ?)", history)
        self._write(write)

    def reset(self, cell_ids) -> None:
        """Mark cells pending again (``--retry-failed``)."""
        self._write(lambda db: db.executemany(
            "UPDATE cells SET status='pending' WHERE cell_id=?", [(c,) for c in cell_ids]))

    # ------------------------------------------------------------------ reads
    def statuses(self) -> dict:
        """cell_id -> status."""
        return {r["cell_id"]: r["status"]
                for r in self._db.execute("SELECT cell_id, status FROM cells")}

    def cells(self) -> list:
        """Every cell row as a dict (JSON columns decoded), in sweep order."""
        rows = []
        for r in self._db.execute("SELECT * FROM cells ORDER BY position, cell_id"):
            row = dict(r)
            for key in ("axes", "config", "final", "test"):
                row[key] = json.loads(row[key]) if row[key] else {}
            rows.append(row)
        return rows

    def history(self, cell_id: str) -> list:
        """A cell's metrics records, in order."""
        return [json.loads(r["record"]) for r in self._db.execute(
            "SELECT record FROM history WHERE cell_id=? ORDER BY seq", (cell_id,))]

    def meta(self, key: str, default=None):
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])


__all__ = ["FINAL", "STATUSES", "STORE_FILE", "Store", "summarise"]

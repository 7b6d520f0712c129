"""The SQLite store of a scan: one row per checkpoint, its layers' rows and its summary.

Tables (all written by the scan's single writer, one transaction per checkpoint, WAL mode so
readers never block it):

* ``checkpoints``: ``id``, ``path``, ``content_hash``, ``options`` (the analysis options as
  canonical JSON), ``status`` ("done" or "failed"), ``error``, ``seconds`` (analysis wall
  time), ``finished`` (Unix time), ``n_layers``; unique on (path, content_hash, options).
* ``layers``: ``checkpoint_id`` then the analyze() table's columns (added as they appear);
* ``summaries``: ``checkpoint_id`` then summary() of the table (mean metrics);
* ``files``: a cache of content hashes by (path, size, mtime_ns), so a resumed scan does not
  read every file again.

A checkpoint is stored completely or not at all, so a scan killed at any moment resumes
where it stopped, without lost or duplicated rows.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from typing import Self

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    options TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    seconds REAL,
    finished REAL,
    n_layers INTEGER,
    UNIQUE (path, content_hash, options)
);
CREATE TABLE IF NOT EXISTS layers (checkpoint_id INTEGER NOT NULL REFERENCES checkpoints(id));
CREATE TABLE IF NOT EXISTS summaries (checkpoint_id INTEGER NOT NULL REFERENCES checkpoints(id));
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, content_hash TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS layers_by_checkpoint ON layers (checkpoint_id);
"""


def canonical_options(options: dict[str, Any]) -> str:
    """The analysis options as the JSON text stored (and compared) with each checkpoint."""
    return json.dumps(options, sort_keys=True, default=str)


#: A table as the store writes it: column names and one tuple of Python values per row.
TableRows = tuple[list[str], list[tuple[Any, ...]]]
#: A file's entry in the hash cache: (resolved path, size, mtime_ns, content hash).
FileHash = tuple[str, int, int, str]


def table_rows(frame: pd.DataFrame) -> TableRows:
    """An analyze() table as column names and rows of plain Python values (NaN kept: SQLite
    stores it as NULL). Converted in one pass, which costs far less than column by column."""
    values = frame.to_numpy(dtype=object).tolist()
    rows = [tuple(v.item() if isinstance(v, np.generic) else v for v in row) for row in values]
    return [str(c) for c in frame.columns], rows


def _sql_type(rows: list[tuple[Any, ...]], k: int) -> str:
    """The SQLite type of column k: TEXT, REAL or INTEGER (bool too), from its values."""
    kinds = {type(row[k]) for row in rows if row[k] is not None}
    if kinds & {str, bytes}:
        return "TEXT"
    if float in kinds:
        return "REAL"
    return "INTEGER"


def _sql_value(value: float) -> float | None:
    """NaN is stored as NULL."""
    return None if math.isnan(value) else float(value)


class Store:
    """A scan's SQLite database (created if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.db.commit()
        self._known: dict[str, set[str]] = {}
        #: (table, column names) -> the INSERT statement of those columns (its columns exist)
        self._inserts: dict[tuple[str, tuple[str, ...]], str] = {}

    def close(self) -> None:
        self.db.commit()  # hashes cached while only skipping checkpoints
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- content hashes -------------------------------------------------------------------
    def cached_hash(self, path: str, size: int, mtime_ns: int) -> str | None:
        """The stored hash of ``path`` if its size and modification time are unchanged."""
        row = self.db.execute(
            "SELECT content_hash FROM files WHERE path = ? AND size = ? AND mtime_ns = ?",
            (path, size, mtime_ns),
        ).fetchone()
        return row[0] if row else None

    def hash_cache(self) -> dict[tuple[str, int, int], str]:
        """The whole hash cache: (path, size, mtime_ns) -> hash, read in one query."""
        rows = self.db.execute("SELECT path, size, mtime_ns, content_hash FROM files")
        return {(path, size, mtime): digest for path, size, mtime, digest in rows}

    def statuses(self, options: str) -> dict[tuple[str, str], str]:
        """(path, content hash) -> "done" or "failed" of every checkpoint stored with these
        analysis options, read in one query."""
        rows = self.db.execute(
            "SELECT path, content_hash, status FROM checkpoints WHERE options = ?", (options,)
        )
        return {(path, digest): status for path, digest, status in rows}

    def remember_hash(self, path: str, size: int, mtime_ns: int, content_hash: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                        (path, size, mtime_ns, content_hash))  # fmt: skip
        # committed with the checkpoint's transaction (a cache: losing it costs a re-read)

    # --- checkpoints ----------------------------------------------------------------------
    def status(self, path: str, content_hash: str, options: str) -> str | None:
        """ "done", "failed" or None (never analyzed with these options)."""
        row = self.db.execute(
            "SELECT status FROM checkpoints WHERE path = ? AND content_hash = ? AND options = ?",
            (path, content_hash, options),
        ).fetchone()
        return row[0] if row else None

    def _columns(self, table: str) -> set[str]:
        """The table's column names (cached: this connection is the only writer)."""
        if table not in self._known:
            self._known[table] = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
        return self._known[table]

    def _insert_sql(self, table: str, names: list[str], values: list[tuple[Any, ...]]) -> str:
        """The INSERT statement of these columns, adding the missing ones to the table first;
        the same text for the same columns, so SQLite's statement cache reuses it."""
        key = (table, tuple(names))
        sql = self._inserts.get(key)
        if sql is None:
            existing = self._columns(table)
            for k, col in enumerate(names):
                if col not in existing:
                    existing.add(col)
                    self.db.execute(
                        f'ALTER TABLE {table} ADD COLUMN "{col}" {_sql_type(values, k)}'
                    )
            quoted = ", ".join(f'"{c}"' for c in ["checkpoint_id", *names])
            marks = ", ".join("?" * (len(names) + 1))
            sql = self._inserts[key] = f"INSERT INTO {table} ({quoted}) VALUES ({marks})"
        return sql

    def _insert_rows(self, table: str, checkpoint_id: int, rows: TableRows) -> None:
        names, values = rows
        sql = self._insert_sql(table, names, values)
        self.db.executemany(sql, [(checkpoint_id, *row) for row in values])

    def save(
        self, path: str, content_hash: str, options: str, *,
        table: pd.DataFrame | TableRows | None, summary: dict[str, float] | None,
        error: str = "", seconds: float = math.nan, files: Iterable[FileHash] = (),
    ) -> None:  # fmt: skip
        """Store one checkpoint's result (replacing an earlier failed attempt) in one
        transaction: all of it or, if the process dies, none of it.

        ``table``: the analyze() table, or its :func:`table_rows`; None for a failed
        checkpoint. ``files``: (path, size, mtime_ns, hash) of its files for the hash cache.
        """
        rows = table_rows(table) if isinstance(table, pd.DataFrame) else table
        try:
            self._save(path, content_hash, options, rows, summary, error, seconds, files)
        except BaseException:
            self._known.clear()  # a rolled-back ALTER TABLE leaves the caches stale
            self._inserts.clear()
            raise

    def _save(
        self, path: str, content_hash: str, options: str, rows: TableRows | None,
        summary: dict[str, float] | None, error: str, seconds: float, files: Iterable[FileHash],
    ) -> None:  # fmt: skip
        with self.db:  # BEGIN ... COMMIT (ROLLBACK on error)
            for entry in files:
                self.remember_hash(*entry)
            old = self.db.execute(
                "SELECT id FROM checkpoints WHERE path = ? AND content_hash = ? AND options = ?",
                (path, content_hash, options),
            ).fetchone()
            if old:
                for name in ("layers", "summaries"):
                    self.db.execute(f"DELETE FROM {name} WHERE checkpoint_id = ?", old)
                self.db.execute("DELETE FROM checkpoints WHERE id = ?", old)
            status = "failed" if rows is None else "done"
            cursor = self.db.execute(
                "INSERT INTO checkpoints (path, content_hash, options, status, error, seconds, "
                "finished, n_layers) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (path, content_hash, options, status, error, _sql_value(seconds), time.time(),
                 None if rows is None else len(rows[1])),
            )  # fmt: skip
            checkpoint_id = int(cursor.lastrowid or 0)
            if rows is not None and rows[1]:
                self._insert_rows("layers", checkpoint_id, rows)
            if summary:
                self._insert_rows("summaries", checkpoint_id,
                                  (list(summary), [tuple(summary.values())]))  # fmt: skip

    # --- reading back ---------------------------------------------------------------------
    def frame(self, table: str) -> pd.DataFrame:
        """A whole table; ``layers`` and ``summaries`` joined with their checkpoint's path."""
        if table == "checkpoints":
            return pd.read_sql_query("SELECT * FROM checkpoints ORDER BY id", self.db)
        query = (f"SELECT c.path, t.* FROM {table} t JOIN checkpoints c "
                 "ON c.id = t.checkpoint_id ORDER BY t.checkpoint_id, t.rowid")  # fmt: skip
        return pd.read_sql_query(query, self.db)

    def counts(self) -> dict[str, int]:
        rows: Iterable[tuple[str, int]] = self.db.execute(
            "SELECT status, COUNT(*) FROM checkpoints GROUP BY status")  # fmt: skip
        return dict(rows)

"""The SQLite store of a scan: one row per checkpoint, its layers' rows and its summary.

Tables (all written by the scan's single writer, one transaction per checkpoint, WAL mode so
readers never block it):

* ``checkpoints``: ``id``, ``path``, ``content_hash``, ``options_id`` (the analysis options,
  a row of ``options``), ``status``, ``error``, ``seconds`` (analysis wall time),
  ``finished`` (Unix time), ``n_layers`` (rows of its table), ``n_failed`` (how many of them
  have status "failed"); unique on (path, content_hash, options_id). ``status`` is one of
  CHECKPOINT_STATUSES: "done" (every analyzed layer succeeded), "partial" (a table was made
  but ``n_failed`` > 0 of its layers failed, each with its reason: NaN/Inf weights, an
  unsupported dtype...) or "failed" (no table: the checkpoint could not be read as a whole,
  ``error`` says why; ``n_layers`` and ``n_failed`` NULL). :meth:`Store.frame` returns it
  with the options' JSON text as ``options``.
* ``options``: ``id``, ``text`` (the analysis options as canonical JSON), each set once;
* ``layers``: ``checkpoint_id`` then the analyze() table's columns (added as they appear),
  in the order stored (no index on ``checkpoint_id`` in a store made by this version: one
  page less to write per checkpoint; ``CREATE INDEX`` one for many queries by checkpoint);
* ``summaries``: ``checkpoint_id`` then summary() of the table (mean metrics);
* ``files``: a cache of content hashes by (path, size, mtime_ns), so a resumed scan does not
  read every file again;
* ``meta``: ``key``, ``value``: ``schema`` (this layout: 3) and ``content_hash``, the hash
  its content hashes were made with: ``hts128`` (hts_fast's own fast non-cryptographic
  128-bit hash) in a store made by this version, ``sha256`` (its first 128 bits) in one made
  before; a store keeps the hash it was made with, so that it resumes.

A checkpoint is stored completely or not at all, so a scan killed at any moment resumes
where it stopped, without lost or duplicated rows. Older stores are migrated when opened for
writing, in one transaction (ids and rows unchanged): the first layout (the options JSON in
every checkpoint row, no ``options`` or ``meta`` table) gets its options table, and a store
of schema 1 or 2 (no ``n_failed``) gets the column, filled from its layers' statuses, and
"partial" for its done checkpoints with failed layers. Opened read-only, such a store is not
changed: :meth:`Store.frame` computes ``n_failed`` and "partial" the same way as it reads.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sqlite3
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from typing import Self

#: The layout written by this version (meta.schema): 2 added the options table, 3 the
#: checkpoints' n_failed column and the status "partial".
SCHEMA_VERSION = 3
#: A checkpoint's status: every layer analyzed; a table with failed layers; no table.
CHECKPOINT_STATUSES = ("done", "partial", "failed")
#: Page size of a new store: each checkpoint's transaction writes about 8 pages to the WAL
#: (its rows in 5 tables and indexes, page 1), whole; small pages write and sync less.
PAGE_SIZE = 1024
#: The content hash of a new store; stores made before hts128 keep "sha256".
NEW_STORE_HASH = "hts128"
HASH_ALGORITHMS = ("hts128", "sha256")

#: The checkpoints table's columns (schema 3), for SCHEMA and the migrations to it.
_CHECKPOINT_COLUMNS = """
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    options_id INTEGER NOT NULL REFERENCES options(id),
    status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    seconds REAL,
    finished REAL,
    n_layers INTEGER,
    n_failed INTEGER,
    UNIQUE (path, content_hash, options_id)
"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS options (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS checkpoints ({_CHECKPOINT_COLUMNS});
CREATE TABLE IF NOT EXISTS layers (checkpoint_id INTEGER NOT NULL REFERENCES checkpoints(id));
CREATE TABLE IF NOT EXISTS summaries (checkpoint_id INTEGER NOT NULL REFERENCES checkpoints(id));
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, content_hash TEXT
) WITHOUT ROWID;
"""

#: Schema 1 -> 2: the options JSON moves to the options table (run in one transaction).
_MIGRATE_1_TO_2 = f"""
INSERT OR IGNORE INTO options (text) SELECT options FROM checkpoints GROUP BY options
    ORDER BY MIN(id);
CREATE TABLE checkpoints_v2 ({_CHECKPOINT_COLUMNS});
INSERT INTO checkpoints_v2 (id, path, content_hash, options_id, status, error, seconds,
    finished, n_layers) SELECT c.id, c.path, c.content_hash, o.id, c.status, c.error,
    c.seconds, c.finished, c.n_layers FROM checkpoints c JOIN options o ON o.text = c.options
    ORDER BY c.id;
DROP TABLE checkpoints;
ALTER TABLE checkpoints_v2 RENAME TO checkpoints;
"""


#: Schema 2 -> 3 (after 1 -> 2 where needed, in the same transaction): each checkpoint with a
#: table gets its count of failed layers, and "partial" where it is not 0. The counts are
#: grouped once into a temporary table (the layers table has no index on checkpoint_id).
_COUNT_FAILED = """
CREATE TEMP TABLE failed_layers (checkpoint_id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
INSERT INTO failed_layers SELECT checkpoint_id, COUNT(*) FROM layers WHERE status = 'failed'
    GROUP BY checkpoint_id;
UPDATE checkpoints SET n_failed = COALESCE((SELECT n FROM failed_layers f
    WHERE f.checkpoint_id = checkpoints.id), 0) WHERE status != 'failed';
UPDATE checkpoints SET status = 'partial' WHERE status = 'done' AND n_failed > 0;
DROP TABLE temp.failed_layers;
"""
#: The same for a store without failed-layer statuses to count (no layer ever stored).
_NO_FAILED = "UPDATE checkpoints SET n_failed = 0 WHERE status != 'failed'"


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


def failed_layers(rows: TableRows) -> int:
    """How many rows of a table have status "failed" (0 for a table without that column)."""
    names, values = rows
    if "status" not in names:
        return 0
    k = names.index("status")
    return sum(1 for row in values if row[k] == "failed")


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


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]


class Store:
    """A scan's SQLite database (created if missing, migrated from the first layout).

    ``readonly=True`` (export, correlate, report): the store must exist and is never written,
    not even migrated; a first-layout store is read as it is.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        #: the checkpoints table of the first layout (options JSON in each row; readonly only)
        self.first_layout = False
        #: whether the checkpoints table has n_failed (schema 3; False only read-only)
        self.counts_failed = True
        self._layer_statuses = True  # whether the layers table has a status column
        if readonly and not self.path.is_file():
            msg = f"{self.path}: no such store"
            raise FileNotFoundError(msg)
        if not readonly and self.path.exists() and not self.path.is_file():
            msg = f"{self.path}: not a file (a store is one SQLite file)"
            raise ValueError(msg)
        # autocommit mode: every transaction below is an explicit BEGIN ... COMMIT
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            msg = f"{self.path}: cannot open the store ({exc})"
            raise ValueError(msg) from None
        if readonly:
            #: the content hash of this store's rows (meta.content_hash): "hts128" or "sha256"
            self.hash_algorithm = self._read_schema()
        else:
            self._refuse_foreign()
            self.db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # a new file only
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.hash_algorithm = self._open_schema()
        self._known: dict[str, set[str]] = {}
        #: (table, column names) -> the INSERT statement of those columns (its columns exist)
        self._inserts: dict[tuple[str, tuple[str, ...]], str] = {}
        #: options JSON text -> its id in the options table
        self._option_ids: dict[str, int] = {}
        #: hash-cache entries waiting for the next transaction (see remember_hash)
        self._pending_files: list[FileHash] = []
        #: tests only: SIGKILL this process inside the n-th checkpoint's transaction, after
        #: its rows are written and before its COMMIT (0: never)
        self._kill_at_save = int(os.environ.get("HTS_FAST_TEST_KILL_AT_SAVE", "0") or 0)
        self._saves = 0

    def _refuse_foreign(self) -> None:
        """ValueError, before anything is written, for a file that is not an SQLite database
        or a database with tables that is not a store (a store is never made inside another
        program's database, nor switched to WAL mode)."""
        try:
            tables = {row[0] for row in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}  # fmt: skip
        except sqlite3.DatabaseError as exc:
            self.db.close()
            msg = f"{self.path}: not an hts_fast store ({exc})"
            raise ValueError(msg) from None
        if tables and not {"checkpoints", "layers", "summaries"} <= tables:
            self.db.close()
            msg = (f"{self.path}: not an hts_fast store (tables: {sorted(tables)}); "
                   "give --store a new file")  # fmt: skip
            raise ValueError(msg)

    def _read_schema(self) -> str:
        """The content hash of a store opened read-only (nothing is written); ValueError for
        a file that is not a store, or one of a newer hts_fast."""
        db = self.db
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError as exc:
            db.close()
            msg = f"{self.path}: not an hts_fast store ({exc})"
            raise ValueError(msg) from None
        meta = {}
        if "meta" in tables:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        columns = {row[1] for row in db.execute("PRAGMA table_info(checkpoints)")}
        if not {"checkpoints", "layers", "summaries"} <= tables:
            db.close()
            msg = f"{self.path}: not an hts_fast store (tables: {sorted(tables)})"
            raise ValueError(msg)
        self.first_layout = "options" in columns
        self.counts_failed = "n_failed" in columns
        self._layer_statuses = "status" in {
            row[1] for row in db.execute("PRAGMA table_info(layers)")}  # fmt: skip
        schema = int(meta.get("schema", 1 if self.first_layout else SCHEMA_VERSION))
        algorithm = meta.get("content_hash", "sha256")
        try:
            self._check_version(schema, algorithm)
        except ValueError:
            db.close()
            raise
        return algorithm

    def _check_version(self, schema: int, algorithm: str) -> None:
        """ValueError for a store of a newer hts_fast (a later schema or an unknown hash)."""
        if schema > SCHEMA_VERSION or algorithm not in HASH_ALGORITHMS:
            msg = (f"{self.path}: a store of a newer hts_fast (schema {schema}, content "
                   f"hash {algorithm!r}); upgrade hts_fast to use it")  # fmt: skip
            raise ValueError(msg)

    def _open_schema(self) -> str:
        """Create or migrate the tables (in one transaction, only when needed, so that opening
        a current store to read it writes nothing); return the content hash."""
        db = self.db
        try:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError:  # no meta table: a new or first-layout store
            meta = {}
        if (
            meta.get("schema") == str(SCHEMA_VERSION)
            and meta.get("content_hash") in HASH_ALGORITHMS
        ):
            return meta["content_hash"]
        db.execute("BEGIN IMMEDIATE")
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            legacy = "checkpoints" in tables and "options" in {
                row[1] for row in db.execute("PRAGMA table_info(checkpoints)")}  # fmt: skip
            stored = any(db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()
                         for t in ("checkpoints", "files") if t in tables)  # fmt: skip
            counted = "n_failed" in {
                row[1] for row in db.execute("PRAGMA table_info(checkpoints)")}  # fmt: skip
            for statement in _statements(SCHEMA):
                db.execute(statement)
            if legacy:
                for statement in _statements(_MIGRATE_1_TO_2):
                    db.execute(statement)
            elif "checkpoints" in tables and not counted:
                db.execute("ALTER TABLE checkpoints ADD COLUMN n_failed INTEGER")
            if "checkpoints" in tables and not counted:
                has_status = "status" in {row[1] for row in db.execute("PRAGMA table_info(layers)")}
                for statement in _statements(_COUNT_FAILED if has_status else _NO_FAILED):
                    db.execute(statement)
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            schema = int(meta.get("schema", SCHEMA_VERSION))
            # a store with rows and no record of its hash was made before hts128
            algorithm = meta.get("content_hash", "sha256" if stored else NEW_STORE_HASH)
            self._check_version(schema, algorithm)
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           [("schema", str(SCHEMA_VERSION)), ("content_hash", algorithm)])  # fmt: skip
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.close()
            raise
        return algorithm

    def close(self) -> None:
        try:
            # hashes cached while only skipping checkpoints
            if self._pending_files and not self.readonly:
                with self._transaction():
                    self._write_files()
        finally:
            self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error (the COMMIT's included).

        IMMEDIATE takes the write lock first, waiting up to the busy timeout for another
        writer (a reader that turned writer mid-transaction would fail at once instead)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:  # SQLite may have rolled back by itself
                self.db.execute("ROLLBACK")
            raise

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

    def _option_id(self, options: str, *, create: bool) -> int | None:
        """The id of these options (JSON text) in the options table; with ``create``, added
        if missing (inside the caller's transaction)."""
        known = self._option_ids.get(options)
        if known is not None:
            return known
        row = self.db.execute("SELECT id FROM options WHERE text = ?", (options,)).fetchone()
        if row is None:
            if not create:
                return None
            row = (self.db.execute("INSERT INTO options (text) VALUES (?)", (options,)).lastrowid,)
        self._option_ids[options] = int(row[0])
        return int(row[0])

    def statuses(self, options: str) -> dict[tuple[str, str], str]:
        """(path, content hash) -> status ("done", "partial" or "failed") of every checkpoint
        stored with these analysis options, read in one query."""
        option_id = self._option_id(options, create=False)
        rows = self.db.execute(
            "SELECT path, content_hash, status FROM checkpoints WHERE options_id = ?",
            (option_id,),
        )
        return {(path, digest): status for path, digest, status in rows}

    def remember_hash(self, path: str, size: int, mtime_ns: int, content_hash: str) -> None:
        """Cache a file's hash; written with the next checkpoint's transaction (or when the
        store closes): a cache, losing it costs a re-read."""
        self._pending_files.append((path, size, mtime_ns, content_hash))

    def _write_files(self) -> None:
        self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                            self._pending_files)  # fmt: skip
        self._pending_files = []

    # --- checkpoints ----------------------------------------------------------------------
    def status(self, path: str, content_hash: str, options: str) -> str | None:
        """ "done", "partial", "failed" or None (never analyzed with these options)."""
        row = self.db.execute(
            "SELECT status FROM checkpoints WHERE path = ? AND content_hash = ? AND options_id = ?",
            (path, content_hash, self._option_id(options, create=False)),
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
    ) -> str:  # fmt: skip
        """Store one checkpoint's result (replacing an earlier failed attempt) in one
        transaction: all of it or, if the process dies, none of it. Returns the status
        stored: "failed" without a table, "partial" when a layer of it failed, else "done".

        ``table``: the analyze() table, or its :func:`table_rows`; None for a failed
        checkpoint. ``files``: (path, size, mtime_ns, hash) of its files for the hash cache.
        """
        rows = table_rows(table) if isinstance(table, pd.DataFrame) else table
        self._pending_files.extend(files)
        try:
            with self._transaction():
                return self._save(path, content_hash, options, rows, summary, error, seconds)
        except BaseException:
            self._known.clear()  # a rolled-back ALTER TABLE leaves the caches stale
            self._inserts.clear()
            self._option_ids.clear()  # so may a rolled-back options row
            raise

    def _save(
        self, path: str, content_hash: str, options: str, rows: TableRows | None,
        summary: dict[str, float] | None, error: str, seconds: float,
    ) -> str:  # fmt: skip
        db = self.db
        if self._pending_files:
            self._write_files()
        option_id = self._option_id(options, create=True)
        old = db.execute(
            "SELECT id, status FROM checkpoints WHERE path = ? AND content_hash = ? AND "
            "options_id = ?", (path, content_hash, option_id),
        ).fetchone()  # fmt: skip
        if old:
            if old[1] != "failed":  # a failed checkpoint has no layers and no summary
                for name in ("layers", "summaries"):
                    db.execute(f"DELETE FROM {name} WHERE checkpoint_id = ?", old[:1])
            db.execute("DELETE FROM checkpoints WHERE id = ?", old[:1])
        n_failed = None if rows is None else failed_layers(rows)
        status = "failed" if n_failed is None else ("partial" if n_failed else "done")
        cursor = db.execute(
            "INSERT INTO checkpoints (path, content_hash, options_id, status, error, seconds, "
            "finished, n_layers, n_failed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (path, content_hash, option_id, status, error, _sql_value(seconds), time.time(),
             None if rows is None else len(rows[1]), n_failed),
        )  # fmt: skip
        checkpoint_id = int(cursor.lastrowid or 0)
        if rows is not None and rows[1]:
            self._insert_rows("layers", checkpoint_id, rows)
        if summary:
            self._insert_rows("summaries", checkpoint_id,
                              (list(summary), [tuple(summary.values())]))  # fmt: skip
        self._saves += 1
        if self._saves == self._kill_at_save:
            os.kill(os.getpid(), signal.SIGKILL)
        return status

    # --- reading back ---------------------------------------------------------------------
    def frame(self, table: str) -> pd.DataFrame:
        """A whole table; ``layers`` and ``summaries`` joined with their checkpoint's path."""
        if table == "checkpoints":  # the options as their JSON text, as in the first layout
            options = "c.options" if self.first_layout else "o.text AS options"
            join = "" if self.first_layout else "JOIN options o ON o.id = c.options_id "
            status, counted = "c.status", "c.n_failed"
            if not self.counts_failed:  # an older store read as it is: counted here
                status = ("CASE WHEN c.status = 'done' AND COALESCE(f.n, 0) > 0 "
                          "THEN 'partial' ELSE c.status END AS status")  # fmt: skip
                counted = ("CASE WHEN c.status = 'failed' THEN NULL ELSE COALESCE(f.n, 0) END "
                           "AS n_failed")  # fmt: skip
                failed = ("SELECT checkpoint_id, COUNT(*) AS n FROM layers WHERE status = "
                          "'failed' GROUP BY checkpoint_id" if self._layer_statuses
                          else "SELECT NULL AS checkpoint_id, 0 AS n")  # fmt: skip
                join += f"LEFT JOIN ({failed}) f ON f.checkpoint_id = c.id "
            query = (f"SELECT c.id, c.path, c.content_hash, {options}, {status}, c.error, "
                     f"c.seconds, c.finished, c.n_layers, {counted} FROM checkpoints c {join}"
                     "ORDER BY c.id")  # fmt: skip
            return pd.read_sql_query(query, self.db)
        query = (f"SELECT c.path, t.* FROM {table} t JOIN checkpoints c "
                 "ON c.id = t.checkpoint_id ORDER BY t.checkpoint_id, t.rowid")  # fmt: skip
        return pd.read_sql_query(query, self.db)

    def counts(self) -> dict[str, int]:
        """How many checkpoints have each status."""
        sizes = self.frame("checkpoints").groupby("status").size()
        return {str(k): int(v) for k, v in sizes.items()}

"""The results store: one SQLite file per study (default) or a PostgreSQL database.

Tables::

    meta         key, value                       the study definition, selection and evaluation (JSON)
    runs         model_num (primary key), dataset, model, parameter, value, value_index, seed,
                 config_json, config_hash, status (pending | running | done | failed), attempts,
                 created_at, started_at, finished_at, train_seconds, eval_seconds, worker,
                 versions_json, git_commit, error, traceback
    results      model_num, representation, metric, key, value      one row per number
                 primary key (model_num, representation, metric, key)
    evaluations  model_num, representation, metric, seconds, result_json   the metric's whole result

Only the study driver writes, one short transaction per finished model (its results are replaced as a
whole, so a repeated write cannot duplicate rows); workers return their results to it.  SQLite runs in
WAL mode with a busy timeout, so ``untwine study status`` and notebooks can read while a study runs.

``open_store(target)`` takes a study directory or ``.sqlite`` path, or a ``postgresql://`` URL; with a
URL, every study lives in its own schema (``untwine_<study id>``, or the URL's ``#schema`` fragment).
Non-finite numbers are stored as NULL.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STORE_NAME = "results.sqlite"
STATUSES = ("pending", "running", "done", "failed")

_RUN_COLUMNS = (
    "model_num",
    "dataset",
    "model",
    "parameter",
    "value",
    "value_index",
    "seed",
    "config_json",
    "config_hash",
    "status",
    "attempts",
    "created_at",
    "started_at",
    "finished_at",
    "train_seconds",
    "eval_seconds",
    "worker",
    "versions_json",
    "git_commit",
    "error",
    "traceback",
)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
        model_num BIGINT PRIMARY KEY,
        dataset TEXT NOT NULL,
        model TEXT NOT NULL,
        parameter TEXT NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        value_index INTEGER NOT NULL,
        seed INTEGER NOT NULL,
        config_json TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        train_seconds DOUBLE PRECISION,
        eval_seconds DOUBLE PRECISION,
        worker TEXT,
        versions_json TEXT,
        git_commit TEXT,
        error TEXT,
        traceback TEXT)""",
    """CREATE TABLE IF NOT EXISTS results (
        model_num BIGINT NOT NULL REFERENCES runs(model_num),
        representation TEXT NOT NULL,
        metric TEXT NOT NULL,
        key TEXT NOT NULL,
        value DOUBLE PRECISION,
        PRIMARY KEY (model_num, representation, metric, key))""",
    """CREATE TABLE IF NOT EXISTS evaluations (
        model_num BIGINT NOT NULL REFERENCES runs(model_num),
        representation TEXT NOT NULL,
        metric TEXT NOT NULL,
        seconds DOUBLE PRECISION,
        result_json TEXT,
        PRIMARY KEY (model_num, representation, metric))""",
    "CREATE INDEX IF NOT EXISTS results_metric ON results (metric, key)",
)


class ConfigMismatchError(ValueError):
    """The store already holds this model_num with a different training config."""


def flatten_values(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float | None]]:
    """Numbers of a (nested) metric ``values`` dict as ``(key, number)``; nested keys joined with ``/``,
    list items by index; strings and other non-numbers skipped; NaN/inf -> None."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten_values(value, name + "/")
        elif isinstance(value, list | tuple):
            yield from flatten_values({str(i): v for i, v in enumerate(value)}, name + "/")
        elif isinstance(value, bool):
            yield name, float(value)
        elif isinstance(value, int | float) or (hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0):
            number = float(value)
            yield name, number if math.isfinite(number) else None


class ResultStore:
    """Common SQL over a DB-API connection; subclasses provide the connection and the placeholder."""

    placeholder = "?"
    location = ""  # for people: path, or URL without password plus schema
    target = ""  # for open_store: reopens this store (never holds a password)

    def __init__(self) -> None:
        self._create_schema()

    # -- plumbing -----------------------------------------------------------------------------------
    def _connection(self):
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self.placeholder) if self.placeholder != "?" else sql

    def _begin(self, connection, write: bool) -> None:
        pass

    @contextmanager
    def transaction(self, write: bool = True):
        """One transaction; ``write=False`` for reads (SQLite then takes no write lock)."""
        connection = self._connection()
        self._begin(connection, write)
        try:
            cursor = connection.cursor()
            yield _Cursor(cursor, self)
            connection.commit()
        except BaseException:
            connection.rollback()
            raise

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self.transaction(write=False) as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def _create_schema(self) -> None:
        with self.transaction() as cursor:
            for statement in _SCHEMA:
                cursor.execute(statement)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- meta -------------------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as cursor:
            cursor.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value, sort_keys=True)),
            )

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    # -- runs -------------------------------------------------------------------------------------------
    def register_runs(self, specs: Iterable[Any]) -> int:
        """Insert runs not yet in the store as ``pending``; check the config of those that are.

        Returns the number of new runs.  A model_num stored with another config hash raises
        :class:`ConfigMismatchError` (a different --steps or --set into the same study directory).
        """
        specs = list(specs)
        existing = dict(self._query("SELECT model_num, config_hash FROM runs"))
        now = time.time()
        new = 0
        with self.transaction() as cursor:
            for spec in specs:
                stored = existing.get(spec.model_num)
                if stored is not None:
                    if stored != spec.config_hash:
                        raise ConfigMismatchError(
                            f"model_num {spec.model_num} is already stored with another training config "
                            f"(hash {stored}, now {spec.config_hash}); use a new study directory for other "
                            "settings (--steps, --set) or delete the old results"
                        )
                    continue
                cursor.execute(
                    "INSERT INTO runs (model_num, dataset, model, parameter, value, value_index, seed, config_json, "
                    "config_hash, status, attempts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?)",
                    (
                        spec.model_num,
                        spec.dataset,
                        spec.model,
                        spec.parameter,
                        spec.value,
                        spec.value_index,
                        spec.seed,
                        json.dumps(spec.config, sort_keys=True),
                        spec.config_hash,
                        now,
                    ),
                )
                new += 1
        return new

    def runs(self, model_nums: Iterable[int] | None = None) -> list[dict[str, Any]]:
        rows = self._query(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs ORDER BY model_num")
        out = [dict(zip(_RUN_COLUMNS, row, strict=True)) for row in rows]
        if model_nums is not None:
            wanted = set(model_nums)
            out = [r for r in out if r["model_num"] in wanted]
        return out

    def status_counts(self, model_nums: Iterable[int] | None = None) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for run in self.runs(model_nums):
            counts[run["status"]] = counts.get(run["status"], 0) + 1
        return counts

    def mark_running(self, model_num: int, worker: str = "") -> None:
        with self.transaction() as cursor:
            cursor.execute(
                "UPDATE runs SET status = 'running', attempts = attempts + 1, started_at = ?, worker = ?, "
                "error = NULL, traceback = NULL WHERE model_num = ?",
                (time.time(), worker, model_num),
            )

    def reset_interrupted(self) -> int:
        """Runs left ``running`` by a killed driver go back to ``pending``; returns how many."""
        with self.transaction() as cursor:
            cursor.execute("UPDATE runs SET status = 'pending' WHERE status = 'running'")
            return cursor.rowcount

    def record_failure(
        self,
        model_num: int,
        error: str,
        traceback: str = "",
        worker: str = "",
        seconds: Mapping[str, float] | None = None,
    ) -> None:
        seconds = seconds or {}
        with self.transaction() as cursor:
            cursor.execute(
                "UPDATE runs SET status = 'failed', finished_at = ?, error = ?, traceback = ?, worker = ?, "
                "train_seconds = ?, eval_seconds = ? WHERE model_num = ?",
                (time.time(), error, traceback, worker, seconds.get("train"), seconds.get("eval"), model_num),
            )

    def record_success(self, model_num: int, payload: Mapping[str, Any]) -> None:
        """Store a finished model: its results replace any earlier ones, and the run becomes ``done``.

        ``payload``: ``evaluations`` -- a list of ``{representation, metric, seconds, result}`` (``result``
        with a ``values`` dict); ``train_seconds``, ``eval_seconds``, ``versions``, ``git_commit``, ``worker``.
        """
        rows, evaluations = [], []
        for item in payload.get("evaluations", ()):
            rep, metric = item["representation"], item["metric"]
            values = (item.get("result") or {}).get("values", {})
            for key, value in flatten_values(values):
                rows.append((model_num, rep, metric, key, value))
            evaluations.append(
                (
                    model_num,
                    rep,
                    metric,
                    item.get("seconds"),
                    json.dumps(_jsonable(item.get("result")), sort_keys=True, allow_nan=True),
                )
            )
        with self.transaction() as cursor:
            cursor.execute("DELETE FROM results WHERE model_num = ?", (model_num,))
            cursor.execute("DELETE FROM evaluations WHERE model_num = ?", (model_num,))
            cursor.executemany(
                "INSERT INTO results (model_num, representation, metric, key, value) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            cursor.executemany(
                "INSERT INTO evaluations (model_num, representation, metric, seconds, result_json) "
                "VALUES (?, ?, ?, ?, ?)",
                evaluations,
            )
            cursor.execute(
                "UPDATE runs SET status = 'done', finished_at = ?, train_seconds = ?, eval_seconds = ?, worker = ?, "
                "versions_json = ?, git_commit = ?, error = NULL, traceback = NULL WHERE model_num = ?",
                (
                    time.time(),
                    payload.get("train_seconds"),
                    payload.get("eval_seconds"),
                    payload.get("worker", ""),
                    json.dumps(payload.get("versions") or {}, sort_keys=True),
                    payload.get("git_commit"),
                    model_num,
                ),
            )

    def evaluated(self, model_num: int) -> set[tuple[str, str]]:
        """(representation, metric) pairs stored for a run."""
        return {
            (r, m)
            for r, m in self._query(
                "SELECT representation, metric FROM evaluations WHERE model_num = ?", (model_num,)
            )
        }

    def evaluated_all(self) -> dict[int, set[tuple[str, str]]]:
        out: dict[int, set[tuple[str, str]]] = {}
        for num, rep, metric in self._query("SELECT model_num, representation, metric FROM evaluations"):
            out.setdefault(int(num), set()).add((rep, metric))
        return out

    # -- reading ------------------------------------------------------------------------------------------
    def result_rows(self) -> list[tuple]:
        return self._query(
            "SELECT model_num, representation, metric, key, value FROM results "
            "ORDER BY model_num, representation, metric, key"
        )

    def num_results(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM results")[0][0])

    def runs_frame(self):
        """A pandas DataFrame with one row per run (config and versions as JSON strings)."""
        import pandas as pd

        return pd.DataFrame(self.runs(), columns=list(_RUN_COLUMNS))

    def results_frame(self, wide: bool = False):
        """Results as a pandas DataFrame joined with the run's grid coordinates.

        Long (default): one row per number -- model_num, dataset, model, parameter, value, value_index, seed,
        representation, metric, key, score.  ``wide=True``: one row per run and one column per
        ``representation/metric/key``.
        """
        import pandas as pd

        runs = pd.DataFrame(self.runs(), columns=list(_RUN_COLUMNS))[
            ["model_num", "dataset", "model", "parameter", "value", "value_index", "seed", "status"]
        ]
        results = pd.DataFrame(
            self.result_rows(), columns=["model_num", "representation", "metric", "key", "score"]
        )
        results["score"] = results["score"].astype(float)
        frame = runs.merge(results, on="model_num", how="inner")
        if not wide:
            return frame
        frame = frame.assign(column=frame["representation"] + "/" + frame["metric"] + "/" + frame["key"])
        index = ["model_num", "dataset", "model", "parameter", "value", "value_index", "seed"]
        if frame.empty:
            return pd.DataFrame(columns=index)
        table = frame.set_index([*index, "column"])["score"].unstack("column")
        table.columns.name = None
        return table.reset_index().sort_values("model_num", ignore_index=True)

    # -- export -------------------------------------------------------------------------------------------
    def export(self, out_dir: str | Path, formats: Sequence[str] = ("csv", "parquet")) -> list[Path]:
        """Write ``runs``, ``results`` (long) and ``results_wide`` tables as CSV and/or Parquet."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tables = {
            "runs": self.runs_frame(),
            "results": self.results_frame(),
            "results_wide": self.results_frame(wide=True),
        }
        written: list[Path] = []
        for fmt in formats:
            if fmt not in ("csv", "parquet"):
                raise ValueError(f"export format must be csv or parquet, got {fmt!r}")
            if fmt == "parquet":
                try:
                    import pyarrow  # noqa: F401
                except ImportError:
                    raise RuntimeError(
                        "Parquet export needs pyarrow: pip install 'untwine[parquet]' "
                        "(or export with --format csv)"
                    ) from None
            for name, frame in tables.items():
                path = out / f"{name}.{fmt}"
                from untwine.utils.io import atomic_open

                with atomic_open(path, "wb") as handle:
                    if fmt == "csv":
                        handle.write(frame.to_csv(index=False).encode("utf-8"))
                    else:
                        frame.to_parquet(handle, index=False)
                written.append(path)
        return written


class _Cursor:
    """A DB-API cursor that rewrites ``?`` placeholders for the backend."""

    def __init__(self, cursor, store: ResultStore):
        self.cursor, self.store = cursor, store

    def execute(self, sql: str, params: Sequence[Any] = ()):
        self.cursor.execute(self.store._sql(sql), tuple(params))
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]):
        if rows:
            self.cursor.executemany(self.store._sql(sql), [tuple(r) for r in rows])
        return self

    def fetchall(self) -> list[tuple]:
        return [tuple(r) for r in self.cursor.fetchall()]

    @property
    def rowcount(self) -> int:
        return self.cursor.rowcount


class SQLiteStore(ResultStore):
    """One SQLite file in WAL mode; connections are opened per process (safe after fork/spawn)."""

    def __init__(self, path: str | Path, timeout: float = 60.0):
        self.path = Path(path)
        self.location = str(self.path)
        self.target = str(self.path.resolve())
        self.timeout = timeout
        self._conn = None
        self._pid = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__()

    def _connection(self):
        import os
        import sqlite3

        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._conn, self._pid = _SQLiteConnection(conn), os.getpid()
        return self._conn

    def _begin(self, connection, write: bool) -> None:
        connection.begin(write)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.raw.close()
            self._conn = None


class _SQLiteConnection:
    """sqlite3 in autocommit mode with explicit BEGIN IMMEDIATE, so a transaction takes the write lock
    up front instead of failing on upgrade when another process writes."""

    def __init__(self, raw):
        self.raw = raw
        self.open = False

    def begin(self, write: bool) -> None:
        if write and not self.open:
            self.raw.execute("BEGIN IMMEDIATE")
            self.open = True

    def cursor(self):
        return self.raw.cursor()

    def commit(self):
        if self.open:
            self.raw.execute("COMMIT")
            self.open = False

    def rollback(self):
        if self.open:
            self.raw.execute("ROLLBACK")
            self.open = False


class PostgresStore(ResultStore):
    """A PostgreSQL database (psycopg 3); each study in its own schema."""

    placeholder = "%s"

    def __init__(self, url: str, schema: str):
        try:
            import psycopg
        except ImportError:
            raise RuntimeError("a PostgreSQL store needs psycopg: pip install 'untwine[postgres]'") from None
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise ValueError(f"schema name must be lower-case letters, digits and _, got {schema!r}")
        self.url, self.schema = url, schema
        self.location = f"{_redact(url)} (schema {schema})"
        self.target = _without_password(url) + "#" + schema  # the password: PGPASSWORD or ~/.pgpass
        self._psycopg = psycopg
        self._conn = None
        self._pid = None
        super().__init__()

    def _connection(self):
        import os

        if self._conn is None or self._pid != os.getpid() or self._conn.closed:
            conn = self._psycopg.connect(self.url, autocommit=False)
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                cursor.execute(f'SET search_path TO "{self.schema}"')
            conn.commit()
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _without_password(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1@", url)


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def _jsonable(value: Any) -> Any:
    from untwine.utils.io import to_jsonable

    return to_jsonable(value)


def is_database_url(target: str | Path) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def open_store(target: str | Path, study_id: str | None = None) -> ResultStore:
    """A store from a study directory (``DIR/results.sqlite``), a ``.sqlite``/``.db`` file or a
    ``postgresql://`` URL (schema ``untwine_<study_id>`` unless the URL ends in ``#schema``)."""
    text = str(target)
    if is_database_url(text):
        url, _, schema = text.partition("#")
        if not schema:
            schema = "untwine_" + re.sub(r"[^a-z0-9_]", "_", (study_id or "study").lower())
        return PostgresStore(url, schema[:63])
    path = Path(text)
    if path.suffix in (".sqlite", ".db", ".sqlite3"):
        return SQLiteStore(path)
    return SQLiteStore(path / STORE_NAME)

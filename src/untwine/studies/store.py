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

Both SQL dialects go through SQLAlchemy Core: the tables are :class:`sqlalchemy.Table` objects of one
``MetaData`` (created with ``create_all``, which leaves existing tables alone), every write is one
``engine.begin()`` transaction, and the one upsert (``meta``) uses the dialect's own
``insert(...).on_conflict_do_update``.  PostgreSQL reaches the study's schema through the engine's
``schema_translate_map`` (the tables are declared without a schema) and connects with psycopg 3.

What SQLAlchemy leaves to us, and why:

* SQLite's write lock is taken up front (``BEGIN IMMEDIATE``) with SQLAlchemy's documented recipe for
  sqlite3 before Python 3.12 (``isolation_level = None`` on connect, our own ``BEGIN`` in the ``begin``
  event): sqlite3's own deferred ``BEGIN`` would fail with "database is locked" when a reader's
  transaction has to be upgraded while another process writes.  Reads use a plain (deferred) ``BEGIN``.
* The WAL journal, ``synchronous = NORMAL`` and foreign keys are per-connection PRAGMAs set in the
  ``connect`` event; SQLAlchemy has no option for them.
* A forked process must not use its parent's pooled connections: the engine's pool is dropped
  (``Engine.dispose(close=False)``, as SQLAlchemy advises for multiprocessing) when the store is first
  used in another process.

A SQLite error (a file that is not a database, a malformed or truncated one, a locked or unreadable one)
comes out of every read and write as a :class:`StoreError` that names the file and says what to do; the
failed statement changes nothing.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url

from untwine.studies.records import Evaluation, ModelResult

STORE_NAME = "results.sqlite"
STATUSES = ("pending", "running", "done", "failed")

# The column types are spelled as in the first stores (BIGINT, TEXT, DOUBLE PRECISION, INTEGER), so that
# existing results.sqlite files and PostgreSQL schemas hold exactly what new ones do.
_DOUBLE = sa.DOUBLE_PRECISION(asdecimal=False)
METADATA = sa.MetaData()

META = sa.Table(
    "meta",
    METADATA,
    sa.Column("key", sa.TEXT, primary_key=True),
    sa.Column("value", sa.TEXT, nullable=False),
)

RUNS = sa.Table(
    "runs",
    METADATA,
    sa.Column("model_num", sa.BIGINT, primary_key=True, autoincrement=False),
    sa.Column("dataset", sa.TEXT, nullable=False),
    sa.Column("model", sa.TEXT, nullable=False),
    sa.Column("parameter", sa.TEXT, nullable=False),
    sa.Column("value", _DOUBLE, nullable=False),
    sa.Column("value_index", sa.INTEGER, nullable=False),
    sa.Column("seed", sa.INTEGER, nullable=False),
    sa.Column("config_json", sa.TEXT, nullable=False),
    sa.Column("config_hash", sa.TEXT, nullable=False),
    sa.Column("status", sa.TEXT, nullable=False),
    sa.Column("attempts", sa.INTEGER, nullable=False, server_default=sa.text("0")),
    sa.Column("created_at", _DOUBLE),
    sa.Column("started_at", _DOUBLE),
    sa.Column("finished_at", _DOUBLE),
    sa.Column("train_seconds", _DOUBLE),
    sa.Column("eval_seconds", _DOUBLE),
    sa.Column("worker", sa.TEXT),
    sa.Column("versions_json", sa.TEXT),
    sa.Column("git_commit", sa.TEXT),
    sa.Column("error", sa.TEXT),
    sa.Column("traceback", sa.TEXT),
)

RESULTS = sa.Table(
    "results",
    METADATA,
    sa.Column("model_num", sa.BIGINT, sa.ForeignKey("runs.model_num"), primary_key=True, autoincrement=False),
    sa.Column("representation", sa.TEXT, primary_key=True),
    sa.Column("metric", sa.TEXT, primary_key=True),
    sa.Column("key", sa.TEXT, primary_key=True),
    sa.Column("value", _DOUBLE),
    sa.Index("results_metric", "metric", "key"),
)

EVALUATIONS = sa.Table(
    "evaluations",
    METADATA,
    sa.Column("model_num", sa.BIGINT, sa.ForeignKey("runs.model_num"), primary_key=True, autoincrement=False),
    sa.Column("representation", sa.TEXT, primary_key=True),
    sa.Column("metric", sa.TEXT, primary_key=True),
    sa.Column("seconds", _DOUBLE),
    sa.Column("result_json", sa.TEXT),
)

# Repeated evaluations (the JMLR extension of the study): one row per number, keyed by the evaluation
# seed and the training-sample size besides (model, representation, metric, key); they never overwrite
# the study's own evaluation, which stays in RESULTS.  Added to existing stores by create_all.
REPEATS = sa.Table(
    "repeats",
    METADATA,
    sa.Column("model_num", sa.BIGINT, sa.ForeignKey("runs.model_num"), primary_key=True, autoincrement=False),
    sa.Column("representation", sa.TEXT, primary_key=True),
    sa.Column("metric", sa.TEXT, primary_key=True),
    sa.Column("eval_seed", sa.BIGINT, primary_key=True, autoincrement=False),
    sa.Column("num_train", sa.BIGINT, primary_key=True, autoincrement=False),
    sa.Column("key", sa.TEXT, primary_key=True),
    sa.Column("value", _DOUBLE),
)

_RUN_COLUMNS = tuple(RUNS.columns.keys())
_RESULT_COLUMNS = (
    RESULTS.c.model_num,
    RESULTS.c.representation,
    RESULTS.c.metric,
    RESULTS.c.key,
    RESULTS.c.value,
)


class ConfigMismatchError(ValueError):
    """The store already holds this model_num with a different training config."""


class StoreError(RuntimeError):
    """A SQLite results store that cannot be read or written (corrupt, not a database, locked, ...)."""


# SQLite's messages for a file whose pages cannot be trusted (not a database, truncated, overwritten).
_CORRUPT_MESSAGES = ("file is not a database", "malformed", "not a database", "file is encrypted")


def _sqlite_error(path: str, error: BaseException) -> StoreError:
    """A one-line :class:`StoreError` for a SQLite error on the store at ``path``."""
    reason = str(getattr(error, "orig", None) or error).splitlines()[0]
    if any(text in reason for text in _CORRUPT_MESSAGES):
        study_dir = Path(path).parent
        return StoreError(
            f"the results store {path} is damaged or not a SQLite database ({reason}); it was left as "
            f"it is. Restore it from a backup, or move it away and run `untwine study run --dir "
            f"{study_dir}` again to rebuild it from the run directories (trained models and metric "
            "files are reused)"
        )
    return StoreError(f"the results store {path} cannot be used: {reason}")


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


# The INSERT construct of each dialect the store runs on (for its ON CONFLICT upsert).
_DIALECT_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
# Execution option read by the SQLite ``begin`` hook: the statement that opens the transaction.
_SQLITE_BEGIN = "untwine_sqlite_begin"


class ResultStore:
    """The store's reads and writes on a SQLAlchemy engine; build one with :func:`open_store`.

    ``location`` names the store for people (path, or URL without password plus schema); ``target``
    reopens it with ``open_store`` (never holds a password); ``schema`` is the PostgreSQL schema (None
    for SQLite).
    """

    def __init__(self, engine: Engine, location: str, target: str, schema: str | None = None):
        self.engine, self.location, self.target, self.schema = engine, location, target, schema
        self._insert = _DIALECT_INSERTS[engine.dialect.name]
        self._pid = os.getpid()
        with self._writing() as connection:
            if schema is not None:
                connection.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
            METADATA.create_all(connection)

    # -- plumbing -----------------------------------------------------------------------------------
    def _engine(self) -> Engine:
        if self._pid != os.getpid():  # a forked child: leave the parent's pooled connections alone
            self.engine.dispose(close=False)
            self._pid = os.getpid()
        return self.engine

    @contextmanager
    def _naming_sqlite_errors(self) -> Iterator[None]:
        """SQLite errors become a :class:`StoreError` naming the file (PostgreSQL's pass unchanged:
        their messages name the server)."""
        try:
            yield
        except sa.exc.DBAPIError as error:
            if self.engine.dialect.name != "sqlite":
                raise
            raise _sqlite_error(self.location, error) from error

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """One write transaction (on SQLite it takes the write lock up front); commits on success."""
        with self._naming_sqlite_errors(), self._engine().connect() as connection:
            connection.execution_options(**{_SQLITE_BEGIN: "BEGIN IMMEDIATE"})
            with connection.begin():
                yield connection

    def _read(self, statement) -> list[tuple]:
        with self._naming_sqlite_errors(), self._engine().connect() as connection:
            return [tuple(row) for row in connection.execute(statement)]

    def check_integrity(self) -> None:
        """Raise :class:`StoreError` if SQLite finds a damaged page anywhere in the file (``PRAGMA
        quick_check``: it reads every page, so it costs about one read of the file; nothing for
        PostgreSQL).  The driver calls it before its first write, so that it never writes into a damaged
        file; readers meet the damage, if any, in the pages they read."""
        if self.engine.dialect.name != "sqlite":
            return
        problems = [row[0] for row in self._read(sa.text("PRAGMA quick_check"))]
        if problems != ["ok"]:
            detail = " ".join(" ".join(problems).split())  # one line: quick_check's rows hold newlines
            raise _sqlite_error(self.location, RuntimeError(f"malformed: {detail[:200]}"))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- meta -------------------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        insert = self._insert(META).values(key=key, value=json.dumps(value, sort_keys=True))
        with self._writing() as connection:
            connection.execute(
                insert.on_conflict_do_update(
                    index_elements=[META.c.key], set_={"value": insert.excluded.value}
                )
            )

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._read(sa.select(META.c.value).where(META.c.key == key))
        return json.loads(rows[0][0]) if rows else default

    # -- runs -------------------------------------------------------------------------------------------
    def check_configs(self, specs: Iterable[Any]) -> dict[int, str]:
        """Raise :class:`ConfigMismatchError` if a model_num of ``specs`` is stored with another config
        hash (a different --steps or --set into the same study directory); writes nothing.  Returns
        the stored ``{model_num: config_hash}``."""
        existing = dict(self._read(sa.select(RUNS.c.model_num, RUNS.c.config_hash)))
        for spec in specs:
            stored = existing.get(spec.model_num)
            if stored is not None and stored != spec.config_hash:
                raise ConfigMismatchError(
                    f"model_num {spec.model_num} is already stored with another training config "
                    f"(hash {stored}, now {spec.config_hash}); use a new study directory for other "
                    "settings (--steps, --set) or delete the old results"
                )
        return existing

    def register_runs(self, specs: Iterable[Any]) -> int:
        """Insert runs not yet in the store as ``pending``, after :meth:`check_configs` of all of them.

        Returns the number of new runs.
        """
        specs = list(specs)
        existing = self.check_configs(specs)
        now = time.time()
        new_runs = []
        for spec in specs:
            if spec.model_num not in existing:
                new_runs.append(
                    {
                        "model_num": spec.model_num,
                        "dataset": spec.dataset,
                        "model": spec.model,
                        "parameter": spec.parameter,
                        "value": spec.value,
                        "value_index": spec.value_index,
                        "seed": spec.seed,
                        "config_json": json.dumps(spec.config, sort_keys=True),
                        "config_hash": spec.config_hash,
                        "status": "pending",
                        "attempts": 0,
                        "created_at": now,
                    }
                )
        if new_runs:
            with self._writing() as connection:
                connection.execute(sa.insert(RUNS), new_runs)
        return len(new_runs)

    def runs(self, model_nums: Iterable[int] | None = None) -> list[dict[str, Any]]:
        rows = self._read(sa.select(RUNS).order_by(RUNS.c.model_num))
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

    def _update_run(self, model_num: int, **values: Any) -> None:
        with self._writing() as connection:
            connection.execute(sa.update(RUNS).where(RUNS.c.model_num == model_num).values(**values))

    def mark_running(self, model_num: int, worker: str = "") -> None:
        self._update_run(
            model_num,
            status="running",
            attempts=RUNS.c.attempts + 1,
            started_at=time.time(),
            worker=worker,
            error=None,
            traceback=None,
        )

    def reset_interrupted(self) -> int:
        """Runs left ``running`` by a killed driver go back to ``pending``; returns how many."""
        with self._writing() as connection:
            result = connection.execute(
                sa.update(RUNS).where(RUNS.c.status == "running").values(status="pending")
            )
            return result.rowcount

    def record(self, result: ModelResult) -> None:
        """Store a finished model (``done``: its evaluations replace any earlier ones, so a repeated
        write cannot duplicate rows) or a failed one (``failed``, with its error and traceback)."""
        if not result.ok:
            self._update_run(
                result.model_num,
                status="failed",
                finished_at=time.time(),
                error=result.error,
                traceback=result.traceback,
                worker=result.worker,
                train_seconds=result.train_seconds,
                eval_seconds=result.eval_seconds,
            )
            return
        model_num = result.model_num
        results, evaluations = [], []
        for evaluation in result.evaluations:
            cell = {
                "model_num": model_num,
                "representation": evaluation.representation,
                "metric": evaluation.metric,
            }
            values = (evaluation.result or {}).get("values", {})
            results.extend({**cell, "key": key, "value": value} for key, value in flatten_values(values))
            evaluations.append(
                {
                    **cell,
                    "seconds": evaluation.seconds,
                    "result_json": json.dumps(
                        _jsonable(dict(evaluation.result)), sort_keys=True, allow_nan=True
                    ),
                }
            )
        with self._writing() as connection:
            connection.execute(sa.delete(RESULTS).where(RESULTS.c.model_num == model_num))
            connection.execute(sa.delete(EVALUATIONS).where(EVALUATIONS.c.model_num == model_num))
            if results:
                connection.execute(sa.insert(RESULTS), results)
            if evaluations:
                connection.execute(sa.insert(EVALUATIONS), evaluations)
            connection.execute(
                sa.update(RUNS)
                .where(RUNS.c.model_num == model_num)
                .values(
                    status="done",
                    finished_at=time.time(),
                    train_seconds=result.train_seconds,
                    eval_seconds=result.eval_seconds,
                    worker=result.worker,
                    versions_json=json.dumps(dict(result.versions), sort_keys=True),
                    git_commit=result.git_commit,
                    error=None,
                    traceback=None,
                )
            )

    def record_evaluation(self, model_num: int, evaluation: Evaluation) -> None:
        """Add or replace one (representation, metric) result of a finished run, leaving its other
        results alone (a study-wide step such as UDR adds its score after the runs are done)."""
        cell = {
            "model_num": model_num,
            "representation": evaluation.representation,
            "metric": evaluation.metric,
        }
        values = (evaluation.result or {}).get("values", {})
        rows = [{**cell, "key": key, "value": value} for key, value in flatten_values(values)]
        with self._writing() as connection:
            for table in (RESULTS, EVALUATIONS):
                connection.execute(
                    sa.delete(table).where(
                        table.c.model_num == model_num,
                        table.c.representation == evaluation.representation,
                        table.c.metric == evaluation.metric,
                    )
                )
            if rows:
                connection.execute(sa.insert(RESULTS), rows)
            connection.execute(
                sa.insert(EVALUATIONS),
                [
                    {
                        **cell,
                        "seconds": evaluation.seconds,
                        "result_json": json.dumps(
                            _jsonable(dict(evaluation.result)), sort_keys=True, allow_nan=True
                        ),
                    }
                ],
            )

    def record_repeat(
        self, model_num: int, representation: str, metric: str, eval_seed: int, num_train: int, values
    ) -> None:
        """Store one repeated evaluation (replacing the same key's earlier numbers, if any)."""
        cell = {
            "model_num": model_num,
            "representation": representation,
            "metric": metric,
            "eval_seed": int(eval_seed),
            "num_train": int(num_train),
        }
        rows = [{**cell, "key": key, "value": value} for key, value in flatten_values(values)]
        with self._writing() as connection:
            connection.execute(
                sa.delete(REPEATS).where(*(REPEATS.c[name] == value for name, value in cell.items()))
            )
            if rows:
                connection.execute(sa.insert(REPEATS), rows)

    def repeated(self) -> set[tuple[int, str, str, int, int]]:
        """The (model_num, representation, metric, eval_seed, num_train) keys stored."""
        columns = [REPEATS.c[c] for c in ("model_num", "representation", "metric", "eval_seed", "num_train")]
        return {tuple(row) for row in self._read(sa.select(*columns).distinct())}

    def repeats_frame(self):
        """A pandas DataFrame of the repeated evaluations with the runs' grid coordinates."""
        import pandas as pd

        statement = sa.select(
            REPEATS,
            RUNS.c.dataset,
            RUNS.c.model,
            RUNS.c.parameter,
            RUNS.c.value.label("hyperparameter_value"),
            RUNS.c.seed,
        ).join(RUNS, RUNS.c.model_num == REPEATS.c.model_num)
        columns = [*REPEATS.columns.keys(), "dataset", "model", "parameter", "hyperparameter_value", "seed"]
        return pd.DataFrame(self._read(statement), columns=columns)

    def evaluated(self, model_num: int) -> set[tuple[str, str]]:
        """(representation, metric) pairs stored for a run."""
        statement = sa.select(EVALUATIONS.c.representation, EVALUATIONS.c.metric).where(
            EVALUATIONS.c.model_num == model_num
        )
        return set(self._read(statement))

    def evaluated_all(self) -> dict[int, set[tuple[str, str]]]:
        out: dict[int, set[tuple[str, str]]] = {}
        statement = sa.select(EVALUATIONS.c.model_num, EVALUATIONS.c.representation, EVALUATIONS.c.metric)
        for num, rep, metric in self._read(statement):
            out.setdefault(int(num), set()).add((rep, metric))
        return out

    # -- reading ------------------------------------------------------------------------------------------
    def result_rows(self) -> list[tuple]:
        return self._read(sa.select(*_RESULT_COLUMNS).order_by(*_RESULT_COLUMNS[:4]))

    def num_results(self) -> int:
        return int(self._read(sa.select(sa.func.count()).select_from(RESULTS))[0][0])

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


def sqlite_engine(path: str | Path, timeout: float = 60.0) -> Engine:
    """An engine on one SQLite file in WAL mode, waiting up to ``timeout`` seconds for another
    process's write lock; write transactions take the lock up front (see the module docstring)."""
    engine = sa.create_engine(URL.create("sqlite", database=str(path)), connect_args={"timeout": timeout})

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # sqlite3 emits no BEGIN of its own; _begin does
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @sa.event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql(connection.get_execution_options().get(_SQLITE_BEGIN, "BEGIN"))

    return engine


def postgres_engine(url: str | URL, schema: str) -> Engine:
    """An engine on a PostgreSQL database (psycopg 3) whose tables live in ``schema``."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise RuntimeError("a PostgreSQL store needs psycopg: pip install 'untwine[postgres]'") from None
    url = make_url(url).set(drivername="postgresql+psycopg")
    return sa.create_engine(url).execution_options(schema_translate_map={None: schema})


def is_database_url(target: str | Path) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def sqlite_path(target: str | Path) -> Path | None:
    """The SQLite file :func:`open_store` opens for ``target`` (None for a database URL): a ``.sqlite``,
    ``.db`` or ``.sqlite3`` path as given, any other path as a study directory holding ``results.sqlite``."""
    if is_database_url(target):
        return None
    path = Path(target)
    return path if path.suffix in (".sqlite", ".db", ".sqlite3") else path / STORE_NAME


def open_store(target: str | Path, study_id: str | None = None) -> ResultStore:
    """A store from a study directory (``DIR/results.sqlite``), a ``.sqlite``/``.db`` file or a
    ``postgresql://`` URL (schema ``untwine_<study id>`` unless the URL ends in ``#schema``)."""
    text = str(target)
    if is_database_url(text):
        address, _, schema = text.partition("#")
        if not schema:
            schema = "untwine_" + re.sub(r"[^a-z0-9_]", "_", (study_id or "study").lower())
        schema = schema[:63]
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise ValueError(f"schema name must be lower-case letters, digits and _, got {schema!r}")
        url = make_url(address)
        return ResultStore(
            postgres_engine(url, schema),
            location=f"{url.render_as_string(hide_password=True)} (schema {schema})",
            # the password comes from PGPASSWORD or ~/.pgpass when the study is reopened (URL.set cannot
            # unset a field: it skips None, hence the namedtuple _replace)
            target=url._replace(password=None).render_as_string(hide_password=False) + "#" + schema,
            schema=schema,
        )
    path = sqlite_path(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    return ResultStore(sqlite_engine(path), location=str(path), target=str(path.resolve()))


def _jsonable(value: Any) -> Any:
    from untwine.utils.io import to_jsonable

    return to_jsonable(value)

"""The results store on SQLite: files written by the first (hand-written SQL) store still open and keep
their rows, the schema's column names and types, the write lock taken up front, and a forked process."""

import os
import re
import sqlite3

import pytest
import sqlalchemy as sa

from untwine.studies.definitions import SMOKE_TEST
from untwine.studies.grid import Selection, expand
from untwine.studies.records import Evaluation, ModelResult
from untwine.studies.store import STORE_NAME, ResultStore, StoreError, open_store, sqlite_engine

# The DDL of the first store (untwine before SQLAlchemy), verbatim: its files must keep working.
FIRST_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS runs (
        model_num BIGINT PRIMARY KEY, dataset TEXT NOT NULL, model TEXT NOT NULL, parameter TEXT NOT NULL,
        value DOUBLE PRECISION NOT NULL, value_index INTEGER NOT NULL, seed INTEGER NOT NULL,
        config_json TEXT NOT NULL, config_hash TEXT NOT NULL, status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, created_at DOUBLE PRECISION, started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION, train_seconds DOUBLE PRECISION, eval_seconds DOUBLE PRECISION,
        worker TEXT, versions_json TEXT, git_commit TEXT, error TEXT, traceback TEXT)""",
    """CREATE TABLE IF NOT EXISTS results (
        model_num BIGINT NOT NULL REFERENCES runs(model_num), representation TEXT NOT NULL,
        metric TEXT NOT NULL, key TEXT NOT NULL, value DOUBLE PRECISION,
        PRIMARY KEY (model_num, representation, metric, key))""",
    """CREATE TABLE IF NOT EXISTS evaluations (
        model_num BIGINT NOT NULL REFERENCES runs(model_num), representation TEXT NOT NULL,
        metric TEXT NOT NULL, seconds DOUBLE PRECISION, result_json TEXT,
        PRIMARY KEY (model_num, representation, metric))""",
    "CREATE INDEX IF NOT EXISTS results_metric ON results (metric, key)",
)

# The one table added since the first schema (repeated evaluations, issue 12); opening an older store
# creates it and touches nothing else.
REPEATS_COLUMNS = [
    ("model_num", "BIGINT"),
    ("representation", "TEXT"),
    ("metric", "TEXT"),
    ("eval_seed", "BIGINT"),
    ("num_train", "BIGINT"),
    ("key", "TEXT"),
    ("value", "DOUBLE PRECISION"),
]


def _result(model_num, value):
    return ModelResult(
        model_num=model_num,
        worker="",
        evaluations=(
            Evaluation(
                "mean", "mig", 0.5, {"values": {"discrete_mig": value, "per_factor": [value, float("nan")]}}
            ),
        ),
        train_seconds=3.0,
        versions={"torch": "x"},
    )


def _columns(path):
    with sqlite3.connect(path) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: [(c[1], c[2]) for c in db.execute(f"PRAGMA table_info({t})")] for t in sorted(tables)}


def test_a_store_written_by_the_first_schema_opens_and_keeps_its_rows(tmp_path):
    path = tmp_path / STORE_NAME
    with sqlite3.connect(path) as db:
        for statement in FIRST_SCHEMA:
            db.execute(statement)
        db.execute("INSERT INTO meta VALUES ('selection', '{\"seeds\": [0]}')")
        db.execute(
            "INSERT INTO runs (model_num, dataset, model, parameter, value, value_index, seed, config_json, "
            "config_hash, status, attempts) VALUES (7, 'd', 'beta_vae', 'beta', 4.0, 2, 1, '{}', 'h', 'done', 1)"
        )
        db.execute("INSERT INTO results VALUES (7, 'mean', 'mig', 'discrete_mig', 0.125)")
        db.execute("INSERT INTO results VALUES (7, 'mean', 'mig', 'per_factor/1', NULL)")
        db.execute("INSERT INTO evaluations VALUES (7, 'mean', 'mig', 1.5, '{}')")
    first = _columns(path)
    with open_store(tmp_path) as store:
        assert store.get_meta("selection") == {"seeds": [0]}
        assert store.result_rows() == [
            (7, "mean", "mig", "discrete_mig", 0.125),
            (7, "mean", "mig", "per_factor/1", None),
        ]
        (run,) = store.runs()
        assert (run["model_num"], run["value"], run["seed"], run["status"], run["attempts"]) == (
            7,
            4.0,
            1,
            "done",
            1,
        )
        assert store.evaluated_all() == {7: {("mean", "mig")}}
        store.mark_running(7, "w")
        assert store.runs()[0]["attempts"] == 2 and store.reset_interrupted() == 1
        store.record(_result(7, 0.25))
        assert store.result_rows()[0] == (7, "mean", "mig", "discrete_mig", 0.25) and store.num_results() == 3
    assert _columns(path) == {**first, "repeats": REPEATS_COLUMNS}  # only the repeats table was added


def test_a_new_store_has_the_first_schemas_column_names_and_types(tmp_path):
    reference = tmp_path / "first.sqlite"
    with sqlite3.connect(reference) as db:
        for statement in FIRST_SCHEMA:
            db.execute(statement)
    with open_store(tmp_path / "new.sqlite") as store:
        store.register_runs(expand(SMOKE_TEST, Selection(models=("beta_vae",), seeds=(0,))))
    assert _columns(tmp_path / "new.sqlite") == {**_columns(reference), "repeats": REPEATS_COLUMNS}
    with sqlite3.connect(tmp_path / "new.sqlite") as db:
        assert db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'results_metric'"
        ).fetchall()
        assert {type(v) for v in db.execute("SELECT value, created_at FROM runs").fetchone()} == {float}


def test_writes_take_the_lock_up_front_and_reads_go_on_while_another_process_writes(tmp_path):
    path = tmp_path / STORE_NAME
    specs = expand(SMOKE_TEST, Selection(models=("beta_vae",), seeds=(0,)))
    with open_store(path) as store:
        store.register_runs(specs)
    store = ResultStore(sqlite_engine(path, timeout=0.2), location=str(path), target=str(path))
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
        assert store.status_counts()["pending"] == len(specs)  # WAL: readers are not blocked
        with pytest.raises(
            StoreError, match=re.escape(f"the results store {path} cannot be used: database is locked")
        ):
            store.mark_running(specs[0].model_num)
        other.execute("ROLLBACK")
        store.mark_running(specs[0].model_num)
        assert store.status_counts()["running"] == 1
    finally:
        other.close()
        store.close()
    # the writer's BEGIN IMMEDIATE, a reader's plain BEGIN
    statements = []
    with open_store(path) as store:
        sa.event.listen(store.engine, "before_cursor_execute", lambda c, cur, sql, *a: statements.append(sql))
        store.runs()
        store.mark_running(specs[1].model_num)
    assert (
        statements[0] == "BEGIN" and statements[2] == "BEGIN IMMEDIATE" and statements[3].startswith("UPDATE")
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_process_opens_its_own_connection(tmp_path):
    specs = expand(SMOKE_TEST, Selection(models=("beta_vae",), seeds=(0,)))
    store = open_store(tmp_path)
    store.register_runs(specs)
    pid = os.fork()
    if pid == 0:  # the child writes through the parent's store object
        code = 1
        try:
            store.record(_result(specs[0].model_num, 0.5))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.status_counts()["done"] == 1 and store.num_results() == 3  # the parent's pool still works
    store.close()

"""The results store on a real PostgreSQL server, started for the test with initdb/pg_ctl (skipped with
the reason when they or psycopg are missing)."""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'untwine[postgres]')")

from untwine.studies.definitions import SMOKE_TEST  # noqa: E402
from untwine.studies.grid import Selection, expand  # noqa: E402
from untwine.studies.records import Evaluation, ModelResult  # noqa: E402
from untwine.studies.store import ConfigMismatchError, open_store  # noqa: E402


def _tool(name):
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    return None


INITDB, PG_CTL = _tool("initdb"), _tool("pg_ctl")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    if not (INITDB and PG_CTL):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    # A folder of its own under the system temp dir: pytest's are private to root, the server may run as nobody.
    base = Path(tempfile.mkdtemp(prefix="untwine-pg-"))

    def skip(reason):
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(reason)

    prefix = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as nobody
        if not shutil.which("runuser"):
            skip("running as root without runuser: cannot start PostgreSQL")
        prefix = ["runuser", "-u", "nobody", "--"]
        shutil.chown(base, "nobody")
        os.chmod(base, 0o755)
        for parent in base.parents:  # nobody must reach the folder
            if parent == Path("/"):
                break
            if not os.stat(parent).st_mode & 0o001:
                skip(f"{parent} is not traversable by the nobody user")
    data, port = base / "data", _free_port()
    run = subprocess.run(
        [*prefix, INITDB, "-D", str(data), "-A", "trust", "-U", "postgres"],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0:
        skip(f"initdb failed: {run.stderr[-500:]}")
    options = f"-k {base} -p {port} -c listen_addresses='' -c fsync=off"
    start = subprocess.run(
        [*prefix, PG_CTL, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"],
        capture_output=True,
        text=True,
        check=False,
    )
    if start.returncode != 0:
        skip(f"pg_ctl start failed: {start.stderr[-500:]}")
    try:
        yield f"postgresql://postgres@/postgres?host={base}&port={port}"
    finally:
        subprocess.run(
            [*prefix, PG_CTL, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, check=False
        )
        shutil.rmtree(base, ignore_errors=True)


def _result(model_num, value):
    return ModelResult(
        model_num=model_num,
        worker="w",
        evaluations=(
            Evaluation(
                "mean", "mig", 0.1, {"values": {"discrete_mig": value, "per_factor": [value, float("nan")]}}
            ),
        ),
        train_seconds=1.0,
        eval_seconds=0.5,
        versions={"torch": "x"},
    )


def test_postgres_store_matches_sqlite(postgres_url, tmp_path):
    specs = expand(SMOKE_TEST)
    frames = {}
    for name, target in (("sqlite", tmp_path), ("postgres", postgres_url)):
        with open_store(target, study_id="smoke") as store:
            assert store.register_runs(specs) == len(specs)
            assert store.register_runs(specs) == 0
            for i, spec in enumerate(specs):
                store.mark_running(spec.model_num, "local")
                if i == 3:
                    store.record(
                        ModelResult(spec.model_num, "w", error="ValueError: boom", traceback="Traceback ...")
                    )
                else:
                    store.record(_result(spec.model_num, i / 10))
            store.record(_result(specs[0].model_num, 0.0))  # replaced, not duplicated
            assert store.status_counts() == {"pending": 0, "running": 0, "done": len(specs) - 1, "failed": 1}
            with pytest.raises(ConfigMismatchError):
                store.register_runs(expand(SMOKE_TEST, Selection(steps=3)))
            store.set_meta("selection", {"a": [1, 2]})
            assert store.get_meta("selection") == {"a": [1, 2]}
            frames[name] = store.results_frame(wide=True)
            runs = store.runs_frame()
            assert runs.loc[runs["status"] == "failed", "error"].tolist() == ["ValueError: boom"]
    assert "schema untwine_smoke" in open_store(postgres_url, study_id="smoke").location
    sqlite, postgres = frames["sqlite"], frames["postgres"]
    assert sqlite.shape == postgres.shape == (len(specs) - 1, 7 + 3)
    assert sqlite.equals(postgres.astype(sqlite.dtypes.to_dict()))
    # a second study in the same database lives in its own schema
    with open_store(postgres_url, study_id="other") as other:
        assert other.runs() == [] and other.num_results() == 0
    with open_store(postgres_url + "#custom_schema") as custom:
        assert custom.schema == "custom_schema"


def test_a_study_runs_into_postgres_and_the_cli_finds_it_again(postgres_url, tmp_path, capsys):
    from untwine.cli import main as cli_main

    study_dir = tmp_path / "pg_study"
    flags = ["--models", "beta_vae", "--values", "0", "--seeds", "0", "--executor", "inline", "--no-progress"]
    assert (
        cli_main(["study", "run", "smoke_test", "--dir", str(study_dir), "--store", postgres_url, *flags])
        == 0
    )
    assert not (study_dir / "results.sqlite").exists()
    saved = __import__("json").loads((study_dir / "study.json").read_text())["store"]
    assert saved.startswith("postgresql://") and saved.endswith("#untwine_pg_study")
    capsys.readouterr()
    assert cli_main(["study", "status", str(study_dir)]) == 0  # no --store: study.json remembers it
    out = capsys.readouterr().out
    assert "1/1 done" in out and "schema untwine_pg_study" in out
    assert cli_main(["study", "export", str(study_dir), "--format", "csv"]) == 0
    assert (study_dir / "export" / "results.csv").read_text().count("\n") > 10
    assert (
        cli_main(["study", "report", str(study_dir)]) == 0 and (study_dir / "report" / "index.html").exists()
    )
    with open_store(postgres_url, study_id="pg_study") as store:
        assert store.status_counts()["done"] == 1 and store.num_results() > 10


def test_postgres_urls_keep_the_password_out_and_a_first_schema_store_opens(postgres_url):
    from test_studies_store import FIRST_SCHEMA

    # The server trusts local connections, so the password is accepted and ignored.
    with_password = postgres_url.replace("postgres@", "postgres:s3cret@", 1) + "#first_store"
    with psycopg.connect(postgres_url, autocommit=True) as raw:  # a schema made by the first store
        raw.execute("CREATE SCHEMA first_store")
        raw.execute("SET search_path TO first_store")
        for statement in FIRST_SCHEMA:
            raw.execute(statement)
        raw.execute(
            "INSERT INTO runs (model_num, dataset, model, parameter, value, value_index, seed, config_json, "
            "config_hash, status) VALUES (3, 'd', 'beta_vae', 'beta', 1.0, 0, 0, '{}', 'h', 'pending')"
        )
    with open_store(with_password) as store:
        assert "s3cret" not in store.location and "postgres:***@" in store.location
        assert "s3cret" not in store.target and store.target.endswith("#first_store")
        assert store.status_counts()["pending"] == 1
        store.record(_result(3, 0.5))
    with open_store(store.target) as reopened:  # the target reopens the same schema
        assert reopened.result_rows()[0] == (3, "mean", "mig", "discrete_mig", 0.5)
        assert reopened.runs()[0]["status"] == "done"

"""Faults injected into studies: a refused run writes nothing, a copied study directory keeps to its own
store, a second driver on a directory is refused naming the first, and a damaged results store gives a
one-line error naming the file from every command, leaving the file as it was."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from untwine.cli import main as cli_main
from untwine.studies.definitions import SMOKE_TEST
from untwine.studies.executors import InlineExecutor
from untwine.studies.grid import Selection
from untwine.studies.runner import (
    DRIVER_LOCK_NAME,
    STUDY_FILE,
    StudyDirectoryError,
    run_study,
    study_status,
)
from untwine.studies.store import STORE_NAME, open_store

STUDY = SMOKE_TEST
SELECTION = Selection(models=("beta_vae",), values=(0,), seeds=(0,))  # one model, seconds to train
FLAGS = ["--models", "beta_vae", "--values", "0", "--seeds", "0"]
INLINE = ["--executor", "inline", "--no-progress"]
REPO = Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    return env


def _snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def _rows(study_dir):
    with open_store(study_dir) as store:
        return store.result_rows()


def _error_line(capsys) -> str:
    """The command's error: one line, no traceback (``run --dir`` says first that it continues)."""
    err = capsys.readouterr().err
    *before, error = err.splitlines()
    assert error.startswith("untwine study: error: ") and "Traceback" not in err, err
    assert all(line.startswith("continuing smoke_test in ") for line in before), err
    return error


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    study_dir = tmp_path_factory.mktemp("finished") / "study"
    summary = run_study(STUDY, study_dir, SELECTION, executor=InlineExecutor(), progress=False)
    assert (summary.done, summary.failed) == (1, 0)
    return study_dir


def _copy(finished, tmp_path, name="study"):
    return Path(shutil.copytree(finished, tmp_path / name))


# -- item 2: a refused run writes nothing -----------------------------------------------------------------
def test_a_refused_run_writes_nothing_and_the_study_continues(finished, tmp_path, capsys):
    study_dir = _copy(finished, tmp_path)
    study_file, store_file = study_dir / STUDY_FILE, study_dir / STORE_NAME
    before = study_file.read_bytes(), store_file.read_bytes(), _rows(study_dir)

    # another --steps for a stored model: refused by the stored config hash
    assert (
        cli_main(["study", "run", STUDY.name, "--dir", str(study_dir), *FLAGS, "--steps", "20", *INLINE]) == 1
    )
    assert "is already stored with another training config" in _error_line(capsys)
    # another study in this directory: refused by study.json
    other = ["--datasets", "procedural_dsprites", *FLAGS, "--steps", "10"]
    assert cli_main(["study", "run", "unsupervised_study_v1", "--dir", str(study_dir), *other, *INLINE]) == 1
    assert f"{study_dir} holds the study 'smoke_test'" in _error_line(capsys)
    assert (study_file.read_bytes(), store_file.read_bytes(), _rows(study_dir)) == before

    # the study continues, with its saved selection and with its original command
    assert cli_main(["study", "run", "--dir", str(study_dir), *INLINE]) == 0
    assert "1/1 models done, 0 failed; 0 run in this session" in capsys.readouterr().out
    assert cli_main(["study", "run", STUDY.name, "--dir", str(study_dir), *FLAGS, *INLINE]) == 0
    assert "1/1 models done, 0 failed; 0 run in this session" in capsys.readouterr().out
    assert _rows(study_dir) == before[2]


# -- item 3: a copied study directory uses its own store -------------------------------------------------
def test_a_copied_study_reads_and_writes_only_its_own_store(finished, tmp_path, capsys):
    original = _copy(finished, tmp_path, "original")
    original_store = original / STORE_NAME
    untouched = _snapshot(original_store)
    assert json.loads((original / STUDY_FILE).read_text())["store"] == STORE_NAME  # relative
    copy = _copy(original, tmp_path, "copy")

    def use_the_copy():
        assert cli_main(["study", "run", "--dir", str(copy), *INLINE]) == 0
        assert "1/1 models done, 0 failed; 0 run in this session" in capsys.readouterr().out
        assert cli_main(["study", "status", str(copy), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["store"] == str(copy / STORE_NAME)
        assert cli_main(["study", "export", str(copy), "--format", "csv"]) == 0
        assert cli_main(["study", "report", str(copy)]) == 0
        assert (copy / "report" / "index.html").exists() and (copy / "export" / "results.csv").exists()
        assert _snapshot(original_store) == untouched
        assert not (original / "export").exists() and not (original / "report").exists()

    use_the_copy()
    # A study.json of an earlier version names its store by absolute path: the copy's own file is used,
    # and the next accepted run writes the relative name.
    study_json = json.loads((copy / STUDY_FILE).read_text())
    (copy / STUDY_FILE).write_text(json.dumps({**study_json, "store": str(original_store.resolve())}))
    use_the_copy()
    assert json.loads((copy / STUDY_FILE).read_text())["store"] == STORE_NAME
    # ... an absolute path inside the directory itself opens as before
    (copy / STUDY_FILE).write_text(json.dumps({**study_json, "store": str((copy / STORE_NAME).resolve())}))
    assert study_status(copy)["store"] == str(copy / STORE_NAME)
    # ... and one outside it, without a file of its own, is refused rather than opened
    (copy / STUDY_FILE).write_text(json.dumps({**study_json, "store": str(original_store.resolve())}))
    (copy / STORE_NAME).unlink()
    for command in (["status", str(copy)], ["run", "--dir", str(copy), *INLINE]):
        assert cli_main(["study", *command]) == 1
        error = _error_line(capsys)
        assert f"names the results store {original_store.resolve()}, outside this study directory" in error
        assert f"copy that file to {copy / STORE_NAME}" in error
    assert not (copy / STORE_NAME).exists() and _snapshot(original_store) == untouched


def test_a_sqlite_store_outside_the_study_directory_is_refused(tmp_path):
    elsewhere = tmp_path / "shared" / "results.sqlite"
    with pytest.raises(StudyDirectoryError, match="a SQLite results store lives in its study directory"):
        run_study(STUDY, tmp_path / "study", SELECTION, executor=InlineExecutor(), store=str(elsewhere))
    assert not elsewhere.parent.exists() and not (tmp_path / "study").exists()


# -- item 4: one driver per study directory --------------------------------------------------------------
def _running(study_dir) -> int:
    try:
        with sqlite3.connect(study_dir / STORE_NAME, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0]
    except sqlite3.OperationalError:  # no store or no tables yet
        return 0


def test_a_second_driver_is_refused_naming_the_first_and_readers_go_on(tmp_path, capsys):
    study_dir = tmp_path / "study"
    command = [sys.executable, "-m", "untwine", "study", "run", STUDY.name, "--dir", str(study_dir)]
    command += ["--models", "beta_vae,factor_vae", "--values", "0", "--seeds", "0", *INLINE]
    first = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and first.poll() is None and not _running(study_dir):
            time.sleep(0.05)
        assert first.poll() is None, first.stdout.read().decode()[-3000:]
        # Stopped while it trains (between two store writes), it holds the directory's lock for as long
        # as the checks below need.
        first.send_signal(signal.SIGSTOP)
        second = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
        assert second.returncode == 1 and second.stdout == "", second.stderr
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr, second.stderr
        assert second.stderr.startswith(
            f"untwine study: error: the study directory {study_dir} is in use by "
        )
        assert f"process {first.pid} on " in second.stderr and "study run smoke_test" in second.stderr
        assert str(study_dir / DRIVER_LOCK_NAME) in second.stderr
        # readers take no lock
        assert cli_main(["study", "status", str(study_dir)]) == 0
        assert "0/2 done, 1 running" in capsys.readouterr().out
        assert cli_main(["study", "export", str(study_dir), "--format", "csv"]) == 0
        assert cli_main(["study", "report", str(study_dir)]) == 0
    finally:
        first.send_signal(signal.SIGCONT)
    output = first.communicate(timeout=600)[0].decode()
    assert first.returncode == 0 and "2/2 models done, 0 failed; 2 run in this session" in output, output
    # the lock went with its holder
    assert cli_main(["study", "run", "--dir", str(study_dir), *INLINE]) == 0
    assert "2/2 models done, 0 failed; 0 run in this session" in capsys.readouterr().out


# -- item 10: a damaged results store --------------------------------------------------------------------
def _text(data: bytes) -> bytes:
    return b"study results, as a text file\n" * 20


def _truncated_header(data: bytes) -> bytes:
    return data[:50]


def _truncated_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.parametrize("damage", [_text, _truncated_header, _truncated_half])
def test_a_damaged_store_gives_one_line_naming_it_from_every_command(finished, tmp_path, capsys, damage):
    study_dir = _copy(finished, tmp_path)
    store_file = study_dir / STORE_NAME
    store_file.write_bytes(damage(store_file.read_bytes()))
    damaged = _snapshot(store_file), (study_dir / STUDY_FILE).read_bytes(), sorted(os.listdir(study_dir))
    for command in (
        ["run", STUDY.name, "--dir", str(study_dir), *FLAGS, *INLINE],
        ["run", "--dir", str(study_dir), *INLINE],
        ["status", str(study_dir)],
        ["export", str(study_dir)],
        ["report", str(study_dir)],
    ):
        assert cli_main(["study", *command]) == 1, command
        error = _error_line(capsys)
        assert error.startswith(
            f"untwine study: error: the results store {store_file} is damaged or not a SQLite database ("
        ), error
        assert f"move it away and run `untwine study run --dir {study_dir}` again" in error
        assert (
            _snapshot(store_file),
            (study_dir / STUDY_FILE).read_bytes(),
            sorted(os.listdir(study_dir)),
        ) == (damaged)
    # what the message advises: moved away, the store is rebuilt from the run directories, without
    # training or evaluating again
    (checkpoint,) = study_dir.glob("runs/*/checkpoint.pt")
    written = sorted((p, p.stat().st_mtime_ns) for p in study_dir.glob("runs/*/**/*.json"))
    trained = _snapshot(checkpoint)
    store_file.rename(study_dir / "damaged.sqlite")
    assert cli_main(["study", "run", "--dir", str(study_dir), *INLINE]) == 0
    assert "1/1 models done, 0 failed; 1 run in this session" in capsys.readouterr().out
    assert _rows(study_dir) == _rows(finished)
    assert _snapshot(checkpoint) == trained
    assert sorted((p, p.stat().st_mtime_ns) for p in study_dir.glob("runs/*/**/*.json")) == written

"""Running studies for real with tiny models: the local process pool and Ray give identical stored
results; re-running is idempotent; a SIGKILLed driver leaves no orphans and a re-run completes the study
with no lost or duplicated rows; a failing model is recorded and the others go on."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from untwine.cli import main as cli_main
from untwine.studies.definitions import SMOKE_TEST
from untwine.studies.executors import InlineExecutor, LocalExecutor
from untwine.studies.grid import Selection, expand
from untwine.studies.runner import (
    FINAL_EVAL_METRIC,
    TRAIN_REPRESENTATION,
    load_results,
    run_dir_for,
    run_study,
    study_status,
)
from untwine.studies.store import open_store

STUDY = SMOKE_TEST
# 4 models: β-VAE and FactorVAE (with its discriminator) x the first value x seeds 0 and 1
SELECTION = Selection(models=("beta_vae", "factor_vae"), values=(0,), seeds=(0, 1))
SELECTION_FLAGS = ["--models", "beta_vae,factor_vae", "--values", "0", "--seeds", "0-1"]
NUM_MODELS = 4
REPO = Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    return env


def _rows(study_dir):
    """Every stored number, sorted: the thing that must not change between executors and re-runs."""
    with open_store(study_dir) as store:
        return store.result_rows()


def _wide(study_dir):
    return load_results(study_dir, wide=True).set_index("model_num").sort_index()


@pytest.fixture(scope="module")
def local_study(tmp_path_factory):
    study_dir = tmp_path_factory.mktemp("local") / "study"
    summary = run_study(
        STUDY, study_dir, SELECTION, executor=LocalExecutor(workers=2, threads=1), progress=False
    )
    assert (summary.total, summary.done, summary.failed, summary.ran) == (
        NUM_MODELS,
        NUM_MODELS,
        0,
        NUM_MODELS,
    )
    return study_dir


def test_local_study_stores_every_evaluation_and_rerun_is_a_no_op(local_study):
    with open_store(local_study) as store:
        runs = store.runs()
        assert [r["status"] for r in runs] == ["done"] * NUM_MODELS
        for run in runs:
            assert run["train_seconds"] > 0 and run["eval_seconds"] >= 0 and '"torch"' in run["versions_json"]
            assert run["attempts"] == 1 and run["error"] is None
            assert store.evaluated(run["model_num"]) == {(TRAIN_REPRESENTATION, FINAL_EVAL_METRIC)} | {
                (rep, metric) for rep in STUDY.representations for metric in STUDY.metrics
            }
        wide = store.results_frame(wide=True)
    for rep in STUDY.representations:  # every metric gave finite numbers for both representations
        for metric in STUDY.metrics:
            columns = [c for c in wide.columns if c.startswith(f"{rep}/{metric}/")]
            assert columns and wide[columns].notna().any(axis=None)
    for spec in expand(STUDY, SELECTION):  # the run directories are complete
        run_dir = run_dir_for(local_study, spec.model_num)
        assert (run_dir / "final_eval.json").exists() and (run_dir / "checkpoint.pt").exists()
        for rep in STUDY.representations:
            assert all((run_dir / "metrics" / rep / f"{m}.json").exists() for m in STUDY.metrics)
    before = _rows(local_study)
    summary = run_study(STUDY, local_study, SELECTION, executor=InlineExecutor(), progress=False)
    assert summary.ran == 0 and summary.done == NUM_MODELS and _rows(local_study) == before


def test_ray_executor_gives_identical_results(local_study, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'untwine[ray]')")
    from untwine.studies.executors import RayExecutor

    executor = RayExecutor(workers=2, threads=1)  # a local Ray instance with 2 CPUs
    try:
        summary = run_study(STUDY, tmp_path / "ray", SELECTION, executor=executor, progress=False)
    finally:
        executor.shutdown()
    assert summary.done == NUM_MODELS and summary.failed == 0
    assert _rows(tmp_path / "ray") == _rows(local_study)


def _children(pid):
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _done_count(study_dir):
    path = study_dir / "results.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM runs WHERE status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
def test_sigkill_of_the_driver_then_rerun_completes_without_lost_or_duplicated_rows(local_study, tmp_path):
    study_dir = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "untwine",
        "study",
        "run",
        STUDY.name,
        "--dir",
        str(study_dir),
        *SELECTION_FLAGS,
        "--workers",
        "2",
        "--threads",
        "1",
        "--no-progress",
    ]
    driver = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    workers = []
    while time.time() < deadline and driver.poll() is None and _done_count(study_dir) < 1:
        workers = _children(driver.pid) or workers
        time.sleep(0.1)
    assert driver.poll() is None, driver.stdout.read().decode()[-3000:]
    assert 1 <= _done_count(study_dir) < NUM_MODELS
    workers = [pid for pid in _children(driver.pid) if _alive(pid)] or workers
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    driver.stdout.close()
    deadline = time.time() + 15  # the workers notice their driver is gone and exit
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert workers and not any(_alive(pid) for pid in workers)
    with open_store(study_dir) as store:
        interrupted = store.status_counts()
    assert interrupted["running"] >= 1 and interrupted["done"] < NUM_MODELS

    status = study_status(study_dir)
    assert status["counts"]["done"] == interrupted["done"] and status["total"] == NUM_MODELS
    # Re-running the same command finishes the study (inline here: no worker start-up to wait for).
    assert (
        cli_main(
            [
                "study",
                "run",
                STUDY.name,
                "--dir",
                str(study_dir),
                *SELECTION_FLAGS,
                "--executor",
                "inline",
                "--no-progress",
            ]
        )
        == 0
    )
    rows = _rows(study_dir)
    assert len(rows) == len({row[:4] for row in rows})  # no duplicates (also the primary key)
    assert rows == _rows(local_study)  # nothing lost, and the same numbers as an uninterrupted run
    with open_store(study_dir) as store:
        assert store.status_counts()["done"] == NUM_MODELS


def test_a_failing_model_is_recorded_and_the_rest_go_on(tmp_path, capsys):
    study_dir = tmp_path / "failing"
    selection = Selection(models=("beta_vae",), values=(1,), seeds=(0, 1))
    broken, healthy = expand(STUDY, selection)
    run_dir = run_dir_for(study_dir, broken.model_num)
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text("{ not json")  # e.g. a disk that lost a file
    flags = [
        "--models",
        "beta_vae",
        "--values",
        "1",
        "--seeds",
        "0-1",
        "--executor",
        "inline",
        "--no-progress",
    ]
    assert cli_main(["study", "run", STUDY.name, "--dir", str(study_dir), *flags]) == 3
    out = capsys.readouterr().out
    assert f"failed model {broken.model_num}: JSONDecodeError" in out and "1/2 models done, 1 failed" in out
    with open_store(study_dir) as store:
        runs = {r["model_num"]: r for r in store.runs()}
    assert runs[healthy.model_num]["status"] == "done"
    assert runs[broken.model_num]["status"] == "failed" and "Traceback" in runs[broken.model_num]["traceback"]
    assert cli_main(["study", "status", str(study_dir)]) == 0
    assert f"failed model {broken.model_num}: JSONDecodeError" in capsys.readouterr().out

    (run_dir / "config.json").unlink()  # repaired; a plain re-run still skips it ...
    assert cli_main(["study", "run", STUDY.name, "--dir", str(study_dir), *flags]) == 3
    assert "0 run in this session" in capsys.readouterr().out
    # ... --retry-failed runs it
    assert cli_main(["study", "run", STUDY.name, "--dir", str(study_dir), *flags, "--retry-failed"]) == 0
    with open_store(study_dir) as store:
        runs = {r["model_num"]: r for r in store.runs()}
        assert runs[broken.model_num]["status"] == "done" and runs[broken.model_num]["attempts"] == 2
        assert runs[broken.model_num]["error"] is None


def test_export_status_and_report_from_the_cli(local_study, tmp_path, capsys):
    assert cli_main(["study", "status", str(local_study)]) == 0
    assert f"{NUM_MODELS}/{NUM_MODELS} done" in capsys.readouterr().out
    assert cli_main(["study", "export", str(local_study), "--out", str(tmp_path / "export")]) == 0
    exported = pd.read_parquet(tmp_path / "export" / "results.parquet")
    assert len(exported) == len(_rows(local_study))
    wide = pd.read_csv(tmp_path / "export" / "results_wide.csv").set_index("model_num").sort_index()
    pd.testing.assert_frame_equal(wide, _wide(local_study), check_dtype=False)
    assert cli_main(["study", "report", str(local_study), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "index.html").read_text()
    assert "Total correlation: sampled vs mean" in text and "data:image/png;base64," in text


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
def test_sigkill_of_a_worker_mid_training_resumes_from_its_checkpoint(tmp_path):
    """A worker killed between checkpoints: the pool is rebuilt, the model resumes from its checkpoint
    and ends with exactly the numbers of an uninterrupted run."""
    selection = Selection(models=("factor_vae",), values=(0,), seeds=(0,), steps=120)
    reference = tmp_path / "reference"
    run_study(STUDY, reference, selection, executor=InlineExecutor(), progress=False)

    study_dir = tmp_path / "killed"
    (spec,) = expand(STUDY, selection)
    log = run_dir_for(study_dir, spec.model_num) / "log.jsonl"
    result = {}

    def drive():
        result["summary"] = run_study(
            STUDY, study_dir, selection, executor=LocalExecutor(workers=1, threads=1), progress=False
        )

    import threading

    thread = threading.Thread(target=drive)
    thread.start()
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 6):
        time.sleep(0.05)  # log_every = checkpoint_every = 5: at least 30 steps done and checkpointed
    workers = [
        pid
        for pid in _children(os.getpid())
        if _alive(pid) and "spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    ]
    assert workers, "no worker process found"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    thread.join(timeout=600)
    summary = result["summary"]
    assert summary.done == 1 and summary.failed == 0
    with open_store(study_dir) as store:
        assert store.runs()[0]["attempts"] == 2
    steps = [int(__import__("json").loads(line)["step"]) for line in log.read_text().splitlines()]
    assert steps == list(range(5, 121, 5))  # resumed at its checkpoint: no step logged twice, none missing
    assert _rows(study_dir) == _rows(reference)


def test_udr_compares_the_seeds_of_each_setting_and_is_stored(local_study, tmp_path, capsys):
    import html
    import json
    import shutil

    from untwine.data import get_dataset
    from untwine.metrics import udr_score
    from untwine.training.representation import representation_function

    study_dir = tmp_path / "copy"
    shutil.copytree(local_study, study_dir)  # the module's study stays as the other tests expect it
    assert cli_main(["study", "udr", str(study_dir), "--num-points", "200"]) == 0
    assert "stored as metric 'udr'" in capsys.readouterr().out
    with open_store(study_dir) as store:
        runs = {r["model_num"]: r for r in store.runs()}
        stored = {
            (num, key): value for num, rep, metric, key, value in store.result_rows() if metric == "udr"
        }
    for model in ("beta_vae", "factor_vae"):
        nums = sorted(n for n, r in runs.items() if r["model"] == model)
        assert len(nums) == 2  # seeds 0 and 1 of the one value
        # The same computation from Python: two models, so each score is their one pairwise score.
        direct = udr_score(
            get_dataset(runs[nums[0]]["dataset"]),
            [representation_function(run_dir_for(study_dir, n), "mean") for n in nums],
            0,
            num_points=200,
        )
        for i, num in enumerate(nums):
            assert stored[(num, "model_score")] == direct["model_scores"][i]
            saved = json.loads((run_dir_for(study_dir, num) / "metrics" / "mean" / "udr.json").read_text())
            assert (
                saved["compared_with"] == nums and saved["values"]["model_score"] == direct["model_scores"][i]
            )
    # The other results are untouched.
    assert len(_rows(study_dir)) == len(_rows(local_study)) + 4
    # The report uses it as an unsupervised model-selection score.
    assert cli_main(["study", "report", str(study_dir), "--out", str(tmp_path / "report")]) == 0
    selection = pd.read_csv(tmp_path / "report" / "model_selection.csv")
    assert "UDR" in set(selection["selector"])
    # The gallery: one traversal strip per trained model.
    text = (tmp_path / "report" / "index.html").read_text()
    assert "Gallery: what the models learned" in text
    strips = sorted(p.name for p in (tmp_path / "report" / "gallery").glob("*.png"))
    assert strips == sorted(f"model{n}.png" for n in runs)
    from test_report import _PROBE, CHROMIUM, _chromium

    if CHROMIUM.exists():  # every picture, the gallery's included, decodes in a browser
        probed = tmp_path / "report" / "probed.html"
        probed.write_text(text.replace("<head>", "<head>" + _PROBE, 1))
        result = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri())
        start = result.stdout.index('<pre id="untwine-probe">') + len('<pre id="untwine-probe">')
        probe = json.loads(html.unescape(result.stdout[start : result.stdout.index("</pre>", start)]))
        assert probe["broken"] == [] and probe["images"] >= len(runs) and all(w > 0 for w in probe["widths"])


def test_reevaluation_is_keyed_resumable_and_reported(local_study, tmp_path, capsys):
    import json
    import shutil

    from untwine.data import get_dataset
    from untwine.metrics import evaluate_representation
    from untwine.training.representation import representation_function

    study_dir = tmp_path / "copy"
    shutil.copytree(local_study, study_dir)
    own = {
        n: (run_dir_for(study_dir, n) / "metrics" / "mean" / "mig.json").read_bytes()
        for n in range(4)
        if (run_dir_for(study_dir, n) / "metrics" / "mean" / "mig.json").exists()
    }
    args = [
        "study",
        "reevaluate",
        str(study_dir),
        "--metrics",
        "mig",
        "--seeds",
        "0-2",
        "--num-train",
        "100,300",
    ]
    assert cli_main(args) == 0
    assert f"{NUM_MODELS * 6} repeated evaluations computed" in capsys.readouterr().out
    with open_store(study_dir) as store:
        repeats = store.repeats_frame()
    mig = repeats[repeats["key"] == "discrete_mig"]
    assert len(mig) == NUM_MODELS * 3 * 2 and set(mig["num_train"]) == {100, 300}
    # One stored repeat against the same evaluation from Python.
    row = mig[(mig["eval_seed"] == 1) & (mig["num_train"] == 300)].iloc[0]
    run_dir = run_dir_for(study_dir, int(row["model_num"]))
    direct = evaluate_representation(
        get_dataset(row["dataset"]),
        representation_function(run_dir, "mean", seed=1),
        ["mig"],
        seed=1,
        params={"mig": {"num_train": 300}},
        n_jobs=1,
    )
    assert row["value"] == direct["mig"]["values"]["discrete_mig"]
    saved = json.loads(
        (run_dir / "metrics" / "mean" / "repeats" / "mig" / "seed=1,num_train=300.json").read_text()
    )
    assert saved["parameters"]["num_train"] == 300 and saved["seed"] == 1
    # The study's own evaluations are untouched, and a second call computes nothing.
    for n, content in own.items():
        assert (run_dir_for(study_dir, n) / "metrics" / "mean" / "mig.json").read_bytes() == content
    assert len(_rows(study_dir)) == len(_rows(local_study))
    assert cli_main(args) == 0
    assert "0 repeated evaluations computed" in capsys.readouterr().out
    # The report's section 8.
    assert cli_main(["study", "report", str(study_dir), "--out", str(tmp_path / "report")]) == 0
    assert (
        "8. Repeated evaluation: seeds and sample sizes" in (tmp_path / "report" / "index.html").read_text()
    )
    summary = pd.read_csv(tmp_path / "report" / "repeated_evaluation.csv")
    assert set(summary["num_train"]) == {100, 300} and (summary["seeds"] == 3).all()
    # A metric without a sample size, and a single run through `untwine evaluate`.
    assert (
        cli_main(
            [
                "study",
                "reevaluate",
                str(study_dir),
                "--metrics",
                "udr_missing",
                "--seeds",
                "0",
                "--num-train",
                "10",
            ]
        )
        == 1
    )
    assert (
        cli_main(["evaluate", str(run_dir), "--metrics", "mig", "--seeds", "5-6", "--num-train", "200"]) == 0
    )
    assert sorted(p.name for p in (run_dir / "metrics" / "mean" / "repeats" / "mig").glob("seed=5*")) == [
        "seed=5,num_train=200.json"
    ]

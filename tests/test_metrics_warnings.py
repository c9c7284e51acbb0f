"""Convergence warnings of the fits are counted and stored with each result, from workers too."""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, str(Path(__file__).resolve().parent / "data" / "reference"))

import toy  # noqa: E402

from untwine.metrics import downstream_task, evaluate_representation, registry  # noqa: E402
from untwine.metrics._estimators import FitEngine, FitTask, run_fit  # noqa: E402

# Codes a thousand times larger than the toy family's: lbfgs stops at max_iter=100 before converging.
SCALE = 1e3
PARAMS = {
    "mig": {"num_train": 400},
    "downstream_logistic_regression": {"num_train": [200], "num_test": 100},
}


def _unscaled_task() -> FitTask:
    dataset = toy.ToyDataset("small")
    factors = dataset.sample_factors(300, np.random.default_rng(0))
    codes = toy.family_fn("small", "nonlinear")(factors) * SCALE
    return FitTask("lr_cv", codes[:200], factors[:200, 0], codes[200:], factors[200:, 0])


def test_fits_that_do_not_converge_are_counted_in_the_result(tmp_path):
    fn = toy.family_fn("small", "nonlinear")
    results = evaluate_representation(
        toy.ToyDataset("small"),
        lambda images: fn(images) * SCALE,
        ["mig", "downstream_logistic_regression"],
        params=PARAMS,
        out_dir=tmp_path,
        n_jobs=1,
    )
    counted = results["downstream_task_logistic_regression"]["warnings"]
    assert set(counted) == {"ConvergenceWarning"}
    # 10 values of C x 5 folds + the final fit, per factor: most of them stop at the iteration limit.
    assert 10 <= counted["ConvergenceWarning"]["count"] <= 51 * 3
    assert counted["ConvergenceWarning"]["first_message"].startswith("lbfgs failed to converge")
    saved = json.loads((tmp_path / "downstream_task_logistic_regression.json").read_text())
    assert saved["warnings"] == counted
    # MIG fits nothing: an empty record, in the result and on disk.
    assert results["mig"]["warnings"] == {}
    assert json.loads((tmp_path / "mig.json").read_text())["warnings"] == {}


def test_warnings_travel_back_from_the_workers():
    task = _unscaled_task()
    in_process = run_fit(task).warnings
    engine = FitEngine(2)
    engine.add("unscaled", task)
    from_worker = engine.results(["unscaled"])[0].warnings
    assert in_process.counts["ConvergenceWarning"] > 0
    assert from_worker.counts == in_process.counts
    assert from_worker.first_messages == in_process.first_messages


def test_a_converged_fit_records_no_warning():
    task = _unscaled_task()
    scaled = dataclasses.replace(task, x_train=task.x_train / SCALE, x_test=task.x_test / SCALE)
    assert run_fit(scaled).warnings.counts == {}


def test_warnings_of_in_process_metrics_are_counted_and_others_pass(monkeypatch):
    """A metric computed in the main process: its convergence warnings are counted by the runner, any
    other warning reaches the caller unchanged."""
    spec = registry.METRICS["mig"]

    def compute(params, ctx):
        warnings.warn("did not converge", ConvergenceWarning, stacklevel=1)
        warnings.warn("did not converge", ConvergenceWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
        return spec.compute(params, ctx)

    monkeypatch.setitem(registry.METRICS, "mig", dataclasses.replace(spec, compute=compute))
    with pytest.warns(UserWarning, match="something else"):
        results = evaluate_representation(
            toy.ToyDataset("small"),
            toy.family_fn("small", "nonlinear"),
            ["mig"],
            params={"mig": PARAMS["mig"]},
            n_jobs=1,
        )
    assert results["mig"]["warnings"] == {
        "ConvergenceWarning": {"count": 2, "first_message": "did not converge"}
    }


def test_standalone_downstream_task_reports_its_fits_warnings_once():
    task = _unscaled_task()
    factors = np.stack([task.y_train, task.y_train], axis=1)
    test_factors = np.stack([task.y_test, task.y_test], axis=1)
    with pytest.warns(ConvergenceWarning) as caught:
        downstream_task(task.x_train, factors, task.x_test, test_factors, num_train=[200])
    assert len(caught) == 1
    count = 2 * run_fit(task).warnings.counts["ConvergenceWarning"]
    assert str(caught[0].message).startswith(f"{count} warning(s) from the classifier fits; the first: lbfgs")

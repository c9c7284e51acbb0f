"""The report pages as text: names from runs, metrics and datasets are escaped by the templates, and
drawing a report leaves matplotlib's process-wide state (backend, pyplot figures, rcParams) alone."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from untwine.report import render_run_report, render_study_report
from untwine.studies import analysis as A
from untwine.visualisation import curves, metric_plots

HOSTILE = "<script>alert('x')</script> & co"
ESCAPED = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"


def _fake_run(run_dir):
    """A run folder with hostile names in its config, metric results and manifest; no pictures."""
    run_dir.mkdir()
    (run_dir / "config.json").write_text(
        json.dumps({"config": {"model": HOSTILE, "dataset": "shapes & <b>", "steps": 3, "seed": 0}})
    )
    (run_dir / "final_eval.json").write_text(json.dumps({"step": 3, "terms": {HOSTILE: 1.5}}))
    metrics = run_dir / "metrics" / "mean"
    metrics.mkdir(parents=True)
    (metrics / "m.json").write_text(json.dumps({"metric": HOSTILE, "values": {"score": 0.25}}))
    out = run_dir / "visualisation"
    out.mkdir()
    (out / "manifest.json").write_text(
        json.dumps({"traversals": [f"{HOSTILE}.png"], "curves": {}, "animations": {}, "settings": {}})
    )
    return run_dir


def test_run_report_escapes_run_metric_and_dataset_names(tmp_path):
    text = render_run_report(_fake_run(tmp_path / "run"))
    assert "<script" not in text and "<b>" not in text
    assert f"<title>untwine report: {ESCAPED} on shapes &amp; &lt;b&gt;</title>" in text
    assert f"<td>{ESCAPED}</td>" in text  # the metric name and the final-eval term
    assert f"missing image: {ESCAPED}.png" in text
    assert '<td class="num">0.25</td>' in text and '<td class="num">1.5</td>' in text


def _study_table(dataset):
    """Two models x two values x three seeds with every score family the study report draws."""
    rng = np.random.default_rng(0)
    rows = []
    for model_index, model in enumerate(("beta_vae", "factor_vae")):
        for value in (1.0, 4.0):
            for seed in range(3):
                signal = value / 4 + model_index + 0.1 * rng.normal()
                rows.append(
                    {
                        "model_num": len(rows),
                        "dataset": dataset,
                        "model": model,
                        "parameter": "beta",
                        "value": value,
                        "value_index": int(value > 1),
                        "seed": seed,
                        "mean/mig/discrete_mig": signal,
                        "mean/dci/disentanglement": signal + 0.1 * rng.normal(),
                        "train/final_eval/elbo": -signal + 0.1 * rng.normal(),
                        "sampled/unsupervised/gaussian_total_correlation": 1 / value + 0.1 * rng.random(),
                        "mean/unsupervised/gaussian_total_correlation": 0.5 + 0.1 * rng.random(),
                        "mean/downstream_task_logistic_regression/100:mean_test_accuracy": 0.3 + 0.1 * signal,
                        "mean/downstream_task_logistic_regression/10000:mean_test_accuracy": 0.8
                        + 0.01 * rng.normal(),
                    }
                )
    return pd.DataFrame(rows)


def _runs(table):
    runs = pd.DataFrame(
        {
            "model_num": table["model_num"],
            "dataset": table["dataset"],
            "model": table["model"],
            "value": table["value"],
            "seed": table["seed"],
            "status": "done",
            "error": None,
            "train_seconds": 1.0,
            "eval_seconds": 2.0,
        }
    )
    runs.loc[0, ["status", "error"]] = ["failed", HOSTILE]
    return runs


def test_study_report_escapes_dataset_names_errors_and_title(tmp_path):
    table = _study_table(HOSTILE)
    text = render_study_report(table, _runs(table), tmp_path, title=HOSTILE)
    assert "<script" not in text
    assert f"<h1>Study report: {ESCAPED}</h1>" in text
    assert f"<h3>{ESCAPED}</h3>" in text  # the dataset heading of the distributions
    assert f"<td>{ESCAPED}</td>" in text  # the failed run's error and the dataset column of the tables
    # each caption: the escaped dataset name first, then the link to the figure's numbers
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", text, re.S)
    assert captions and all(caption.startswith(ESCAPED) for caption in captions)
    assert all(re.search(r'<a class="numbers" href="[^"<>]+\.csv">Numbers \(CSV\)</a>$', c) for c in captions)
    for number in ("1. ", "2. ", "3. ", "4. ", "5. ", "6. "):  # every analysis was drawn
        assert f"<h2>{number}" in text
    assert '<p class="missing">' not in text


def test_drawing_leaves_matplotlib_global_state_alone(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    plt = pytest.importorskip("matplotlib.pyplot")
    original = matplotlib.get_backend()
    plt.switch_backend("svg")  # a caller's non-default backend, which selecting Agg would replace
    own = plt.figure()  # a figure of the caller's that must survive
    figures_before = plt.get_fignums()
    rc_before = dict(matplotlib.rcParams)
    try:
        records = [
            {"step": s, "loss": 1.0 / s, "kl": 0.5, "c": 0.1 * s, "kl_per_latent": [0.1 * s, 0.0]}
            for s in (1, 2, 3)
        ]
        for plot in (curves.plot_loss_terms, curves.plot_kl_per_latent, curves.plot_capacity):
            assert plot(records) is not None
        assert metric_plots.plot_matrix(np.eye(3), "m") is not None
        table = _study_table("d")
        render_study_report(table, _runs(table), tmp_path)
        assert len(list(tmp_path.glob("*.png"))) >= 7

        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == figures_before
        assert dict(matplotlib.rcParams) == rc_before
    finally:
        plt.close(own)
        plt.switch_backend(original)


def test_study_report_without_finished_runs(tmp_path):
    empty = render_study_report(pd.DataFrame(columns=A.INDEX), pd.DataFrame(), tmp_path)
    assert "No finished runs in the store yet" in empty and "runs in the store: 0 (none)" in empty

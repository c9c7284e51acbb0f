"""End to end: a run trained in the suite, scored by `untwine evaluate`, results on disk."""

import json

import pytest

from untwine.cli import main as cli_main
from untwine.studies.pipeline import evaluate_run, headline, metrics_dir
from untwine.training import TrainConfig, train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    config = TrainConfig.from_overrides(
        ["steps=20", "batch_size=16", "threads=1", "progress=false", "eval_batches=1", "model.beta=4"]
    )
    return train(config, tmp_path_factory.mktemp("pipeline") / "run")


def _values(run_dir, representation, metric):
    return json.loads((metrics_dir(run_dir, representation) / f"{metric}.json").read_text())


def test_untwine_evaluate_writes_one_file_per_metric(run_dir, capsys):
    assert cli_main(["evaluate", str(run_dir), "--metrics", "mig,unsupervised", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "discrete_mig=" in printed and "gaussian_total_correlation=" in printed
    mig = _values(run_dir, "mean", "mig")
    assert mig["metric"] == "mig" and mig["seed"] == 3 and mig["representation"] == "mean"
    assert mig["dataset"] == "procedural_dsprites" and mig["library_versions"]["torch"]
    assert mig["parameters"] == {"num_bins": 20, "num_train": 10000}
    assert 0.0 <= mig["values"]["discrete_mig"] <= 1.0
    # MIG is the mean over factors of the per-factor gap normalised by the factor's entropy.
    per_factor = mig["matrices"]["mig_per_factor"]
    assert mig["values"]["discrete_mig"] == pytest.approx(sum(per_factor) / len(per_factor), rel=1e-9)
    # Every distinct image was encoded at most once.
    assert mig["code_cache"]["images_encoded"] <= mig["code_cache"]["codes_requested"]
    assert sorted(p.name for p in metrics_dir(run_dir, "mean").iterdir()) == ["mig.json", "unsupervised.json"]


def test_evaluation_is_deterministic_and_representations_differ(run_dir):
    first = evaluate_run(run_dir, metrics=["unsupervised"], seed=1)
    again = evaluate_run(run_dir, metrics=["unsupervised"], seed=1)
    assert first["unsupervised"]["values"] == again["unsupervised"]["values"]
    sampled = evaluate_run(run_dir, metrics=["unsupervised"], representation="sampled", seed=1)
    mean_tc = first["unsupervised"]["values"]["gaussian_total_correlation"]
    sampled_tc = sampled["unsupervised"]["values"]["gaussian_total_correlation"]
    # Sampling adds per-latent noise (posterior variances near 1 this early), diluting the correlations.
    assert sampled_tc < mean_tc
    assert _values(run_dir, "sampled", "unsupervised")["representation"] == "sampled"


def test_bad_requests_name_the_problem(run_dir, tmp_path):
    with pytest.raises(ValueError, match="representation must be one of"):
        evaluate_run(run_dir, representation="median")
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        evaluate_run(tmp_path)
    assert cli_main(["evaluate", str(run_dir), "--metrics", "mgi"]) == 1


def test_headline_hides_per_factor_details():
    text = headline(
        {
            "10:mean_test_accuracy": 0.5,
            "10:test_accuracy_factor_0": 0.1,
            "10:min_test_accuracy": 0.2,
            "num_active_dims": 3,
        }
    )
    assert text == "10:mean_test_accuracy=0.5, num_active_dims=3"

"""The runner: presets, one JSON per metric, shared samples and fits, the per-image code cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "data" / "reference"))

import toy  # noqa: E402

from untwine.metrics import (  # noqa: E402
    CodeCache,
    CodeSource,
    dci,
    evaluate_representation,
    mig,
    resolve_metrics,
    unsupervised_scores,
)
from untwine.metrics.context import metric_rng  # noqa: E402
from untwine.metrics.registry import METRICS  # noqa: E402

SMALL_PARAMS = {
    "mig": {"num_train": 600},
    "unsupervised": {"num_train": 600},
    "irs": {"num_train": 600},
    "sap_score": {"num_train": 600, "num_test": 300},
    "modularity_explicitness": {"num_train": 600, "num_test": 300},
    "dci": {"num_train": 600, "num_test": 300},
    "downstream_task_boosted_trees": {"num_train": [20, 600], "num_test": 300},
    "downstream_task_logistic_regression": {"num_train": [20, 600], "num_test": 300},
    "beta_vae_sklearn": {"num_train": 300, "num_eval": 200},
    "factor_vae_metric": {"num_train": 300, "num_eval": 200, "num_variance_estimate": 500},
    "fairness": {"num_train": 600, "num_test_points_per_class": 20},
    "unified_scores": {"num_train": 600, "num_test": 300},
    "reduced_downstream_task": {"num_train": [100], "num_test": 100},
    "strong_downstream_task": {"num_train": [100], "num_test": 100, "n_experiment": 1},
    "mig_continuous": {"num_train": 600},
    "sap_continuous": {"num_train": 600},
    "dci_regression": {"num_train": 600, "num_test": 300},
}


class Counting:
    """A deterministic representation that records every factor row (= toy image) it encodes."""

    deterministic = True  # declared: no probe encodes, so every encoded image is a metric's

    def __init__(self, family="nonlinear"):
        self.fn = toy.family_fn("small", family)
        self.seen: list[tuple] = []

    def __call__(self, images):
        self.seen.extend(map(tuple, np.asarray(images, dtype=np.int64)))
        return self.fn(images)


class Gaussian:
    """A Gaussian encoder: mean = the nonlinear family's codes, fixed log-variances."""

    deterministic = True

    def __init__(self):
        self.fn = toy.family_fn("small", "nonlinear")
        self.calls = 0

    def encode_mean_logvar(self, images):
        self.calls += len(images)
        mean = self.fn(images)
        return mean, np.full_like(mean, -4.0)


def test_presets_are_disentanglement_libs_metric_configs():
    assert resolve_metrics("study") == [
        "beta_vae_sklearn",
        "factor_vae_metric",
        "mig",
        "dci",
        "modularity_explicitness",
        "sap_score",
        "unsupervised",
        "downstream_task_logistic_regression",
        "downstream_task_boosted_trees",
    ]
    assert resolve_metrics("fairness_study")[-1] == "fairness"
    assert set(resolve_metrics("all")) == set(METRICS)
    assert resolve_metrics(["beta_vae", "sap", "mig", "sap_score"]) == [
        "beta_vae_sklearn",
        "sap_score",
        "mig",
    ]
    with pytest.raises(ValueError, match="unknown metric 'mgi'"):
        resolve_metrics(["mgi"])


def test_runner_writes_results_shares_samples_and_fits(tmp_path):
    dataset = toy.ToyDataset("small")
    representation = Counting()
    results = evaluate_representation(
        dataset, representation, metrics="all", seed=3, out_dir=tmp_path, params=SMALL_PARAMS, n_jobs=1
    )
    assert list(results) == resolve_metrics("all")
    for name, result in results.items():
        saved = json.loads((tmp_path / f"{name}.json").read_text())
        assert saved["values"] == pytest.approx(result["values"])
        assert saved["metric"] == name and saved["seed"] == 3 and saved["mode"] == "faithful"
        assert saved["representation"] == "mean" and saved["dataset"] == "toy_small"
        assert saved["parameters"]["num_train"] == SMALL_PARAMS[name]["num_train"]
        assert saved["seconds"] >= 0 and "numpy" in saved["library_versions"]
    # The array metrics see one shared sample: recompute two of them from it.
    source = CodeSource(dataset, toy.family_fn("small", "nonlinear"))
    rng = metric_rng(3, "shared_sample")
    factors, codes = source.sample(600, rng)
    test_factors, test_codes = source.sample(300, rng)
    assert results["mig"]["values"]["discrete_mig"] == pytest.approx(
        mig(codes, factors)["discrete_mig"], abs=1e-12
    )
    assert results["unsupervised"]["values"] == pytest.approx(unsupervised_scores(codes))
    assert results["dci"]["values"] == pytest.approx(
        dci(codes, factors, test_codes, test_factors, random_state=3)
    )
    np.testing.assert_allclose(
        results["mig"]["matrices"]["mutual_info"],
        mig(codes, factors, return_matrices=True)[1]["mutual_info"],
        atol=1e-12,
    )
    # DCI and the 600-point downstream trees are the same fits.
    downstream = results["downstream_task_boosted_trees"]["values"]
    assert downstream["600:mean_test_accuracy"] == results["dci"]["values"]["informativeness_test"]
    assert downstream["600:mean_train_accuracy"] == results["dci"]["values"]["informativeness_train"]
    # The unified scores aggregate DCI's importance matrix (the same fits) and MIG's MI matrix.
    unified = results["unified_scores"]["values"]
    assert unified["importance_gbt_matrix.dci_disentanglement"] == results["dci"]["values"]["disentanglement"]
    assert unified["importance_gbt_matrix.dci_completeness"] == results["dci"]["values"]["completeness"]
    assert unified["mutual_information_matrix.mig"] == pytest.approx(
        results["mig"]["values"]["discrete_mig"], abs=1e-12
    )
    # Every distinct image (here: factor combination, 4 x 5 x 6 = 120) was encoded exactly once: the
    # BetaVAE and FactorVAE scores draw far more than twice the grid, so it was encoded up front.
    assert len(representation.seen) == len(set(representation.seen)) == 120
    assert results["mig"]["grid_encode_seconds"] > 0
    stats = results["fairness"]["code_cache"]
    assert stats["cached"] and stats["images_encoded"] == len(representation.seen)
    assert stats["codes_requested"] > 100 * stats["images_encoded"]


def test_encoding_the_whole_grid_gives_the_lazily_encoded_codes():
    dataset = toy.ToyDataset("small")
    factors = dataset.sample_factors(500, np.random.default_rng(0))
    lazy = CodeSource(dataset, toy.family_fn("small", "nonlinear"))
    expected = lazy.codes(factors, 0)
    assert lazy.stats()["images_encoded"] == np.unique(dataset.factors_to_index(factors)).shape[0] < 120
    lazy.encode_all(0)  # fills in only the combinations not seen yet
    assert lazy.stats()["images_encoded"] == 120 == lazy.stats()["distinct_images_cached"]
    eager = CodeSource(dataset, toy.family_fn("small", "nonlinear"))
    eager.encode_all(0, chunk=7)
    assert eager.stats()["images_encoded"] == 120
    np.testing.assert_array_equal(eager.codes(factors, 0), expected)
    np.testing.assert_array_equal(lazy.codes(factors, 0), expected)
    assert eager.stats()["images_encoded"] == 120  # answered from the cache


def test_values_do_not_depend_on_n_jobs():
    dataset = toy.ToyDataset("small")
    names = ["dci", "fairness"]
    params = {
        "dci": {"num_train": 300, "num_test": 300},
        "fairness": {"num_train": 300, "num_test_points_per_class": 10},
    }
    one = evaluate_representation(
        dataset, toy.family_fn("small", "nonlinear"), names, params=params, n_jobs=1
    )
    two = evaluate_representation(
        dataset, toy.family_fn("small", "nonlinear"), names, params=params, n_jobs=2
    )
    for name in names:
        assert one[name]["values"] == two[name]["values"]


def test_fast_mode_is_marked_and_close():
    dataset = toy.ToyDataset("small")
    names = ["dci", "downstream_task_boosted_trees"]
    params = {
        "dci": {"num_train": 300, "num_test": 300},
        "downstream_task_boosted_trees": {"num_train": [20, 300], "num_test": 300},
    }
    faithful = evaluate_representation(dataset, toy.family_fn("small", "nonlinear"), names, params=params)
    fast = evaluate_representation(
        dataset, toy.family_fn("small", "nonlinear"), names, params=params, fast=True
    )
    for name in names:
        assert fast[name]["mode"] == "fast" and faithful[name]["mode"] == "faithful"
        for key, value in faithful[name]["values"].items():
            assert fast[name]["values"][key] == pytest.approx(value, abs=0.05), (name, key)


def test_gaussian_encoder_is_cached_and_sampled_codes_draw_fresh_noise():
    dataset = toy.ToyDataset("small")
    encoder = Gaussian()
    source = CodeSource(dataset, encoder, mode="sampled")
    factors = dataset.sample_factors(500, 0)
    first, second = source.codes(factors, 1), source.codes(factors, 2)
    assert encoder.calls <= 120 and source.stats()["images_encoded"] == encoder.calls
    assert not np.allclose(first, second)
    mean = CodeSource(dataset, encoder, mode="mean").codes(factors, 0)
    np.testing.assert_allclose(first - mean, 0.0, atol=0.7)  # std exp(-2) ~ 0.135
    assert np.std(first - mean) == pytest.approx(np.exp(-2.0), rel=0.1)
    results = evaluate_representation(
        dataset,
        encoder,
        ["mig", "factor_vae_metric"],
        mode="sampled",
        params={"mig": {"num_train": 600}, "factor_vae_metric": SMALL_PARAMS["factor_vae_metric"]},
    )
    assert results["mig"]["representation"] == "sampled"
    with pytest.raises(ValueError, match="needs a Gaussian encoder"):
        CodeSource(dataset, toy.family_fn("small", "nonlinear"), mode="sampled")


def test_mean_and_sampled_evaluations_share_one_code_cache():
    dataset = toy.ToyDataset("small")
    names = ["mig", "factor_vae_metric"]
    params = {"mig": {"num_train": 600}, "factor_vae_metric": SMALL_PARAMS["factor_vae_metric"]}
    encoder = Gaussian()
    cache = CodeCache()
    mean = evaluate_representation(dataset, encoder, names, mode="mean", params=params, code_cache=cache)
    calls_after_mean = encoder.calls
    sampled = evaluate_representation(
        dataset, encoder, names, mode="sampled", params=params, code_cache=cache
    )
    assert 0 < calls_after_mean <= 120 and encoder.calls == calls_after_mean  # nothing encoded twice
    assert sampled["mig"]["code_cache"]["images_encoded"] == 0
    # The same values as evaluations with caches of their own.
    alone = Gaussian()
    assert (
        evaluate_representation(dataset, alone, names, mode="sampled", params=params)["mig"]["values"]
        == (sampled["mig"]["values"])
    )
    assert (
        evaluate_representation(dataset, alone, names, mode="mean", params=params)["mig"]["values"]
        == (mean["mig"]["values"])
    )
    # A cache filled at another precision, or for another dataset or encoder kind, starts afresh
    # instead of answering wrongly.
    filled = cache.keys.shape[0]
    assert filled > 0 and CodeSource(dataset, encoder, store=cache, precision="bf16").store.keys.shape[0] == 0
    assert cache.signature[-1] == "bf16"
    other = CodeSource(toy.ToyDataset("small"), toy.family_fn("small", "nonlinear"), store=cache)
    assert other.store.keys.shape[0] == 0
    np.testing.assert_array_equal(
        other.codes(dataset.sample_factors(50, 0), 0),
        toy.family_fn("small", "nonlinear")(
            dataset.sample_observations_from_factors(dataset.sample_factors(50, 0), 0)
        ),
    )


class NoisyToy(toy.ToyDataset):
    deterministic = False


def test_no_cache_for_random_images_or_stochastic_representations():
    representation = Counting()
    source = CodeSource(NoisyToy("small"), representation)
    factors = NoisyToy("small").sample_factors(300, 0)
    source.codes(factors, 0)
    source.codes(factors, 0)
    assert not source.cached and source.stats()["images_encoded"] == 600 == len(representation.seen)
    assert not CodeSource(toy.ToyDataset("small"), representation, deterministic=False).cached


class Noisy:
    """An external encoder that samples internally: fresh noise at every call, from its own generator."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def __call__(self, images):
        images = np.asarray(images, dtype=np.float64)
        return images + 1.5 * self.rng.standard_normal(images.shape)


def test_a_representation_that_samples_internally_is_never_cached():
    dataset = toy.ToyDataset("small")
    params = {"factor_vae_metric": {"num_train": 300, "num_eval": 200, "num_variance_estimate": 500}}
    probed = evaluate_representation(dataset, Noisy(), ["factor_vae"], seed=1, params=params, n_jobs=1)
    stats = probed["factor_vae_metric"]["code_cache"]
    assert not stats["cached"]
    assert stats["determinism"] == "probed: output differs between two encodings of the same images"
    # The uncached reference: the same noise stream, advanced past the probe's two 8-image encodings.
    reference_fn = Noisy()
    reference_fn(np.zeros((8, 3)))
    reference_fn(np.zeros((8, 3)))
    reference = evaluate_representation(
        dataset, reference_fn, ["factor_vae"], seed=1, params=params, n_jobs=1, deterministic=False
    )
    assert probed["factor_vae_metric"]["values"] == reference["factor_vae_metric"]["values"]
    # Caching it anyway freezes one noise draw per image, some images' codes stay persistently off, and
    # the score drops (the failure reported against the old cache: 0.836 instead of dlib's 0.956).
    frozen = evaluate_representation(
        dataset, Noisy(), ["factor_vae"], seed=1, params=params, n_jobs=1, deterministic=True
    )
    assert frozen["factor_vae_metric"]["code_cache"]["cached"]
    frozen_accuracy = frozen["factor_vae_metric"]["values"]["eval_accuracy"]
    assert frozen_accuracy < reference["factor_vae_metric"]["values"]["eval_accuracy"] - 0.05


def test_an_undeclared_deterministic_callable_is_probed_and_cached():
    source = CodeSource(toy.ToyDataset("small"), toy.family_fn("small", "nonlinear"))
    assert source.cached and source.stats()["determinism"] == "probed: same output twice"
    assert source.stats()["images_encoded"] == 0  # the probe is not counted as the metrics' encoding


def test_runner_rejects_bad_arguments():
    dataset = toy.ToyDataset("small")
    fn = toy.family_fn("small", "nonlinear")
    with pytest.raises(ValueError, match=r"params\['mig'\] has unknown parameters \['bins'\]"):
        evaluate_representation(dataset, fn, ["mig"], params={"mig": {"bins": 3}})
    with pytest.raises(ValueError, match="params names metrics that are not evaluated"):
        evaluate_representation(dataset, fn, ["mig"], params={"dci": {"num_train": 10}})
    with pytest.raises(ValueError, match="seed must be an integer"):
        evaluate_representation(dataset, fn, ["mig"], seed=1.5)
    with pytest.raises(ValueError, match="representation_fn returned non-finite codes"):
        evaluate_representation(dataset, lambda x: np.full((len(x), 2), np.nan), ["mig"])
    with pytest.raises(TypeError, match="representation_fn must be callable"):
        evaluate_representation(dataset, object(), ["mig"])

"""Known answers and invariances of the metrics: closed forms, permutations, perfect and constant codes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parent / "data" / "reference"))

import toy  # noqa: E402

from untwine.metrics import (  # noqa: E402
    beta_vae_score,
    dci,
    discrete_entropy,
    discrete_mutual_info,
    downstream_task,
    factor_vae_score,
    gaussian_total_correlation,
    gaussian_wasserstein_correlation,
    histogram_discretize,
    irs,
    mig,
    modularity_explicitness,
    mutual_info_matrix,
    sap,
    udr,
    udr_score,
    unsupervised_scores,
)
from untwine.metrics._estimators import RAND_R_MAX, gbt_random_states  # noqa: E402
from untwine.metrics.dci import completeness, disentanglement  # noqa: E402

RNG = np.random.default_rng(12345)
SIZES = (4, 5, 6)


def grid_factors(n: int, sizes=SIZES, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, k, n) for k in sizes], axis=1)


def perfect_codes(factors: np.ndarray, sizes=SIZES) -> np.ndarray:
    return (factors / (np.asarray(sizes) - 1.0) * 2.0 - 1.0).astype(np.float32)


# -- closed forms -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("rho", [0.0, 0.3, -0.7, 0.95])
def test_gaussian_scores_closed_form(rho):
    cov = np.array([[1.0, rho], [rho, 1.0]])
    assert gaussian_total_correlation(cov) == pytest.approx(-0.5 * np.log(1.0 - rho**2), abs=1e-12)
    expected = 4.0 - 2.0 * (np.sqrt(1.0 + rho) + np.sqrt(1.0 - rho))
    assert gaussian_wasserstein_correlation(cov) == pytest.approx(expected, abs=1e-12)


def test_gaussian_total_correlation_of_scaled_covariance():
    # TC is invariant to rescaling the dimensions, and 0 for a diagonal covariance.
    a = RNG.standard_normal((4, 4))
    cov = a @ a.T + 0.1 * np.eye(4)
    scale = np.diag([0.5, 2.0, 3.0, 10.0])
    assert gaussian_total_correlation(scale @ cov @ scale) == pytest.approx(gaussian_total_correlation(cov))
    assert gaussian_total_correlation(np.diag([1.0, 5.0, 0.2])) == pytest.approx(0.0, abs=1e-12)
    assert gaussian_wasserstein_correlation(np.diag([1.0, 5.0, 0.2])) == pytest.approx(0.0, abs=1e-12)


def test_mutual_information_of_identical_variables_is_the_entropy():
    y = RNG.integers(0, 7, size=5000)
    entropy = discrete_entropy(y[:, np.newaxis])[0]
    p = np.bincount(y) / y.size
    assert entropy == pytest.approx(-(p * np.log(p)).sum(), abs=1e-12)
    assert discrete_mutual_info(y, y) == pytest.approx(entropy, abs=1e-12)
    x = RNG.integers(0, 5, size=5000)
    assert discrete_mutual_info(x, y) == pytest.approx(mutual_info_score(x, y), abs=1e-12)


def test_histogram_discretization_uses_numpys_edges_bit_for_bit():
    # Grid values lie exactly on bin edges: only numpy's own edges (float32 here) put them in the same bins.
    codes = np.concatenate(
        [perfect_codes(grid_factors(2000, (40, 32, 7))), RNG.standard_normal((2000, 2)).astype(np.float32)],
        axis=1,
    )
    expected = np.stack([np.digitize(c, np.histogram(c, 20)[1][:-1]) for c in codes.T], axis=1)
    np.testing.assert_array_equal(histogram_discretize(codes, 20), expected)
    assert histogram_discretize(codes, 20).min() == 1 and histogram_discretize(codes, 20).max() == 20


def test_dci_formulas():
    identity = np.eye(3)
    assert disentanglement(identity) == pytest.approx(1.0, abs=1e-9)
    assert completeness(identity) == pytest.approx(1.0, abs=1e-9)
    uniform = np.ones((4, 3))
    assert disentanglement(uniform) == pytest.approx(0.0, abs=1e-9)
    assert completeness(uniform) == pytest.approx(0.0, abs=1e-9)
    assert disentanglement(np.zeros((3, 3))) == pytest.approx(0.0, abs=1e-9)


def test_gbt_random_states_match_sequential_fits():
    # The per-factor states are exactly where a shared stream would be after the previous fits.
    from sklearn.ensemble import GradientBoostingClassifier

    x = RNG.standard_normal((60, 3)).astype(np.float32)
    ys = [RNG.integers(0, 2, 60), RNG.integers(0, 3, 60)]
    shared = np.random.RandomState(7)
    sequential = [GradientBoostingClassifier(n_estimators=5, random_state=shared).fit(x, y) for y in ys]
    states = gbt_random_states(7, [2, 3], n_estimators=5)
    for y, state, reference in zip(ys, states, sequential, strict=True):
        model = GradientBoostingClassifier(n_estimators=5, random_state=state).fit(x, y)
        np.testing.assert_array_equal(model.feature_importances_, reference.feature_importances_)
    # After the last fit (5 stages x 3 trees) the shared stream is where the last state ends.
    last = gbt_random_states(7, [2, 3], n_estimators=5)[1]
    last.randint(0, RAND_R_MAX, size=5 * 3)
    assert shared.randint(0, RAND_R_MAX) == last.randint(0, RAND_R_MAX)


# -- invariances --------------------------------------------------------------------------------------------
def noisy_codes(factors, noise=0.3, extra=2, seed=0):
    rng = np.random.default_rng(seed)
    base = perfect_codes(factors).astype(np.float64)
    codes = np.concatenate([base, rng.standard_normal((factors.shape[0], extra))], axis=1)
    return codes + noise * rng.standard_normal(codes.shape)


def test_permuting_code_dimensions_leaves_scores_unchanged():
    factors = grid_factors(1500)
    test_factors = grid_factors(600, seed=1)
    codes, test_codes = noisy_codes(factors), noisy_codes(test_factors, seed=1)
    perm = np.array([3, 0, 4, 2, 1])
    mig_a, mi_a = mig(codes, factors, return_matrices=True)
    mig_b, mi_b = mig(codes[:, perm], factors, return_matrices=True)
    assert mig_b["discrete_mig"] == pytest.approx(mig_a["discrete_mig"], abs=1e-12)
    np.testing.assert_allclose(mi_b["mutual_info"], mi_a["mutual_info"][perm], atol=1e-12)
    assert sap(codes[:, perm], factors, test_codes[:, perm], test_factors)["SAP_score"] == pytest.approx(
        sap(codes, factors, test_codes, test_factors)["SAP_score"], abs=1e-12
    )
    dci_a, imp_a = dci(codes, factors, test_codes, test_factors, return_matrices=True)
    dci_b, imp_b = dci(codes[:, perm], factors, test_codes[:, perm], test_factors, return_matrices=True)
    # The trees visit features in a random order, which decides ties between equally good splits (they
    # happen in small nodes deep in the trees): the scores agree up to such ties.
    for key in dci_a:
        assert dci_b[key] == pytest.approx(dci_a[key], abs=0.01), key
    np.testing.assert_allclose(imp_b["importance_matrix"], imp_a["importance_matrix"][perm], atol=0.01)


def test_affine_and_monotone_transforms_barely_change_histogram_mutual_information():
    factors = grid_factors(4000)
    codes = noisy_codes(factors, noise=0.2)
    reference = mutual_info_matrix(codes, factors)
    affine = mutual_info_matrix(3.0 * codes + 1.5, factors)
    np.testing.assert_allclose(affine, reference, atol=1e-9)
    monotone = mutual_info_matrix(np.tanh(codes / 2.0), factors)
    np.testing.assert_allclose(monotone, reference, atol=0.06)
    assert mig(np.tanh(codes / 2.0), factors)["discrete_mig"] == pytest.approx(
        mig(codes, factors)["discrete_mig"], abs=0.03
    )


# -- perfect and constant codes ---------------------------------------------------------------------------------
def test_perfect_codes_score_close_to_one():
    factors, test_factors = grid_factors(3000), grid_factors(1000, seed=1)
    codes, test_codes = perfect_codes(factors), perfect_codes(test_factors)
    assert mig(codes, factors)["discrete_mig"] > 0.99
    assert sap(codes, factors, continuous_factors=True)["SAP_score"] > 0.99
    values = modularity_explicitness(codes, factors, test_codes, test_factors)
    assert values["modularity_score"] > 0.99 and values["explicitness_score_test"] > 0.99
    values = dci(codes, factors, test_codes, test_factors, fast=True)
    assert min(values.values()) > 0.99
    assert irs(codes, factors)["IRS"] == pytest.approx(1.0)


def test_perfect_codes_score_one_on_the_sampling_metrics():
    dataset = toy.ToyDataset("small")
    fn = toy.family_fn("small", "partial", 0)  # noise-free: no pure-noise dims to confuse anything
    # A known weakness of the BetaVAE score: f0 is not encoded at all, yet it is identified by elimination.
    assert beta_vae_score(dataset, fn, 0, num_train=500, num_eval=200)["eval_accuracy"] == 1.0
    perfect = toy.family_fn("small", "nonlinear", 0)
    assert (
        factor_vae_score(
            dataset, lambda x: x.astype(np.float32), 0, num_train=300, num_eval=200, num_variance_estimate=500
        )["eval_accuracy"]
        == 1.0
    )
    assert (
        beta_vae_score(dataset, lambda x: x.astype(np.float32), 0, num_train=500, num_eval=200)[
            "eval_accuracy"
        ]
        == 1.0
    )
    assert (
        factor_vae_score(dataset, perfect, 0, num_train=300, num_eval=200, num_variance_estimate=500)[
            "eval_accuracy"
        ]
        > 0.9
    )


def test_constant_codes_give_the_defined_values():
    factors, test_factors = grid_factors(800), grid_factors(400, seed=1)
    codes = np.tile(np.array([[0.25, -1.0, 3.0]], dtype=np.float32), (800, 1))
    test_codes = codes[:400]
    assert mig(codes, factors)["discrete_mig"] == 0.0
    assert sap(codes, factors, test_codes, test_factors)["SAP_score"] == 0.0
    assert sap(codes, factors, continuous_factors=True)["SAP_score"] == 0.0
    values = modularity_explicitness(codes, factors, test_codes, test_factors)
    assert values == {
        "modularity_score": 0.0,
        "explicitness_score_train": 0.5,
        "explicitness_score_test": 0.5,
    }
    values = unsupervised_scores(codes)
    assert values == {
        "gaussian_total_correlation": 0.0,
        "gaussian_wasserstein_correlation": 0.0,
        "gaussian_wasserstein_correlation_norm": 0.0,
        "mutual_info_score": 0.0,
    }
    assert irs(codes, factors) == {"IRS": 0.0, "num_active_dims": 0}
    for fast in (False, True):
        values = dci(codes, factors, test_codes, test_factors, fast=fast)
        assert values["disentanglement"] == pytest.approx(0.0, abs=1e-9)
        assert values["completeness"] == pytest.approx(0.0, abs=1e-9)
    values = downstream_task(codes, factors, test_codes, test_factors, num_train=[50, 800])
    majority = np.mean([np.mean(test_factors[:, j] == np.bincount(factors[:, j]).argmax()) for j in range(3)])
    assert values["800:mean_test_accuracy"] <= majority + 1e-12
    dataset = toy.ToyDataset("small")
    constant = lambda x: np.zeros((x.shape[0], 4), np.float32)  # noqa: E731
    assert factor_vae_score(dataset, constant, 0, num_train=100, num_eval=100, num_variance_estimate=100) == {
        "train_accuracy": 0.0,
        "eval_accuracy": 0.0,
        "num_active_dims": 0,
    }
    assert beta_vae_score(dataset, constant, 0, num_train=300, num_eval=300)["eval_accuracy"] < 0.5


def test_collapsed_and_duplicated_dimensions():
    # One informative dim among constants (dlib: NaN total correlation, explicitness raises) and two
    # identical dims (singular covariance: infinite total correlation, real Wasserstein values).
    factors, test_factors = grid_factors(1000), grid_factors(500, seed=1)
    codes = perfect_codes(factors)
    collapsed = np.concatenate([codes[:, 2:], np.full((1000, 3), 0.3, np.float32)], axis=1)
    values = unsupervised_scores(collapsed)
    assert values["gaussian_total_correlation"] == 0.0 and np.isfinite(
        values["gaussian_wasserstein_correlation"]
    )
    explicit = modularity_explicitness(
        collapsed,
        factors,
        np.concatenate([perfect_codes(test_factors)[:, 2:], np.full((500, 3), 0.3, np.float32)], axis=1),
        test_factors,
    )
    assert 0.5 < explicit["explicitness_score_test"] < 1.0
    duplicated = np.concatenate([codes, codes[:, :1]], axis=1)
    values = unsupervised_scores(duplicated)
    assert values["gaussian_total_correlation"] == np.inf
    assert isinstance(values["gaussian_wasserstein_correlation"], float)
    assert values["gaussian_wasserstein_correlation"] > 0


def test_single_factor_and_single_code_edge_cases():
    factors = grid_factors(600)[:, :1]
    codes = perfect_codes(grid_factors(600))[:, :1]
    assert mig(codes, factors)["discrete_mig"] > 0.99
    values = dci(codes, factors, codes[:200], factors[:200], fast=True)
    assert values["disentanglement"] == 1.0 and values["completeness"] == 1.0
    values = modularity_explicitness(codes, factors, codes[:200], factors[:200])
    assert values["modularity_score"] == 1.0
    assert unsupervised_scores(codes)["mutual_info_score"] == 0.0


# -- UDR --------------------------------------------------------------------------------------------------------
def test_udr_of_permuted_copies_is_one_and_of_unrelated_models_is_low():
    z = RNG.standard_normal((800, 4))
    permuted = -2.0 * z[:, [2, 0, 3, 1]]
    # Lasso on standardised latents shrinks each matching coefficient to 1 - alpha and zeroes the others;
    # the relative strength of a permutation matrix scaled by c is c.
    scores = udr([z, permuted, z[:, [1, 0, 2, 3]]], correlation="lasso")
    assert np.allclose(scores["model_scores"], 0.9, atol=1e-6)
    # Spearman: 1 on the matching pairs, plus the small sample correlations of independent latents.
    scores = udr([z, permuted, z[:, [1, 0, 2, 3]]], correlation="spearman")
    assert min(scores["model_scores"]) > 0.85
    unrelated = udr([z, RNG.standard_normal((800, 4)), RNG.standard_normal((800, 4))], correlation="spearman")
    assert max(unrelated["model_scores"]) < 0.5
    # Uninformative latents (low KL) are left out: a model with two dead latents still matches.
    dead = np.concatenate([z[:, :2], np.zeros((800, 2))], axis=1)
    scores = udr(
        [z[:, :2] * 3.0, dead], kl=[np.ones(2), np.array([1.0, 1.0, 0.0, 0.0])], correlation="spearman"
    )
    assert min(scores["model_scores"]) > 0.9
    unfiltered = udr([z[:, :2] * 3.0, dead], correlation="spearman")
    assert max(unfiltered["model_scores"]) < min(scores["model_scores"]) - 0.1


def test_udr_score_feeds_every_model_the_same_images():
    dataset = toy.ToyDataset("small")
    seen = []

    class Gaussian:
        def __init__(self, permutation, dead=()):
            self.permutation, self.dead = permutation, list(dead)

        def encode_mean_logvar(self, images):
            seen.append(np.asarray(images).copy())
            mean = toy.family_fn("small", "nonlinear")(images)[:, self.permutation]
            logvar = np.full_like(mean, -3.0)
            mean[:, self.dead], logvar[:, self.dead] = 0.0, 0.0  # a latent at the prior: KL 0
            return mean, logvar

    models = [Gaussian([0, 1, 2]), Gaussian([2, 0, 1]), Gaussian([1, 2, 0], dead=[2])]
    scores = udr_score(dataset, models, 0, num_points=400, batch_size=100, correlation="spearman")
    assert all(np.array_equal(seen[0], seen[i]) for i in (1, 2))  # the first batch, for every model
    # Permuted copies of the same latents (sample correlations between independent latents lower the
    # Spearman score a little); the dead latent of the third model is left out, not counted against it.
    assert min(scores["model_scores"]) > 0.75
    assert np.asarray(scores["pairwise_disentanglement_scores"])[0, 1] > 0.85

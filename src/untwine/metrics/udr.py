"""Unsupervised Disentanglement Ranking (Duan et al. 2020, "Unsupervised Model Selection for Variational
Disentangled Representation Learning"), as in disentanglement_lib's ``udr_sklearn``.

UDR compares *several* models trained on the same data: for every ordered pair (i, j) of models, a
similarity matrix between the latents of model i and model j -- absolute Lasso(alpha=0.1) regression
coefficients from standardised latents of i to those of j, or absolute Spearman rank correlations --
restricted to the latents of both models whose average KL divergence from the prior exceeds
``kl_threshold`` (informative latents), is scored by relative strength: the mean over columns of
``max^2 / sum`` and the mean over rows of the same, averaged.  A model's UDR score is the median of
its pairwise scores against the other models.

Differences from disentanglement_lib: uninformative latents are zeroed with ``kl_threshold`` (dlib
hard-codes 0.01 there, whatever ``kl_filter_threshold`` says); the Spearman correlation of a
constant latent is 0 (dlib gets NaN, which then zeroes every score of its row and column); and with no
informative latent the pairwise score is 0.
"""

from __future__ import annotations

import numpy as np

from untwine.metrics._validation import check_codes, check_positive_int
from untwine.metrics.representation import _to_numpy, gaussian_encoder
from untwine.utils.rng import as_generator

CORRELATIONS = ("lasso", "spearman")


def relative_strength(similarity: np.ndarray) -> float:
    """dlib's ``relative_strength_disentanglement`` of a non-negative similarity matrix."""
    if similarity.size == 0:
        return 0.0

    def side(matrix, axis):
        peak = matrix.max(axis=axis)
        total = matrix.sum(axis=axis)
        return np.divide(peak**2, total, out=np.zeros_like(peak), where=total > 0).mean()

    return float((side(similarity, 0) + side(similarity, 1)) / 2.0)


def spearman_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|spearman(a[:, i], b[:, j])|`` for all column pairs; 0 where a column is constant."""
    from scipy.stats import rankdata

    def centred_ranks(x):
        ranks = rankdata(x, axis=0)
        ranks -= ranks.mean(axis=0)
        norms = np.linalg.norm(ranks, axis=0)
        return np.divide(ranks, norms, out=np.zeros_like(ranks), where=norms > 0)

    return np.abs(centred_ranks(a).T @ centred_ranks(b))


def lasso_matrix(a: np.ndarray, b: np.ndarray, alpha: float, random_state) -> np.ndarray:
    """``|coef|`` of a multi-output Lasso from ``a`` to ``b``, as (columns of a) x (columns of b)."""
    from sklearn.linear_model import Lasso

    model = Lasso(alpha=alpha, random_state=random_state).fit(a, b)
    return np.abs(np.atleast_2d(model.coef_)).reshape(b.shape[1], a.shape[1]).T


def gaussian_kl(mean: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Average KL(N(mean, exp(logvar)) || N(0, 1)) per latent over the points."""
    return np.mean(0.5 * (np.square(mean) + np.exp(logvar) - logvar - 1.0), axis=0)


def udr(
    codes,
    *,
    kl=None,
    correlation: str = "lasso",
    kl_threshold: float = 0.01,
    filter_low_kl: bool = True,
    alpha: float = 0.1,
    random_state: int = 0,
    return_matrices: bool = False,
):
    """UDR scores of M >= 2 models from their codes on the *same* N observations.

    Args:
        codes: list of M arrays (N x d_m), the representation (encoder means) of each model.
        kl: optional list of M arrays (d_m,) of average KL per latent; without it every latent counts as
            informative.
        correlation: ``"lasso"`` (default) or ``"spearman"``.
        kl_threshold: latents with average KL <= threshold are uninformative (0.01).
        filter_low_kl: restrict the similarity matrices to informative latents (True).
        alpha: Lasso regularisation (0.1).
        random_state: Lasso's random_state (its cyclic solver is deterministic).
        return_matrices: also return ``{"similarity": M x M list of matrices, "informative": masks}``.

    Returns:
        ``{"model_scores": [M floats], "pairwise_disentanglement_scores": (M, M) list}``.
    """
    if correlation not in CORRELATIONS:
        raise ValueError(f"correlation must be one of {CORRELATIONS}, got {correlation!r}")
    if isinstance(codes, np.ndarray) or len(codes) < 2:
        raise ValueError("codes must be a list of at least two models' code arrays")
    codes = [check_codes(c, f"codes[{m}]", min_points=2).astype(np.float64) for m, c in enumerate(codes)]
    num_points = codes[0].shape[0]
    for m, c in enumerate(codes):
        if c.shape[0] != num_points:
            raise ValueError(f"codes[{m}] has {c.shape[0]} points but codes[0] has {num_points}")
    if kl is None:
        kl = [np.full(c.shape[1], np.inf) for c in codes]
    if len(kl) != len(codes):
        raise ValueError(f"kl has {len(kl)} entries for {len(codes)} models")
    kl = [np.asarray(k, dtype=np.float64).reshape(-1) for k in kl]
    for m, (k, c) in enumerate(zip(kl, codes, strict=True)):
        if k.shape[0] != c.shape[1]:
            raise ValueError(f"kl[{m}] has {k.shape[0]} entries but codes[{m}] has {c.shape[1]} dimensions")
    informative = [k > kl_threshold for k in kl]
    standardised = []
    for c, mask in zip(codes, informative, strict=True):
        std = c.std(axis=0)
        z = (c - c.mean(axis=0)) / np.where(std > 0, std, 1.0)
        standardised.append(z * mask)
    num_models = len(codes)
    pairwise = np.zeros((num_models, num_models))
    similarity = [[None] * num_models for _ in range(num_models)]
    for i in range(num_models):
        for j in range(num_models):
            if i == j:
                continue
            if correlation == "lasso":
                matrix = lasso_matrix(standardised[i], standardised[j], alpha, random_state)
            else:
                matrix = spearman_matrix(standardised[i], standardised[j])
            similarity[i][j] = matrix
            if filter_low_kl:
                matrix = matrix[np.ix_(informative[i], informative[j])]
            pairwise[i, j] = relative_strength(matrix)
    model_scores = [float(np.median(np.delete(pairwise[:, i], i))) for i in range(num_models)]
    scores = {"model_scores": model_scores, "pairwise_disentanglement_scores": pairwise.tolist()}
    if return_matrices:
        return scores, {"similarity": similarity, "informative": informative}
    return scores


def udr_score(
    dataset, representation_fns, rng, *, num_points: int = 1000, batch_size: int = 100, **udr_options
):
    """UDR of several models on ``num_points`` observations sampled once from ``dataset``.

    Every model sees the very same images.  A model with ``encode_mean_logvar`` contributes its means as
    codes and its average KL per latent; a plain callable contributes its output and counts as fully
    informative.  ``udr_options`` go to :func:`udr` (``correlation``, ``kl_threshold``, ...).
    """
    num_points = check_positive_int(num_points, "num_points", 2)
    batch_size = check_positive_int(batch_size, "batch_size")
    if len(representation_fns) < 2:
        raise ValueError("representation_fns must hold at least two models")
    rng = as_generator(rng)
    factors = dataset.sample_factors(num_points, rng)
    means = [[] for _ in representation_fns]
    logvars = [[] for _ in representation_fns]
    for start in range(0, num_points, batch_size):
        images = dataset.sample_observations_from_factors(factors[start : start + batch_size], rng)
        for m, fn in enumerate(representation_fns):
            encode = gaussian_encoder(fn)
            if encode is not None:
                mean, logvar = encode(images)
                means[m].append(_to_numpy(mean))
                logvars[m].append(_to_numpy(logvar))
            else:
                means[m].append(_to_numpy(fn(images)))
    codes = [np.concatenate(parts) for parts in means]
    kl = [
        gaussian_kl(c, np.concatenate(lv)) if lv else np.full(c.shape[1], np.inf)
        for c, lv in zip(codes, logvars, strict=True)
    ]
    return udr(codes, kl=kl, **udr_options)

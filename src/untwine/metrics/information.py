"""Histogram discretisation and discrete mutual information (the building blocks of MIG, modularity,
IRS and the unsupervised mutual-information score).

Discretisation follows disentanglement_lib exactly: each code dimension ``x`` is mapped to
``np.digitize(x, edges[:-1])`` where ``edges`` are numpy's equal-width histogram edges of ``x`` with
``num_bins`` bins (bins ``1 .. num_bins``; a value on an interior edge goes to the upper bin, the
maximum to bin ``num_bins``).  The edges are numpy's own (``np.histogram_bin_edges``), computed in the
codes' dtype, so they are bit-identical to the reference even when many codes sit exactly on an edge.

Mutual information and entropy are in nats, computed from the contingency table; they equal
``sklearn.metrics.mutual_info_score`` up to floating-point summation order.
"""

from __future__ import annotations

import numpy as np

from untwine.metrics._validation import check_codes, check_pair, check_positive_int


def histogram_discretize(codes, num_bins: int = 20) -> np.ndarray:
    """Discretise every column of ``codes`` (n x d) into ``num_bins`` equal-width bins: int64 in 1..num_bins.

    A constant column lands in a single bin (numpy widens its range to ``[c - 0.5, c + 0.5]``).
    """
    codes = check_codes(codes, "codes")
    num_bins = check_positive_int(num_bins, "num_bins")
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        column = codes[:, j]
        edges = np.histogram_bin_edges(column, bins=num_bins)
        out[:, j] = np.digitize(column, edges[:-1])
    return out


def _dense_labels(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Relabel values as 0..m-1; return (labels, m)."""
    values, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64), int(values.shape[0])


def _mutual_info_dense(a: np.ndarray, na: int, b: np.ndarray, nb: int) -> float:
    if na == 1 or nb == 1:
        return 0.0  # a constant variable carries no information
    n = a.shape[0]
    joint = np.bincount(a * nb + b, minlength=na * nb).astype(np.float64)
    count_a = np.bincount(a, minlength=na).astype(np.float64)
    count_b = np.bincount(b, minlength=nb).astype(np.float64)
    nonzero = np.flatnonzero(joint)
    n_ij = joint[nonzero]
    outer = count_a[nonzero // nb] * count_b[nonzero % nb]
    terms = (n_ij / n) * (np.log(n_ij) + np.log(n) - np.log(outer))
    terms[np.abs(terms) < np.finfo(np.float64).eps] = 0.0  # rounding noise, as scikit-learn clears it
    return max(float(terms.sum()), 0.0)


def discrete_mutual_info(labels_a, labels_b) -> float:
    """Mutual information (nats) of two discrete label vectors of the same length."""
    a = np.asarray(labels_a).reshape(-1)
    b = np.asarray(labels_b).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"labels_b has {b.shape[0]} points but labels_a has {a.shape[0]}")
    if a.size == 0:
        raise ValueError("labels_a is empty")
    a, na = _dense_labels(a)
    b, nb = _dense_labels(b)
    return _mutual_info_dense(a, na, b, nb)


def discrete_entropy(labels) -> np.ndarray:
    """Entropy (nats) of each column of a discrete ``(n, K)`` array (``H(y) = I(y; y)``)."""
    labels = np.asarray(labels)
    if labels.ndim == 1:
        labels = labels[:, np.newaxis]
    out = np.zeros(labels.shape[1])
    for j in range(labels.shape[1]):
        _, counts = np.unique(labels[:, j], return_counts=True)
        p = counts / counts.sum()
        out[j] = max(float(-(p * np.log(p)).sum()), 0.0)
    return out


def discrete_mutual_info_matrix(discrete_a, discrete_b) -> np.ndarray:
    """``m[i, j] = I(a_i; b_j)`` for the columns of two discrete ``(n, .)`` arrays."""
    discrete_a = np.asarray(discrete_a)
    discrete_b = np.asarray(discrete_b)
    dense_a = [_dense_labels(discrete_a[:, i]) for i in range(discrete_a.shape[1])]
    dense_b = [_dense_labels(discrete_b[:, j]) for j in range(discrete_b.shape[1])]
    m = np.zeros((len(dense_a), len(dense_b)))
    for i, (a, na) in enumerate(dense_a):
        for j, (b, nb) in enumerate(dense_b):
            m[i, j] = _mutual_info_dense(a, na, b, nb)
    return m


def mutual_info_matrix(codes, factors, num_bins: int = 20) -> np.ndarray:
    """The ``(num_codes, num_factors)`` matrix of I(histogram-discretised code i; factor j), in nats.

    This is the matrix behind MIG and modularity (rows: code dimensions, columns: factors).
    """
    codes, factors = check_pair(codes, factors, "codes", "factors", require_variation=False)
    return discrete_mutual_info_matrix(histogram_discretize(codes, num_bins), factors)

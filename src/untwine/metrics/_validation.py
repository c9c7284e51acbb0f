"""Argument checks shared by the array-layer metrics.

Every check raises a ``ValueError`` whose message starts with the name of the offending argument, so a
user sees at once which array is wrong (``codes_test`` rather than "input").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_codes(codes, name: str = "codes", *, min_points: int = 1, min_dims: int = 1) -> np.ndarray:
    """Return ``codes`` as a 2-D float array ``(n, d)``; float32/float64 inputs keep their dtype.

    The dtype matters: the histogram bin edges of the discretised metrics are computed in the codes'
    own precision, exactly like disentanglement_lib does.
    """
    array = np.asarray(codes)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a numeric array, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (num_points, num_codes), got shape {array.shape}")
    if array.dtype.kind != "f" or array.dtype.itemsize < 4:
        array = array.astype(np.float64)
    if array.shape[0] < min_points:
        raise ValueError(f"{name} has {array.shape[0]} points; at least {min_points} are needed")
    if array.shape[1] < min_dims:
        raise ValueError(f"{name} has {array.shape[1]} code dimensions; at least {min_dims} are needed")
    finite = np.isfinite(array)
    if not finite.all():
        row, col = map(int, np.argwhere(~finite)[0])
        raise ValueError(f"{name} must be finite, but {name}[{row}, {col}] = {array[row, col]}")
    return array


def check_factors(
    factors,
    name: str = "factors",
    *,
    num_points: int | None = None,
    points_name: str = "codes",
    min_points: int = 1,
    num_factors: int | None = None,
    require_variation: bool = True,
) -> np.ndarray:
    """Return ``factors`` as an int64 ``(n, K)`` array of non-negative integer values.

    ``num_points`` is the number of rows the matching code array has (named ``points_name`` in the
    error).  With ``require_variation`` every factor must take at least two distinct values: a factor
    that never changes has zero entropy and no classifier can be trained on it.
    """
    array = np.asarray(factors)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (num_points, num_factors), got shape {array.shape}")
    if array.dtype.kind == "b" or array.dtype == object or array.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold integer factor values, got dtype {array.dtype}")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or not (array == np.round(array)).all():
            raise ValueError(f"{name} must hold integer factor values, got non-integer values")
    array = array.astype(np.int64)
    if num_points is not None and array.shape[0] != num_points:
        raise ValueError(
            f"{name} has {array.shape[0]} points but {points_name} has {num_points}; they must match row for row"
        )
    if array.shape[0] < min_points:
        raise ValueError(f"{name} has {array.shape[0]} points; at least {min_points} are needed")
    if array.shape[1] < 1:
        raise ValueError(f"{name} has no factor columns")
    if num_factors is not None and array.shape[1] != num_factors:
        raise ValueError(f"{name} has {array.shape[1]} factors but the training factors have {num_factors}")
    if array.size and array.min() < 0:
        row, col = map(int, np.argwhere(array < 0)[0])
        raise ValueError(
            f"{name} must be non-negative factor indices, but {name}[{row}, {col}] = {array[row, col]}"
        )
    if require_variation:
        for j in range(array.shape[1]):
            if array.shape[0] and (array[:, j] == array[0, j]).all():
                raise ValueError(
                    f"{name}[:, {j}] takes a single value ({array[0, j]}); every factor needs at least two values"
                )
    return array


def check_pair(codes, factors, codes_name: str, factors_name: str, *, min_points: int = 1, **kwargs):
    """Check a (codes, factors) pair of matching length."""
    codes = check_codes(codes, codes_name, min_points=min_points)
    factors = check_factors(
        factors, factors_name, num_points=codes.shape[0], points_name=codes_name, **kwargs
    )
    return codes, factors


def check_train_test(
    codes_train, factors_train, codes_test, factors_test, *, min_train: int = 2, min_test: int = 1
):
    """Check a train/test split: same code dimension and number of factors on both sides."""
    codes_train, factors_train = check_pair(
        codes_train, factors_train, "codes_train", "factors_train", min_points=min_train
    )
    codes_test = check_codes(codes_test, "codes_test", min_points=min_test)
    if codes_test.shape[1] != codes_train.shape[1]:
        raise ValueError(
            f"codes_test has {codes_test.shape[1]} code dimensions but codes_train has {codes_train.shape[1]}"
        )
    factors_test = check_factors(
        factors_test,
        "factors_test",
        num_points=codes_test.shape[0],
        points_name="codes_test",
        num_factors=factors_train.shape[1],
        require_variation=False,
    )
    return codes_train, factors_train, codes_test, factors_test


# The largest code magnitude each classifier takes, and why: beyond it a fit fails or runs for minutes.
# A bound, not an internal rescaling: LinearSVC(C=0.01) is not scale invariant, so scaling the codes
# would change SAP's values on ordinary codes too.
SOLVER_LIMITS = {
    "boosted_trees": (
        float(np.finfo(np.float32).max),
        "scikit-learn's boosted trees compute in float32, where larger values are infinite",
    ),
    "linear_svc": (
        1e50,
        "LinearSVC's solver overflows float64 near 1e76 (about |code|**4 * num_points > 1e308) "
        "and then iterates for minutes",
    ),
}


def check_magnitude(codes: np.ndarray, name: str, metric: str, solver: str) -> None:
    """Refuse codes too large for ``solver`` (a key of :data:`SOLVER_LIMITS`), naming the metric, the
    code dimension and the magnitude; ``codes`` must already be a checked 2-D array."""
    limit, why = SOLVER_LIMITS[solver]
    if not codes.size:
        return
    largest = np.abs(codes).max(axis=0).astype(np.float64)  # float32 codes: compare in float64
    column = int(np.argmax(largest))
    if largest[column] > limit:
        raise ValueError(
            f"{metric}: {name}[:, {column}] reaches {float(largest[column]):.3g} in magnitude, above the "
            f"{limit:.3g} its classifier can take ({why}); rescale the codes (e.g. standardise each "
            "dimension) or check the encoder that produced them"
        )


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_fraction(value, name: str, *, low: float = 0.0, high: float = 1.0) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value}")
    return value


def check_sizes(sizes: Sequence[int], name: str, available: int) -> tuple[int, ...]:
    """Training-set sizes: positive integers no larger than the number of points available."""
    if isinstance(sizes, int | np.integer):
        sizes = (int(sizes),)
    sizes = tuple(check_positive_int(s, name) for s in sizes)
    if not sizes:
        raise ValueError(f"{name} must list at least one training-set size")
    too_big = [s for s in sizes if s > available]
    if too_big:
        raise ValueError(f"{name} asks for {too_big[0]} training points but only {available} are available")
    return sizes


def check_continuous_factors(factors, name: str, num_points: int, points_name: str) -> np.ndarray:
    """``factors`` as a float64 ``(n, K)`` array of finite numbers with ``num_points`` rows, each varying."""
    array = np.asarray(factors)
    if array.ndim == 1:
        array = array[:, np.newaxis]
    if array.ndim != 2 or array.dtype.kind not in "biuf" or array.dtype.kind == "b":
        raise ValueError(
            f"{name} must be a numeric 2-D array (num_points, num_factors), got {array.shape} {array.dtype}"
        )
    if array.shape[0] != num_points:
        raise ValueError(f"{name} has {array.shape[0]} points but {points_name} has {num_points}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        row, col = map(int, np.argwhere(~np.isfinite(array))[0])
        raise ValueError(f"{name} must be finite, but {name}[{row}, {col}] = {array[row, col]}")
    constant = [j for j in range(array.shape[1]) if np.ptp(array[:, j]) == 0]
    if constant:
        raise ValueError(f"{name}[:, {constant[0]}] is constant; every factor must vary")
    return array

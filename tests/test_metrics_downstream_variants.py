"""The reduced and the strong downstream tasks: dlib's own test expectations and invariants that follow
from their definitions (identity codes, duplicated codes, entangled codes, noise)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "data" / "reference"))

import toy  # noqa: E402

from untwine.metrics import reduced_downstream_task, strong_downstream_task  # noqa: E402
from untwine.metrics.strong_downstream import intervene  # noqa: E402


def test_intervention_fixes_another_factor_in_training_and_shifts_it_in_testing():
    # dlib's test_intervene: 10 factors of 5 values.
    rng = np.random.default_rng(0)
    sizes = [5] * 10
    train, test = rng.integers(5, size=(1000, 10)), rng.integers(5, size=(1000, 10))
    for target in range(10):
        train_int, test_int, factor, value = intervene(train, test, target, sizes, rng)
        assert factor != target
        assert np.all(train_int[:, factor] == value)
        assert np.all(test_int[:, factor] != value)
        others = np.delete(np.arange(10), factor)
        assert np.array_equal(train_int[:, others], train[:, others])
        assert np.array_equal(test_int[:, others], test[:, others])
    assert np.all(np.isin(test_int[:, factor], np.arange(5)))


def identity(images):
    return np.asarray(images, dtype=np.float64)


def entangled(images):
    """Codes that are irregular functions of the whole factor combination (its flat index): every
    combination is recognisable, no factor has a code of its own."""
    f = np.asarray(images, dtype=np.float64)
    index = f[:, 0] * 30 + f[:, 1] * 6 + f[:, 2]
    return np.stack([np.sin(1.3 * index), np.sin(2.7 * index), np.cos(0.9 * index)], axis=1)


def noise(images):
    return np.random.default_rng(len(images)).normal(size=(len(images), 3))


def test_strong_task_separates_disentangled_from_entangled_codes():
    dataset = toy.ToyDataset("small")  # factor sizes 4, 5, 6
    kwargs = dict(num_train=[300], num_test=300, n_experiment=2)
    clean = strong_downstream_task(dataset, identity, 0, **kwargs)
    # Each factor has its own code: the shifted code is ignored, nothing is lost under the shift.
    assert clean["300:mean_test_accuracy"] == pytest.approx(1.0)
    assert clean["300:mean_strong_test_accuracy"] == pytest.approx(1.0)
    assert clean["300:strong_generalization_gap"] == pytest.approx(0.0, abs=1e-12)
    mixed = strong_downstream_task(dataset, entangled, 0, **kwargs)
    # In distribution most test combinations were seen in training; under the shift none was.
    assert mixed["300:mean_test_accuracy"] > 0.8
    assert mixed["300:strong_generalization_gap"] > 0.5


def test_strong_task_on_noise_is_at_chance():
    # dlib's test_task: noise observations, strong test accuracy in [0, 0.3] (chance: 1/4 .. 1/6 here).
    scores = strong_downstream_task(
        toy.ToyDataset("small"),
        noise,
        np.random.RandomState(0),
        num_train=[300],
        num_test=300,
        n_experiment=2,
    )
    assert 0.0 <= scores["300:mean_strong_test_accuracy"] <= 0.3


def test_reduced_task_removes_the_factors_own_code():
    rng = np.random.default_rng(0)
    sizes = np.array([4, 5, 6])
    factors = rng.integers(sizes, size=(800, 3))
    test_factors = rng.integers(sizes, size=(400, 3))
    scores, details, _ = reduced_downstream_task(
        identity(factors),
        factors,
        identity(test_factors),
        test_factors,
        num_train=[800],
        return_matrices=True,
    )
    # The most informative code about factor f is f's own code: removing it leaves chance for f and
    # perfect prediction of the others.
    assert np.array_equal(details["800:removed_codes"][:, 0], [0, 1, 2])
    for f, size in enumerate(sizes):
        assert scores[f"800:reduced_factor_{f}:mean_test_accuracy_reduced_factor"] < 1.5 / size
        assert scores[f"800:reduced_factor_{f}:mean_test_accuracy_non_reduced_factor"] == 1.0
    assert scores["800:mean_test_accuracy_other_factors"] == 1.0
    # Duplicated codes: the second copy still holds the factor.
    doubled = reduced_downstream_task(
        np.hstack([factors, factors]).astype(float),
        factors,
        np.hstack([test_factors, test_factors]).astype(float),
        test_factors,
        num_train=[800],
    )
    assert doubled["800:mean_test_accuracy_reduced_factor"] == 1.0
    # Removing two dimensions from the doubled codes removes both copies.
    both = reduced_downstream_task(
        np.hstack([factors, factors]).astype(float),
        factors,
        np.hstack([test_factors, test_factors]).astype(float),
        test_factors,
        num_train=[800],
        num_factors_to_remove=2,
    )
    assert both["800:mean_test_accuracy_reduced_factor"] < 0.3


def test_reduced_task_refuses_removing_every_code():
    factors = np.random.default_rng(0).integers(3, size=(50, 2))
    with pytest.raises(ValueError, match="num_factors_to_remove = 2 leaves no code dimension"):
        reduced_downstream_task(
            identity(factors), factors, identity(factors), factors, num_train=[50], num_factors_to_remove=2
        )

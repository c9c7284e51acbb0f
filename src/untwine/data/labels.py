"""Labelled examples for the semi-supervised models: which images carry labels, and what the labels say.

* :class:`LabelledSet` -- the labelled examples of a run: given arrays, or a fixed subset of a dataset's
  factor grid chosen from a seed; :meth:`LabelledSet.draw` samples rows with a torch generator, so a run
  that checkpoints that generator resumes bit-identically.
* :func:`apply_labeller` -- the label oracles of Locatello et al. (2020) (perfect, binned, noisy,
  permuted, partial), returning a :class:`Labelling`.
* :func:`check_labels` -- class indices validated against a number of classes, with errors that name
  the offending entry.

The models that consume these live in :mod:`untwine.models.ss_vae` and :mod:`untwine.models.few_label`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from untwine.data.stream import to_torch_images

__all__ = ["LABELLERS", "LabelledSet", "Labelling", "apply_labeller", "check_labels"]

_LABEL_SEED_SALT = 0x5E1ABE1  # separates the labelled-subset draw from the run's other seeded streams


def check_labels(
    labels, num_classes: int, name: str = "labels", count: int | None = None, count_name: str = "images"
) -> np.ndarray:
    """``labels`` as int64 (n,), or a ValueError naming ``name`` and what is wrong."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a one-dimensional array of class indices, got shape {array.shape}")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ValueError(f"{name} must hold integer class indices, got non-integer values")
    elif array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class indices, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if count is not None and array.shape[0] != count:
        raise ValueError(
            f"{name} has {array.shape[0]} entries but {count_name} has {count}; "
            "they must match one label per image"
        )
    bad = np.flatnonzero((array < 0) | (array >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name}[{i}] = {array[i]} is out of range: class indices must lie in 0..{num_classes - 1} "
            f"(num_classes={num_classes})"
        )
    return array


def _check_label_matrix(
    labels, sizes: Sequence[int], name: str = "labels", count: int | None = None, count_name: str = "images"
) -> np.ndarray:
    """``labels`` as int64 (n, F) with column j in 0..sizes[j]-1, or a ValueError naming ``name``."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 2 or array.shape[1] != len(sizes):
        raise ValueError(f"{name} must have shape (n, {len(sizes)}), got {array.shape}")
    columns = [
        check_labels(array[:, j], int(size), f"{name}[:, {j}]", count, count_name)
        for j, size in enumerate(sizes)
    ]
    return np.stack(columns, 1) if columns else array.astype(np.int64)


def _choose_grid_subset(
    dataset, seed: int, num_labels: int | None, labelled_fraction: float | None
) -> np.ndarray:
    """Distinct factor-grid indices in the order drawn: ``num_labels`` of them, or
    ``round(fraction * num_states)`` (at least 1), drawn with ``numpy.random.default_rng(SeedSequence([seed,
    salt]))``.  Not sorted: :meth:`LabelledSet.split` keeps the first ``ceil(n p)`` for training, as
    disentanglement_lib splits its randomly drawn labelled points; on sorted grid indices the validation
    part would be the end of the grid (dSprites: only hearts)."""
    total = int(dataset.num_states)
    if num_labels is None:
        if labelled_fraction is None:
            raise ValueError("give num_labels or labelled_fraction")
        fraction = float(labelled_fraction)
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"labelled_fraction must lie in (0, 1], got {labelled_fraction!r}")
        num_labels = max(1, int(round(fraction * total)))
    else:
        try:
            num_labels = operator.index(num_labels)
        except TypeError:
            raise ValueError(f"num_labels must be a positive int, got {num_labels!r}") from None
        if not 1 <= num_labels <= total:
            raise ValueError(
                f"num_labels must lie in 1..{total} (the dataset's factor grid), got {num_labels}"
            )
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _LABEL_SEED_SALT]))
    return rng.choice(total, size=num_labels, replace=False).astype(np.int64)


LABELLERS = ("perfect", "bin", "noisy", "permuted", "partial")


@dataclass(frozen=True)
class Labelling:
    """A labeller's output: ``labels`` (n, F') int64, their ``sizes`` and which factors they observe."""

    labels: np.ndarray
    sizes: tuple[int, ...]
    observed_factors: tuple[int, ...]


def apply_labeller(
    factors,
    factor_sizes: Sequence[int],
    labeller: str,
    rng: np.random.Generator,
    *,
    num_bins: int = 5,
    prob_random: float = 0.1,
    num_observed_factors: int = 2,
) -> Labelling:
    """The label oracles of disentanglement_lib's semi-supervised study, on factor indices (n, F).

    ``perfect``: the factors.  ``bin``: factors with more than ``num_bins`` values binned into
    ``num_bins`` equal groups (``floor(f / (size / num_bins))``), as a rough human would.  ``noisy``: each
    entry replaced by a uniformly random value with probability ``prob_random``.  ``permuted``: each
    factor's values relabelled by a random permutation (the order information is lost).  ``partial``:
    only ``num_observed_factors`` randomly chosen factors are observed.
    """
    sizes = tuple(int(k) for k in factor_sizes)
    factors = _check_label_matrix(factors, sizes, "factors")
    n, num_factors = factors.shape
    labels = factors.copy()
    observed = tuple(range(num_factors))
    if labeller == "perfect":
        pass
    elif labeller == "bin":
        if isinstance(num_bins, bool) or not isinstance(num_bins, int | np.integer) or num_bins < 1:
            raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
        for j, size in enumerate(sizes):
            if size > num_bins:
                labels[:, j] = np.minimum(np.floor(factors[:, j] / (size / num_bins)), num_bins - 1).astype(
                    np.int64
                )
        sizes = tuple(min(size, int(num_bins)) for size in sizes)
    elif labeller == "noisy":
        if not 0.0 <= float(prob_random) <= 1.0:
            raise ValueError(f"prob_random must lie in [0, 1], got {prob_random!r}")
        replace = rng.random((n, num_factors)) < float(prob_random)
        random_values = rng.integers(0, np.asarray(sizes), size=(n, num_factors))
        labels = np.where(replace, random_values, factors).astype(np.int64)
    elif labeller == "permuted":
        for j, size in enumerate(sizes):
            labels[:, j] = rng.permutation(size)[factors[:, j]]
    elif labeller == "partial":
        if (
            isinstance(num_observed_factors, bool)
            or not isinstance(num_observed_factors, int | np.integer)
            or not 1 <= num_observed_factors <= num_factors
        ):
            raise ValueError(
                f"num_observed_factors must be an int in 1..{num_factors}, got {num_observed_factors!r}"
            )
        keep = rng.choice(num_factors, size=int(num_observed_factors), replace=False)
        labels, sizes, observed = labels[:, keep], tuple(sizes[j] for j in keep), tuple(int(j) for j in keep)
    else:
        raise ValueError(f"labeller must be one of {LABELLERS}, got {labeller!r}")
    return Labelling(np.ascontiguousarray(labels, dtype=np.int64), sizes, observed)


class LabelledSet:
    """The labelled examples of a semi-supervised run: images (or the dataset that renders them) and labels.

    ``num_classes`` an int: ``labels`` is (n,) class indices (one labelled factor, ``ss_vae``).
    ``num_classes`` a sequence of sizes: ``labels`` is (n, F), column j in ``0..sizes[j]-1`` (the S^2
    models' label vectors, after a labeller).  Build it from arrays (:meth:`from_arrays`) or as a fixed
    subset of a dataset's factor grid (:meth:`from_dataset`, :meth:`from_dataset_factors`).
    :meth:`draw` samples rows uniformly with replacement using a torch generator, so a run that
    checkpoints that generator resumes bit-identically.
    """

    def __init__(
        self,
        labels: np.ndarray,
        num_classes: int | Sequence[int],
        images: np.ndarray | None = None,
        factors: np.ndarray | None = None,
        dataset: Any = None,
        indices: np.ndarray | None = None,
    ):
        if (images is None) == (dataset is None):
            raise ValueError("a LabelledSet needs either images or a dataset (exactly one)")
        count = None if images is None else len(images)
        if isinstance(num_classes, int | np.integer):
            self.num_classes: int | tuple[int, ...] = int(num_classes)
            self.labels = check_labels(labels, self.num_classes, "labels", count)
        else:
            self.num_classes = tuple(int(k) for k in num_classes)
            self.labels = _check_label_matrix(labels, self.num_classes, "labels", count)
        if self.labels.shape[0] == 0:
            raise ValueError("labels is empty: a LabelledSet needs at least one labelled example")
        self.images = images
        self.factors = factors
        self.dataset = dataset
        self.indices = indices
        self.observed_factors: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        source = f"dataset={getattr(self.dataset, 'name', '?')!r}" if self.dataset is not None else "arrays"
        if isinstance(self.num_classes, int):
            counts = np.bincount(self.labels, minlength=self.num_classes).tolist()
            return f"LabelledSet({len(self)} examples from {source}, per class {counts})"
        return f"LabelledSet({len(self)} examples from {source}, label sizes {self.num_classes})"

    @classmethod
    def from_arrays(cls, images, labels, num_classes: int | Sequence[int]) -> LabelledSet:
        """``images`` (n, H, W, C) float in [0, 1] (HWC, like the data layer) and their ``labels``."""
        array = np.asarray(images, dtype=np.float32)
        if array.ndim != 4:
            raise ValueError(f"images must have shape (n, H, W, C), got {array.shape}")
        return cls(labels, num_classes, images=array)

    @classmethod
    def from_dataset(
        cls,
        dataset,
        label_factor: int,
        num_classes: int,
        seed: int,
        num_labels: int | None = None,
        labelled_fraction: float | None = None,
    ) -> LabelledSet:
        """A fixed subset of ``dataset``'s factor grid, chosen from ``seed``, labelled by ``label_factor``.

        ``num_labels`` distinct grid points (or ``round(labelled_fraction * num_states)``, at least 1)
        are drawn without replacement with ``numpy.random.default_rng(SeedSequence([seed, salt]))``.
        Images are rendered when drawn (nuisance factors, if the dataset has any, come from the
        generator passed to :meth:`draw`).
        """
        num_factors = dataset.num_factors
        try:
            label_factor = operator.index(label_factor)
        except TypeError:
            raise ValueError(f"label_factor must be an int factor index, got {label_factor!r}") from None
        if not 0 <= label_factor < num_factors:
            raise ValueError(
                f"label_factor={label_factor} is out of range: {getattr(dataset, 'name', 'the dataset')} "
                f"has {num_factors} factors {tuple(dataset.factor_names)}"
            )
        size = int(dataset.factor_sizes[label_factor])
        if size != int(num_classes):
            raise ValueError(
                f"num_classes={num_classes} but the label factor "
                f"'{dataset.factor_names[label_factor]}' has {size} values; set model.num_classes={size}"
            )
        indices = _choose_grid_subset(dataset, seed, num_labels, labelled_fraction)
        factors = dataset.index_to_factors(indices)
        labelled = cls(
            factors[:, label_factor], num_classes, factors=factors, dataset=dataset, indices=indices
        )
        labelled.observed_factors = (label_factor,)
        return labelled

    @classmethod
    def from_dataset_factors(
        cls,
        dataset,
        seed: int,
        num_labels: int | None = None,
        labelled_fraction: float | None = None,
        labeller: str = "perfect",
        **labeller_kwargs: Any,
    ) -> LabelledSet:
        """A fixed subset of the factor grid (as :meth:`from_dataset`) labelled with every factor,
        passed through :func:`apply_labeller` (its randomness from the same seed)."""
        indices = _choose_grid_subset(dataset, seed, num_labels, labelled_fraction)
        factors = dataset.index_to_factors(indices)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), _LABEL_SEED_SALT, 1]))
        labelling = apply_labeller(factors, dataset.factor_sizes, labeller, rng, **labeller_kwargs)
        labelled = cls(labelling.labels, labelling.sizes, factors=factors, dataset=dataset, indices=indices)
        labelled.observed_factors = labelling.observed_factors
        return labelled

    def subset(self, rows) -> LabelledSet:
        """The labelled examples at ``rows`` (same label sizes, same source)."""
        rows = np.asarray(rows, dtype=np.int64)
        part = LabelledSet(
            self.labels[rows],
            self.num_classes,
            images=None if self.images is None else self.images[rows],
            factors=None if self.factors is None else self.factors[rows],
            dataset=self.dataset,
            indices=None if self.indices is None else self.indices[rows],
        )
        part.observed_factors = self.observed_factors
        return part

    def split(self, train_percentage: float) -> tuple[LabelledSet, LabelledSet | None]:
        """(training part, validation part) as disentanglement_lib's ``train_test_split``: the first
        ``ceil(n * train_percentage)`` examples train, the rest validate (None when there are none)."""
        if not 0 < train_percentage <= 1:
            raise ValueError(f"train_percentage must be in (0, 1], got {train_percentage!r}")
        num_train = math.ceil(len(self) * train_percentage)
        if num_train >= len(self):
            return self, None
        return self.subset(np.arange(num_train)), self.subset(np.arange(num_train, len(self)))

    def images_of(self, rows: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """float32 (n, H, W, C) images of the given rows."""
        if self.images is not None:
            return self.images[rows]
        if rng is None:
            rng = np.random.default_rng(0)
        return self.dataset.sample_observations_from_factors(self.factors[rows], rng)

    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` rows uniformly with replacement: (images NCHW float32, labels int64), on the CPU."""
        rows = (
            torch.randint(len(self), (batch_size,), generator=generator, device=generator.device)
            .cpu()
            .numpy()
        )
        rng = None
        if self.dataset is not None and not getattr(self.dataset, "deterministic", True):
            seed = torch.randint(2**62, (1,), generator=generator, device=generator.device).item()
            rng = np.random.default_rng(int(seed))
        return to_torch_images(self.images_of(rows, rng)), torch.from_numpy(self.labels[rows])

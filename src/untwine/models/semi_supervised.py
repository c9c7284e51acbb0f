"""Semi-supervised disentanglement models (see docs/semi_supervised.md).

``ss_vae`` -- a *partially specified* VAE (Siddharth et al., NeurIPS 2017, "Learning Disentangled
Representations with Semi-Supervised Deep Generative Models"): an interpretable discrete latent ``y``
(``num_classes`` values, observed when a label exists) next to a continuous style latent ``z``.

* generation: ``p(y) = 1/K``, ``p(z) = N(0, I)``, ``p(x | y, z)`` = the decoder fed ``[z, onehot(y)]``;
* recognition: ``q(y | x)`` (a softmax head on the encoder trunk) and ``q(z | x, y)`` (Gaussian heads fed
  ``[trunk(x), onehot(y)]``).

Per unlabelled image the objective is the ELBO with ``y`` summed out exactly over its K values::

    U(x) = sum_y q(y|x) [ E_q(z|x,y) log p(x|y,z) - KL(q(z|x,y) || p(z)) + log p(y) - log q(y|x) ]

and per labelled pair the paper's importance-sampled bound on ``log p(x, y)`` plus ``alpha * log q(y|x)``
(:func:`supervised_bound`).  Which examples carry labels is a :class:`LabelledSet`: a fixed subset of
a dataset's factor grid chosen from the run's seed (or given arrays), from which ``labelled_batch_size``
labelled rows are drawn into every batch with the run's torch generator -- so training stays
bit-identical on resume.  The training loop attaches the set (``attach_dataset``) and passes the batch's
factors, which the model uses only to log the accuracy of ``q(y|x)`` on the unlabelled rows.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from untwine.models import losses as L
from untwine.models.networks import (
    ENCODER_KERNELS,
    IMAGE_SIZE,
    Conv2dSame,
    DeconvDecoder,
    FCDecoder,
    _check_images,
    _flatten_nhwc,
    _unflatten_nhwc,
    glorot_uniform_,
)
from untwine.models.objectives import DIPVAEI, DIPVAEII, BetaTCVAE, BetaVAE, FactorVAE, LossOutput, VAEModel

__all__ = [
    "SS_ARCHITECTURES",
    "SS_ESTIMATORS",
    "LabelledSet",
    "SemiSupervisedVAE",
    "SEMI_SUPERVISED_MODELS",
    "LABELLERS",
    "SUPERVISED_LOSSES",
    "ANNEALERS",
    "Labelling",
    "apply_labeller",
    "annealed_gamma",
    "supervised_loss_xent",
    "supervised_loss_l2",
    "supervised_loss_cov",
    "supervised_loss_embed",
    "EmbedHead",
    "S2BetaVAE",
    "S2FactorVAE",
    "S2DIPVAEI",
    "S2DIPVAEII",
    "S2BetaTCVAE",
    "log_mean_exp",
    "label_log_likelihood_estimate",
    "supervised_bound",
    "unsupervised_bound",
]

SS_ARCHITECTURES = ("conv", "fc", "mlp")
SS_ESTIMATORS = ("weighted", "iwae")
_LABEL_SEED_SALT = 0x5E1ABE1  # separates the labelled-subset draw from the run's other seeded streams


# ---------------------------------------------------------------------------------------------------
# The estimators, on log-probability tensors
# ---------------------------------------------------------------------------------------------------
def log_mean_exp(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``log(mean(exp(values), dim))`` computed stably."""
    return torch.logsumexp(values, dim) - math.log(values.shape[dim])


def label_log_likelihood_estimate(log_weight: torch.Tensor) -> torch.Tensor:
    """``log q^(y|x) = log (1/S) sum_s w_s``: the importance estimate of the encoder's label probability.

    ``w_s = q(y, z_s | x) / r(z_s)`` with ``z_s ~ r``; its mean is unbiased for ``q(y|x)`` (the log is
    a lower-biased estimate of ``log q(y|x)``, exact when the weights do not depend on ``z_s``).
    """
    return log_mean_exp(log_weight.float(), 0)


def supervised_bound(
    log_joint: torch.Tensor,
    log_proposal: torch.Tensor,
    log_weight: torch.Tensor,
    alpha: float = 0.1,
    estimator: str = "weighted",
) -> torch.Tensor:
    """Per-example supervised objective of Siddharth et al. (2017) from S importance samples: shape (N,).

    Inputs are (S, N): ``z_s`` was drawn from a proposal ``r`` and

    * ``log_joint``   = ``log p(x, y, z_s)``;
    * ``log_proposal`` = ``log r(z_s)``, the density ``z_s`` was drawn from;
    * ``log_weight``  = ``log w_s = log q(y, z_s | x) - log r(z_s)``: the encoder's probability of the
      observed label at that sample (with ``r = q(z|x)`` it is ``log q(y | x, z_s)``; with the
      ``q(y|x) q(z|x,y)`` factorisation of :class:`SemiSupervisedVAE`, ``r = q(z|x,y)`` and it is
      ``log q(y|x)`` for every s).

    ``estimator="weighted"`` (the paper's estimator)::

        sum_s wbar_s [log p(x,y,z_s) - log q(y,z_s|x)] + (1 + alpha) log q^(y|x),
        wbar = softmax_s(log w),   log q^(y|x) = logmeanexp_s(log w)

    estimates ``E_q(z|x,y)[log p(x,y,z) / q(y,z|x)] + (1 + alpha) log q(y|x)``, i.e. the ELBO of
    ``log p(x, y)`` with posterior ``q(z|x,y)`` plus ``alpha log q(y|x)``.

    ``estimator="iwae"`` (its log-sum-exp form)::

        logmeanexp_s [log p(x,y,z_s) - log r(z_s)] + alpha log q^(y|x)

    whose first term is the importance-weighted bound on ``log p(x, y)``: never above it in
    expectation and tightening as S grows (Burda et al. 2016).  With S = 1 and weights independent of
    ``z`` both forms coincide.
    """
    if estimator not in SS_ESTIMATORS:
        raise ValueError(f"estimator must be one of {SS_ESTIMATORS}, got {estimator!r}")
    if not (log_joint.shape == log_proposal.shape == log_weight.shape) or log_joint.dim() != 2:
        raise ValueError(
            "log_joint, log_proposal and log_weight must share one (num_samples, batch) shape, got "
            f"{tuple(log_joint.shape)}, {tuple(log_proposal.shape)}, {tuple(log_weight.shape)}"
        )
    log_joint, log_proposal, log_weight = log_joint.float(), log_proposal.float(), log_weight.float()
    log_q_y = label_log_likelihood_estimate(log_weight)
    if estimator == "iwae":
        return log_mean_exp(log_joint - log_proposal, 0) + alpha * log_q_y
    weights = torch.softmax(log_weight, 0)
    return (weights * (log_joint - log_proposal - log_weight)).sum(0) + (1.0 + alpha) * log_q_y


def unsupervised_bound(
    log_q_y: torch.Tensor, elbo_given_y: torch.Tensor, log_prior_y: float | torch.Tensor
) -> torch.Tensor:
    """ELBO of ``log p(x)`` with the discrete latent summed out exactly: shape (N,).

    ``log_q_y`` (N, K): ``log q(y|x)``; ``elbo_given_y`` (N, K): an estimate of
    ``E_q(z|x,y)[log p(x|y,z) + log p(z) - log q(z|x,y)]`` for every class;  returns
    ``sum_y q(y|x) [elbo_given_y + log p(y) - log q(y|x)]``.
    """
    q_y = log_q_y.exp()
    return (q_y * (elbo_given_y + log_prior_y - log_q_y)).sum(-1)


# ---------------------------------------------------------------------------------------------------
# Labelled examples
# ---------------------------------------------------------------------------------------------------
def _check_labels(
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


def _to_torch_images(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(images, dtype=np.float32).transpose(0, 3, 1, 2)))


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
        _check_labels(array[:, j], int(size), f"{name}[:, {j}]", count, count_name)
        for j, size in enumerate(sizes)
    ]
    return np.stack(columns, 1) if columns else array.astype(np.int64)


def _choose_grid_subset(
    dataset, seed: int, num_labels: int | None, labelled_fraction: float | None
) -> np.ndarray:
    """Sorted distinct factor-grid indices: ``num_labels`` of them, or ``round(fraction * num_states)``
    (at least 1), drawn with ``numpy.random.default_rng(SeedSequence([seed, salt]))``."""
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
    return np.sort(rng.choice(total, size=num_labels, replace=False)).astype(np.int64)


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
            self.labels = _check_labels(labels, self.num_classes, "labels", count)
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
        return _to_torch_images(self.images_of(rows, rng)), torch.from_numpy(self.labels[rows])


# ---------------------------------------------------------------------------------------------------
# Networks: q(y|x), q(z|x,y) on a shared trunk; p(x|y,z)
# ---------------------------------------------------------------------------------------------------
class _ConvTrunk(nn.Module):
    """The conv layers and dense 256 of disentanglement_lib's ``conv_encoder`` (no heads)."""

    def __init__(self, num_channels: int, kernels: str = "dlib"):
        super().__init__()
        if kernels not in ENCODER_KERNELS:
            raise ValueError(f"encoder_kernels must be one of {ENCODER_KERNELS}, got {kernels!r}")
        k34 = 2 if kernels == "dlib" else 4
        self.num_channels, self.out_features = num_channels, 256
        self.conv1 = Conv2dSame(num_channels, 32, 4, 2, input_size=IMAGE_SIZE)
        self.conv2 = Conv2dSame(32, 32, 4, 2, input_size=IMAGE_SIZE // 2)
        self.conv3 = Conv2dSame(32, 64, k34, 2, input_size=IMAGE_SIZE // 4)
        self.conv4 = Conv2dSame(64, 64, k34, 2, input_size=IMAGE_SIZE // 8)
        self.fc = nn.Linear(4 * 4 * 64, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.num_channels)
        h = F.relu(self.conv2(F.relu(self.conv1(x))))
        h = F.relu(self.conv4(F.relu(self.conv3(h))))
        return F.relu(self.fc(_flatten_nhwc(h)))


class _MLPTrunk(nn.Module):
    """flatten -> ``hidden`` ReLU -> ``hidden`` ReLU (``fc``: 64x64 images and 1200 units, as dlib's ``fc_encoder``)."""

    def __init__(self, num_channels: int, image_size: int, hidden: int):
        super().__init__()
        self.num_channels, self.image_size, self.out_features = num_channels, image_size, hidden
        self.fc1 = nn.Linear(image_size * image_size * num_channels, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            expected = (self.num_channels, self.image_size, self.image_size)
            if x.dim() != 4 or tuple(x.shape[1:]) != expected:
                raise ValueError(
                    f"expected images of shape (N, {', '.join(map(str, expected))}) (NCHW), "
                    f"got {tuple(x.shape)}"
                )
        return F.relu(self.fc2(F.relu(self.fc1(_flatten_nhwc(x)))))


class _MLPDecoder(nn.Module):
    """``[z, onehot(y)]`` -> ``hidden`` ReLU -> ``hidden`` ReLU -> logits (N, C, S, S)."""

    def __init__(self, num_channels: int, num_inputs: int, image_size: int, hidden: int):
        super().__init__()
        self.num_channels, self.image_size = num_channels, image_size
        self.fc1 = nn.Linear(num_inputs, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, image_size * image_size * num_channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc2(F.relu(self.fc1(h))))
        return _unflatten_nhwc(self.out(h), self.num_channels, self.image_size, self.image_size).contiguous()


class ClassStyleEncoder(nn.Module):
    """Trunk ``h(x)``; ``q(y|x)`` = softmax(dense(h)); ``q(z|x,y)`` = N(dense([h, onehot y]), exp(dense([h, onehot y])))."""

    def __init__(self, trunk: nn.Module, num_classes: int, num_latents: int):
        super().__init__()
        self.trunk = trunk
        self.num_classes, self.num_latents = num_classes, num_latents
        self.class_logits = nn.Linear(trunk.out_features, num_classes)
        self.style_mean = nn.Linear(trunk.out_features + num_classes, num_latents)
        self.style_logvar = nn.Linear(trunk.out_features + num_classes, num_latents)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(trunk features, class logits)."""
        h = self.trunk(x)
        return h, self.class_logits(h)

    def style(self, h: torch.Tensor, y_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q(z | x, y) from trunk features and one-hot classes."""
        hy = torch.cat([h, y_onehot.to(h.dtype)], 1)
        return self.style_mean(hy), self.style_logvar(hy)


# ---------------------------------------------------------------------------------------------------
# The partially specified model
# ---------------------------------------------------------------------------------------------------
def _nonnegative_int(name: str, value: Any, minimum: int = 0) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return number


class SemiSupervisedVAE(VAEModel):
    """Partially specified VAE with a discrete class ``y`` and a Gaussian style ``z`` (``ss_vae``).

    ``num_latents`` is the size of ``z``; ``num_classes`` the number of values of ``y``.  Architectures:
    ``conv`` (dlib conv trunk + deconv decoder, 64x64), ``fc`` (dlib 1200-unit MLPs, 64x64) and ``mlp``
    (two ``hidden``-unit layers on ``image_size``-pixel images, e.g. 8x8 digits).

    Labels: :meth:`attach_dataset` (what the training loop does) or :meth:`attach_labels` sets the
    :class:`LabelledSet`; every :meth:`compute_loss` then adds ``labelled_batch_size`` labelled rows to
    the unlabelled batch.  :meth:`semi_supervised_loss` takes both parts explicitly.

    Representation: :meth:`encode` returns the mean/log-variance of ``q(z | x, y_hat)`` with
    ``y_hat = argmax q(y|x)`` -- the style code; :meth:`classify` returns the class logits.
    """

    name = "ss_vae"
    defaults: dict[str, Any] = {
        "num_classes": 3,  # dSprites' shape
        "label_factor": 0,
        "labelled_fraction": 0.01,
        "num_labels": None,  # overrides labelled_fraction when set
        "labelled_batch_size": 16,
        "alpha": 0.1,
        "num_samples": 1,
        "estimator": "weighted",
    }
    #: the training loop attaches its dataset and passes each batch's factors to compute_loss
    needs_factors = True

    def __init__(
        self,
        num_channels: int,
        num_latents: int = 10,
        architecture: str = "conv",
        encoder_kernels: str = "dlib",
        reconstruction: str = "bernoulli",
        num_classes: int = 3,
        label_factor: int = 0,
        labelled_fraction: float = 0.01,
        num_labels: int | None = None,
        labelled_batch_size: int = 16,
        alpha: float = 0.1,
        num_samples: int = 1,
        estimator: str = "weighted",
        image_size: int | None = None,
        hidden: int | None = None,
    ):
        nn.Module.__init__(self)
        num_channels = _nonnegative_int("num_channels", num_channels, 1)
        num_latents = _nonnegative_int("num_latents", num_latents, 1)
        num_classes = _nonnegative_int("num_classes", num_classes, 2)
        if architecture not in SS_ARCHITECTURES:
            raise ValueError(f"architecture must be one of {SS_ARCHITECTURES}, got {architecture!r}")
        if reconstruction not in L.RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {L.RECONSTRUCTIONS}, got {reconstruction!r}")
        if estimator not in SS_ESTIMATORS:
            raise ValueError(f"estimator must be one of {SS_ESTIMATORS}, got {estimator!r}")
        if not float(alpha) >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        if num_labels is None and not 0.0 < float(labelled_fraction) <= 1.0:
            raise ValueError(f"labelled_fraction must lie in (0, 1], got {labelled_fraction!r}")
        image_size = IMAGE_SIZE if image_size is None else _nonnegative_int("image_size", image_size, 1)
        if architecture != "mlp" and image_size != IMAGE_SIZE:
            raise ValueError(
                f"architecture {architecture!r} works on {IMAGE_SIZE}x{IMAGE_SIZE} images; "
                "use architecture='mlp' for other sizes"
            )
        self.num_channels, self.num_latents, self.num_classes = num_channels, num_latents, num_classes
        self.architecture, self.encoder_kernels, self.reconstruction = (
            architecture,
            encoder_kernels,
            reconstruction,
        )
        self.image_size = image_size
        self.label_factor = _nonnegative_int("label_factor", label_factor)
        self.labelled_fraction = float(labelled_fraction)
        self.num_labels = None if num_labels is None else _nonnegative_int("num_labels", num_labels, 1)
        self.labelled_batch_size = _nonnegative_int("labelled_batch_size", labelled_batch_size)
        self.alpha = float(alpha)
        self.num_samples = _nonnegative_int("num_samples", num_samples, 1)
        self.estimator = estimator
        self.params = {
            "num_classes": num_classes,
            "label_factor": self.label_factor,
            "labelled_fraction": self.labelled_fraction,
            "num_labels": self.num_labels,
            "labelled_batch_size": self.labelled_batch_size,
            "alpha": self.alpha,
            "num_samples": self.num_samples,
            "estimator": estimator,
        }
        if architecture == "conv":
            trunk: nn.Module = _ConvTrunk(num_channels, encoder_kernels)
            decoder: nn.Module = DeconvDecoder(num_channels, num_latents + num_classes)
        elif architecture == "fc":
            if encoder_kernels not in ENCODER_KERNELS:
                raise ValueError(f"encoder_kernels must be one of {ENCODER_KERNELS}, got {encoder_kernels!r}")
            trunk = _MLPTrunk(num_channels, IMAGE_SIZE, 1200)
            decoder = FCDecoder(num_channels, num_latents + num_classes)
        else:
            hidden = 256 if hidden is None else _nonnegative_int("hidden", hidden, 1)
            trunk = _MLPTrunk(num_channels, image_size, hidden)
            decoder = _MLPDecoder(num_channels, num_latents + num_classes, image_size, hidden)
        self.encoder = ClassStyleEncoder(trunk, num_classes, num_latents)
        self.decoder = decoder
        self.labelled_set: LabelledSet | None = None

    # -- labels -------------------------------------------------------------------------------------
    def attach_dataset(self, dataset, seed: int) -> SemiSupervisedVAE:
        """Label a fixed subset of ``dataset`` chosen from ``seed`` (see :meth:`LabelledSet.from_dataset`)."""
        self.labelled_set = LabelledSet.from_dataset(
            dataset,
            self.label_factor,
            self.num_classes,
            seed,
            num_labels=self.num_labels,
            labelled_fraction=self.labelled_fraction,
        )
        return self

    def attach_labels(self, images, labels) -> SemiSupervisedVAE:
        """Use the given labelled images (n, H, W, C) and labels (n,)."""
        self.labelled_set = LabelledSet.from_arrays(images, labels, self.num_classes)
        return self

    # -- networks -----------------------------------------------------------------------------------
    def one_hot(self, y: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return F.one_hot(y.long(), self.num_classes).to(dtype)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y | x), (N, num_classes)."""
        return self.encoder(x)[1]

    def encode_style(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q(z | x, y) for given classes ``y`` (N,)."""
        h, _ = self.encoder(x)
        return self.encoder.style(h, self.one_hot(y, h.dtype))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logvar) of q(z | x, argmax q(y|x)): the style code (what representations and exports use)."""
        h, logits = self.encoder(x)
        y_onehot = F.one_hot(logits.argmax(1), self.num_classes).to(h.dtype)
        return self.encoder.style(h, y_onehot)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of p(x | y, z).  ``y``: classes (N,) or one-hot (N, K); None means ``z`` already holds
        ``[z, onehot(y)]``."""
        if y is not None:
            if y.dim() == 1:
                y = self.one_hot(y, z.dtype)
            z = torch.cat([z, y.to(z.dtype)], 1)
        return self.decoder(z)

    # -- objective ----------------------------------------------------------------------------------
    def _labels_from_factors(self, factors, batch: int) -> np.ndarray:
        if isinstance(factors, torch.Tensor):
            factors = factors.detach().cpu().numpy()
        array = np.asarray(factors)
        if array.ndim != 2 or array.shape[1] <= self.label_factor:
            raise ValueError(
                f"factors must have shape (batch, num_factors) with num_factors > label_factor="
                f"{self.label_factor}, got {array.shape}"
            )
        if array.shape[0] != batch:
            raise ValueError(
                f"factors has {array.shape[0]} rows but images has {batch}; they must match row for row"
            )
        return _check_labels(
            array[:, self.label_factor], self.num_classes, f"factors[:, {self.label_factor}]"
        )

    def compute_loss(
        self, x: torch.Tensor, step: int, generator: torch.Generator, factors=None
    ) -> LossOutput:
        """Loss on the unlabelled batch ``x`` plus ``labelled_batch_size`` rows of the attached labelled set.

        ``factors`` (optional, (N, num_factors)): the batch's ground truth; only its ``label_factor``
        column is read, to log ``accuracy_unlabelled`` -- it never enters the loss.
        """
        true_labels = None if factors is None else self._labels_from_factors(factors, x.shape[0])
        labelled_images = labels = None
        if self.labelled_set is not None and self.labelled_batch_size > 0:
            labelled_images, labels = self.labelled_set.draw(self.labelled_batch_size, generator)
            labelled_images = labelled_images.to(x.device)
            if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
                labelled_images = labelled_images.contiguous(memory_format=torch.channels_last)
        return self.semi_supervised_loss(x, generator, labelled_images, labels, true_labels)

    def semi_supervised_loss(
        self,
        x: torch.Tensor | None,
        generator: torch.Generator,
        labelled_images: torch.Tensor | None = None,
        labels=None,
        unlabelled_labels=None,
    ) -> LossOutput:
        """``-(sum_unlabelled U(x) + sum_labelled bound(x, y)) / (N_u + N_l)`` and its terms.

        ``x`` (N_u, C, H, W) unlabelled (None or empty: all labelled); ``labelled_images`` (N_l, C, H, W)
        with ``labels`` (N_l,) class indices; ``unlabelled_labels`` (N_u,) optional, for logging only.
        """
        n_u = 0 if x is None else int(x.shape[0])
        n_l = 0 if labelled_images is None else int(labelled_images.shape[0])
        if labelled_images is not None and labels is None:
            raise ValueError("labels is missing: labelled_images needs one label per image")
        if labels is not None and labelled_images is None:
            raise ValueError("labelled_images is missing: labels were given without their images")
        if n_u + n_l == 0:
            raise ValueError("semi_supervised_loss needs at least one unlabelled or labelled image")
        ref = x if n_u else labelled_images
        device = ref.device
        K, S = self.num_classes, self.num_samples
        y_l = None
        if n_l:
            y_l = torch.from_numpy(_check_labels(labels, K, "labels", n_l, "labelled_images")).to(device)
        if unlabelled_labels is not None:
            unlabelled_labels = _check_labels(unlabelled_labels, K, "unlabelled_labels", n_u, "x")
        parts = [t for t in ((x if n_u else None), (labelled_images if n_l else None)) if t is not None]
        images = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
        h, class_logits = self.encoder(images)
        log_q_y_all = torch.log_softmax(class_logits.float(), 1)
        eye = torch.eye(K, device=device, dtype=h.dtype)
        # Style posteriors: every class for each unlabelled image, the given class for the labelled ones.
        h_u, h_l = h[:n_u], h[n_u:]
        style_h = [h_u.unsqueeze(0).expand(K, n_u, h.shape[1]).reshape(K * n_u, -1)] if n_u else []
        style_y = [eye.unsqueeze(1).expand(K, n_u, K).reshape(K * n_u, K)] if n_u else []
        if n_l:
            style_h.append(h_l)
            style_y.append(eye[y_l])
        style_h_cat, style_y_cat = torch.cat(style_h, 0), torch.cat(style_y, 0)
        mean, logvar = self.encoder.style(style_h_cat, style_y_cat)
        mean, logvar = mean.float(), logvar.float()
        # Samples: one per (class, unlabelled image); S per labelled image.
        mean_u, logvar_u = mean[: K * n_u], logvar[: K * n_u]
        mean_l, logvar_l = mean[K * n_u :], logvar[K * n_u :]
        d = mean.shape[1]
        mean_ls = mean_l.unsqueeze(0).expand(S, n_l, d).reshape(S * n_l, d)
        logvar_ls = logvar_l.unsqueeze(0).expand(S, n_l, d).reshape(S * n_l, d)
        sample_mean = torch.cat([mean_u, mean_ls], 0)
        sample_logvar = torch.cat([logvar_u, logvar_ls], 0)
        z = L.sample_gaussian(sample_mean, sample_logvar, generator)
        dec_y = torch.cat([style_y_cat[: K * n_u], style_y_cat[K * n_u :].repeat(S, 1)], 0)
        recon_logits = self.decode(z, dec_y)
        target_parts = ([x.repeat(K, 1, 1, 1)] if n_u else []) + (
            [labelled_images.repeat(S, 1, 1, 1)] if n_l else []
        )
        targets = torch.cat(target_parts, 0) if len(target_parts) > 1 else target_parts[0]
        log_prior_y = -math.log(K)
        with torch.autocast(device_type=device.type, enabled=False):
            recon = L.reconstruction_loss(self.reconstruction, recon_logits.float(), targets)
            terms: dict[str, torch.Tensor] = {}
            total = torch.zeros((), device=device)
            if n_u:
                log_q_y = log_q_y_all[:n_u]
                q_y = log_q_y.exp()
                recon_u = recon[: K * n_u].view(K, n_u).t()  # (n_u, K)
                kl_u = (0.5 * (mean_u.square() + logvar_u.exp() - logvar_u - 1.0)).view(K, n_u, d)
                elbo_given_y = -(recon_u + kl_u.sum(-1).t())
                bound_u = unsupervised_bound(log_q_y, elbo_given_y, log_prior_y)
                total = total + bound_u.sum()
                kl_y = (q_y * (log_q_y - log_prior_y)).sum(1)
                kl_per_latent = (q_y.t().unsqueeze(-1) * kl_u).sum(0).mean(0)
                terms.update(
                    {
                        "elbo": bound_u.mean(),
                        "reconstruction": (q_y * recon_u).sum(1).mean(),
                        "kl": kl_per_latent.sum() + kl_y.mean(),
                        "kl_y": kl_y.mean(),
                        "class_entropy": -(q_y * log_q_y).sum(1).mean(),
                    }
                )
                if unlabelled_labels is not None:
                    truth = torch.from_numpy(unlabelled_labels).to(device)
                    terms["accuracy_unlabelled"] = (log_q_y.argmax(1) == truth).float().mean()
            if n_l:
                recon_l = recon[K * n_u :].view(S, n_l)
                z_l = z[K * n_u :]
                zeros = torch.zeros_like(z_l)
                log_p_z = L.gaussian_log_density(z_l, zeros, zeros).sum(1).view(S, n_l)
                log_q_z = L.gaussian_log_density(z_l, mean_ls, logvar_ls).sum(1).view(S, n_l)
                log_joint = -recon_l + log_p_z + log_prior_y
                log_q_y_l = log_q_y_all[n_u:].gather(1, y_l[:, None]).squeeze(1)
                bound_l = supervised_bound(
                    log_joint, log_q_z, log_q_y_l.unsqueeze(0).expand(S, n_l), self.alpha, self.estimator
                )
                total = total + bound_l.sum()
                kl_l = 0.5 * (mean_l.square() + logvar_l.exp() - logvar_l - 1.0)
                terms.update(
                    {
                        "supervised_bound": bound_l.mean(),
                        "reconstruction_labelled": recon_l.mean(),
                        "log_q_y_labelled": log_q_y_l.mean(),
                        "accuracy_labelled": (log_q_y_all[n_u:].argmax(1) == y_l).float().mean(),
                    }
                )
                if not n_u:
                    kl_per_latent = kl_l.mean(0)
                    terms["reconstruction"] = recon_l.mean()
                    terms["kl"] = kl_per_latent.sum()
            loss = -total / (n_u + n_l)
            reconstruction_sum = (
                recon[: K * n_u].view(K, n_u).t().mul(log_q_y_all[:n_u].exp()).sum() if n_u else 0.0
            )
            if n_l:
                reconstruction_sum = reconstruction_sum + recon[K * n_u :].view(S, n_l).mean(0).sum()
            # everything in the loss but the (expected) reconstruction: KL terms, label terms
            terms["regularizer"] = loss - reconstruction_sum / (n_u + n_l)
        terms = {
            "loss": loss.detach(),
            **{k: v.detach() for k, v in terms.items()},
            "kl_per_latent": kl_per_latent.detach(),
        }
        # The forward pass for the most probable class of each unlabelled image (labelled: given class).
        if n_u:
            pick = log_q_y_all[:n_u].argmax(1)
            rows = pick * n_u + torch.arange(n_u, device=device)
        else:
            rows = torch.arange(n_l, device=device)
        return LossOutput(
            loss=loss, terms=terms, mean=mean[rows], logvar=logvar[rows], z=z[rows], logits=recon_logits[rows]
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", image_size={self.image_size}"


# ---------------------------------------------------------------------------------------------------
# Part 2: few-label semi-supervised VAEs (Locatello et al. 2020, disentanglement_lib's
# methods/semi_supervised): an unsupervised objective + gamma_sup(step) * a supervised loss tying the
# first latents' means to the (labeller-processed) factors of a few labelled images.
# ---------------------------------------------------------------------------------------------------
LABELLERS = ("perfect", "bin", "noisy", "permuted", "partial")
SUPERVISED_LOSSES = ("xent", "l2", "cov", "embed")
ANNEALERS = ("fixed", "anneal", "fine_tune")


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


def _first_latents(representation: torch.Tensor, num_factors: int, loss: str) -> torch.Tensor:
    if representation.shape[1] < num_factors:
        raise ValueError(
            f"the {loss} supervised loss needs at least as many latents as labelled factors: "
            f"{representation.shape[1]} latents for {num_factors} factors"
        )
    return representation[:, :num_factors]


def supervised_loss_xent(
    representation: torch.Tensor, labels: torch.Tensor, sizes: Sequence[int]
) -> torch.Tensor:
    """``sum_{n, j} BCE(sigmoid(r_nj), y_nj / size_j)`` over the first F latents (dlib's ``xent``; a sum)."""
    first = _first_latents(representation, labels.shape[1], "xent").float()
    targets = labels.float() / torch.tensor(sizes, dtype=torch.float32, device=first.device)
    return F.binary_cross_entropy_with_logits(first, targets, reduction="sum")


def supervised_loss_l2(
    representation: torch.Tensor,
    labels: torch.Tensor,
    sizes: Sequence[int],
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """``sum (b r_nj - y_nj)^2`` with a learned scalar ``b`` (``scale``), or without it
    ``sum (sigmoid(r_nj) - y_nj / size_j)^2`` (dlib's ``l2``; a sum over points and factors)."""
    first = _first_latents(representation, labels.shape[1], "l2").float()
    if scale is not None:
        return (first * scale - labels.float()).square().sum()
    targets = labels.float() / torch.tensor(sizes, dtype=torch.float32, device=first.device)
    return (torch.sigmoid(first) - targets).square().sum()


def supervised_loss_cov(representation: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of squares of the cross-covariance ``Cov[r, y]`` (d x F, over the batch) off its diagonal
    ``(i, i), i < min(d, F)``: latent i should covary with factor i only (dlib's ``cov``)."""
    r = representation.float()
    y = labels.float()
    covariance = ((r - r.mean(0))[:, :, None] * (y - y.mean(0))[:, None, :]).mean(0)
    k = min(covariance.shape)
    mask = torch.ones_like(covariance)
    mask[torch.arange(k), torch.arange(k)] = 0.0
    return (covariance * mask).square().sum()


def supervised_loss_embed(
    representation: torch.Tensor,
    labels: torch.Tensor,
    embeddings: Sequence[torch.Tensor],
    sigmas: Sequence[torch.Tensor | float],
) -> torch.Tensor:
    """``sum_j mean_n CE(softmax_k(-((r_nj - e_jk) sigma_j)^2), y_nj)``: latent j against a 1-d embedding
    of factor j's values (dlib's ``embed``)."""
    first = _first_latents(representation, labels.shape[1], "embed").float()
    total = first.new_zeros(())
    for j, (embedding, sigma) in enumerate(zip(embeddings, sigmas, strict=True)):
        logits = -((first[:, j : j + 1] - embedding[None, :]) * sigma).square()
        total = total + F.cross_entropy(logits, labels[:, j].long())
    return total


def annealed_gamma(annealer: str, gamma: float, step: int, iteration_threshold: int) -> float:
    """``fixed``: gamma.  ``anneal``: ``min(gamma, gamma * step / threshold)``.  ``fine_tune``: 0 until
    ``step > threshold``, then gamma (``gamma * clip(step - threshold, 0, 1)``)."""
    if annealer == "fixed":
        return float(gamma)
    if annealer == "anneal":
        return min(float(gamma), float(gamma) * float(step) / float(iteration_threshold))
    if annealer == "fine_tune":
        return float(gamma) * min(1.0, max(0.0, float(step - iteration_threshold)))
    raise ValueError(f"annealer must be one of {ANNEALERS}, got {annealer!r}")


class EmbedHead(nn.Module):
    """The learned 1-d embeddings (and temperatures) of the ``embed`` supervised loss, one per labelled factor.

    ``use_order=False``: a free embedding of each factor's values.  ``use_order=True``: ``k * slope + bias``
    (the values' order is kept).  ``sigma="learn"``: one learned temperature per factor, else a fixed float.
    The factor sizes are a buffer, so a head can be rebuilt from a state dict.
    """

    def __init__(self, sizes: Sequence[int], sigma: float | str = "learn", use_order: bool = False):
        super().__init__()
        self.register_buffer("sizes", torch.tensor([int(k) for k in sizes], dtype=torch.int64))
        self.use_order, self.learn_sigma = bool(use_order), sigma == "learn"
        self.fixed_sigma = None if self.learn_sigma else float(sigma)
        if self.use_order:
            self.slope = nn.Parameter(torch.zeros(len(sizes)))
            self.bias = nn.Parameter(torch.zeros(len(sizes)))
        else:
            self.embeddings = nn.ParameterList(nn.Parameter(torch.zeros(int(k))) for k in sizes)
        if self.learn_sigma:
            self.sigma = nn.Parameter(torch.zeros(len(sizes)))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """TF's glorot-uniform for the variables dlib creates: limit sqrt(3 / k) for a length-k vector,
        sqrt(3) for scalars (slope, bias, sigma)."""
        with torch.no_grad():
            if self.use_order:
                glorot_uniform_(self.slope, 1, 1, generator)
                glorot_uniform_(self.bias, 1, 1, generator)
            else:
                for embedding in self.embeddings:
                    glorot_uniform_(embedding, embedding.numel(), embedding.numel(), generator)
            if self.learn_sigma:
                glorot_uniform_(self.sigma, 1, 1, generator)

    def tables(self) -> tuple[list[torch.Tensor], list[torch.Tensor | float]]:
        sizes = [int(k) for k in self.sizes.tolist()]
        if self.use_order:
            embeddings = [
                torch.arange(k, dtype=torch.float32, device=self.slope.device) * self.slope[j] + self.bias[j]
                for j, k in enumerate(sizes)
            ]
        else:
            embeddings = list(self.embeddings)
        sigmas = (
            [self.sigma[j] for j in range(len(sizes))]
            if self.learn_sigma
            else [self.fixed_sigma] * len(sizes)
        )
        return embeddings, sigmas


class _FewLabelMixin:
    """What the S^2 models add to their unsupervised parent (see :data:`S2_DEFAULTS`)."""

    needs_factors = True
    S2_DEFAULTS: dict[str, Any] = {
        "gamma_sup": 1.0,
        "supervised_loss": "xent",
        "annealer": "fixed",
        "iteration_threshold": 1,
        "labeller": "perfect",
        "num_labels": 1000,
        "labelled_fraction": None,  # used when num_labels is None
        "labelled_batch_size": None,  # None: as many labelled as unlabelled images per step (dlib)
        "num_bins": 5,
        "prob_random": 0.1,
        "num_observed_factors": 2,
        "l2_learn_scale": True,
        "embed_sigma": "learn",
        "embed_use_order": False,
    }

    def __init__(
        self,
        *args: Any,
        gamma_sup: float = 1.0,
        supervised_loss: str = "xent",
        annealer: str = "fixed",
        iteration_threshold: int = 1,
        labeller: str = "perfect",
        num_labels: int | None = 1000,
        labelled_fraction: float | None = None,
        labelled_batch_size: int | None = None,
        num_bins: int = 5,
        prob_random: float = 0.1,
        num_observed_factors: int = 2,
        l2_learn_scale: bool = True,
        embed_sigma: float | str = "learn",
        embed_use_order: bool = False,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        if supervised_loss not in SUPERVISED_LOSSES:
            raise ValueError(f"supervised_loss must be one of {SUPERVISED_LOSSES}, got {supervised_loss!r}")
        if annealer not in ANNEALERS:
            raise ValueError(f"annealer must be one of {ANNEALERS}, got {annealer!r}")
        if labeller not in LABELLERS:
            raise ValueError(f"labeller must be one of {LABELLERS}, got {labeller!r}")
        if num_labels is None and labelled_fraction is None:
            raise ValueError("give num_labels or labelled_fraction")
        if embed_sigma != "learn" and not isinstance(embed_sigma, int | float):
            raise ValueError(f"embed_sigma must be 'learn' or a number, got {embed_sigma!r}")
        self.gamma_sup = float(gamma_sup)
        self.supervised_loss_kind, self.annealer = supervised_loss, annealer
        self.iteration_threshold = _nonnegative_int("iteration_threshold", iteration_threshold, 1)
        self.labeller = labeller
        self.num_labels = None if num_labels is None else _nonnegative_int("num_labels", num_labels, 1)
        self.labelled_fraction = None if labelled_fraction is None else float(labelled_fraction)
        self.labelled_batch_size = (
            None
            if labelled_batch_size is None
            else _nonnegative_int("labelled_batch_size", labelled_batch_size)
        )
        self.labeller_kwargs = {
            "num_bins": num_bins,
            "prob_random": prob_random,
            "num_observed_factors": num_observed_factors,
        }
        self.l2_learn_scale, self.embed_sigma, self.embed_use_order = (
            bool(l2_learn_scale),
            embed_sigma,
            bool(embed_use_order),
        )
        self.params.update(
            {
                "gamma_sup": self.gamma_sup,
                "supervised_loss": supervised_loss,
                "annealer": annealer,
                "iteration_threshold": self.iteration_threshold,
                "labeller": labeller,
                "num_labels": self.num_labels,
                "labelled_fraction": self.labelled_fraction,
                "labelled_batch_size": self.labelled_batch_size,
                **self.labeller_kwargs,
                "l2_learn_scale": self.l2_learn_scale,
                "embed_sigma": embed_sigma,
                "embed_use_order": self.embed_use_order,
            }
        )
        self.l2_scale = (
            nn.Parameter(torch.ones(())) if supervised_loss == "l2" and self.l2_learn_scale else None
        )
        self.embed_head: EmbedHead | None = None
        self.labelled_set: LabelledSet | None = None

    # -- labels -------------------------------------------------------------------------------------
    def _set_labelled(self, labelled: LabelledSet) -> None:
        sizes = labelled.num_classes
        if isinstance(sizes, int):
            raise ValueError(
                "the S^2 models need label vectors: build the LabelledSet with a sequence of sizes"
            )
        if self.supervised_loss_kind != "cov" and self.num_latents < len(sizes):
            raise ValueError(
                f"supervised_loss={self.supervised_loss_kind!r} ties latent j to labelled factor j: "
                f"num_latents={self.num_latents} is fewer than the {len(sizes)} labelled factors"
            )
        self.labelled_set = labelled
        if self.supervised_loss_kind == "embed":
            device = next(self.encoder.parameters()).device
            if self.embed_head is None or [int(k) for k in self.embed_head.sizes.tolist()] != list(sizes):
                self.embed_head = EmbedHead(sizes, self.embed_sigma, self.embed_use_order).to(device)
                self.embed_head.reset_parameters(self._init_generator)

    def attach_dataset(self, dataset, seed: int):
        """Label a fixed subset of ``dataset``'s grid (chosen from ``seed``) with all factors, through the labeller."""
        self._set_labelled(
            LabelledSet.from_dataset_factors(
                dataset, seed, self.num_labels, self.labelled_fraction, self.labeller, **self.labeller_kwargs
            )
        )
        return self

    def attach_labels(self, images, labels, sizes: Sequence[int]):
        """Use the given labelled images (n, H, W, C) and label vectors (n, F) with value counts ``sizes``."""
        self._set_labelled(LabelledSet.from_arrays(images, labels, tuple(sizes)))
        return self

    # -- parameters ---------------------------------------------------------------------------------
    _init_generator: torch.Generator | None = None

    def supervised_parameters(self) -> list[nn.Parameter]:
        params = [] if self.l2_scale is None else [self.l2_scale]
        return params + ([] if self.embed_head is None else list(self.embed_head.parameters()))

    def main_parameters(self) -> list[nn.Parameter]:
        return [*super().main_parameters(), *self.supervised_parameters()]

    def reset_parameters(self, generator: torch.Generator | None = None):
        super().reset_parameters(generator)
        if self.l2_scale is not None:
            with torch.no_grad():
                self.l2_scale.fill_(1.0)
        if generator is not None:  # the embed head is built at attach time; it draws from a fork of this
            self._init_generator = torch.Generator().manual_seed(
                int(torch.randint(2**62, (1,), generator=generator).item())
            )
        if self.embed_head is not None:
            self.embed_head.reset_parameters(self._init_generator)
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Rebuild the embed head from the saved sizes when it is not there yet (a model loaded for inference)."""
        key = "embed_head.sizes"
        if key in state_dict and self.embed_head is None:
            sizes = [int(k) for k in state_dict[key].tolist()]
            self.embed_head = EmbedHead(sizes, self.embed_sigma, self.embed_use_order).to(
                state_dict[key].device
            )
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # -- objective ----------------------------------------------------------------------------------
    def supervised_term(self, representation: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        sizes = self.labelled_set.num_classes if self.labelled_set is not None else None
        kind = self.supervised_loss_kind
        if kind == "xent":
            return supervised_loss_xent(representation, labels, sizes)
        if kind == "l2":
            return supervised_loss_l2(representation, labels, sizes, self.l2_scale)
        if kind == "cov":
            return supervised_loss_cov(representation, labels)
        if self.embed_head is None:
            raise ValueError(
                "the embed supervised loss needs labels attached first (attach_dataset / attach_labels)"
            )
        return supervised_loss_embed(representation, labels, *self.embed_head.tables())

    def gamma_at(self, step: int) -> float:
        return annealed_gamma(self.annealer, self.gamma_sup, step, self.iteration_threshold)

    def compute_loss(
        self, x: torch.Tensor, step: int, generator: torch.Generator, factors=None
    ) -> LossOutput:
        """The parent's unsupervised loss plus ``gamma_sup(step) * supervised loss`` on a labelled batch
        (the encoder means of ``labelled_batch_size`` labelled images).  ``factors`` is not used."""
        out = super().compute_loss(x, step, generator)
        if self.labelled_set is None or self.labelled_batch_size == 0:
            return out
        batch = x.shape[0] if self.labelled_batch_size is None else self.labelled_batch_size
        images, labels = self.labelled_set.draw(batch, generator)
        images = images.to(x.device)
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            images = images.contiguous(memory_format=torch.channels_last)
        mean, _ = self.encode(images)
        with torch.autocast(device_type=x.device.type, enabled=False):
            supervised = self.supervised_term(mean.float(), labels.to(x.device))
            gamma = self.gamma_at(int(step))
            loss = out.loss + gamma * supervised
        terms = dict(out.terms)
        per_latent = terms.pop("kl_per_latent")
        terms.update(
            {
                "loss": loss.detach(),
                "supervised_loss": supervised.detach(),
                "gamma_sup": torch.tensor(gamma, dtype=torch.float32, device=x.device),
                "kl_per_latent": per_latent,
            }
        )
        return dataclasses.replace(out, loss=loss, terms=terms)


def _few_label_defaults(parent: type[VAEModel]) -> dict[str, Any]:
    return {**parent.defaults, **_FewLabelMixin.S2_DEFAULTS}


class S2BetaVAE(_FewLabelMixin, BetaVAE):
    """S^2-beta-VAE: beta-VAE + gamma_sup * supervised loss (dlib's ``s2_vae``)."""

    name = "s2_beta_vae"
    defaults = _few_label_defaults(BetaVAE)


class S2FactorVAE(_FewLabelMixin, FactorVAE):
    """S^2-FactorVAE: FactorVAE + gamma_sup * supervised loss (the discriminator is trained as usual)."""

    name = "s2_factor_vae"
    defaults = _few_label_defaults(FactorVAE)


class S2DIPVAEI(_FewLabelMixin, DIPVAEI):
    """S^2-DIP-VAE-I."""

    name = "s2_dip_vae_i"
    defaults = _few_label_defaults(DIPVAEI)


class S2DIPVAEII(_FewLabelMixin, DIPVAEII):
    """S^2-DIP-VAE-II."""

    name = "s2_dip_vae_ii"
    defaults = _few_label_defaults(DIPVAEII)


class S2BetaTCVAE(_FewLabelMixin, BetaTCVAE):
    """S^2-beta-TC-VAE."""

    name = "s2_beta_tc_vae"
    defaults = _few_label_defaults(BetaTCVAE)


SEMI_SUPERVISED_MODELS: tuple[type[VAEModel], ...] = (
    SemiSupervisedVAE,
    S2BetaVAE,
    S2FactorVAE,
    S2DIPVAEI,
    S2DIPVAEII,
    S2BetaTCVAE,
)

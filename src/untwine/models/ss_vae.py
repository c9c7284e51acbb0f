"""``ss_vae`` -- a *partially specified* VAE (Siddharth et al., NeurIPS 2017, "Learning Disentangled
Representations with Semi-Supervised Deep Generative Models"): an interpretable discrete latent ``y``
(``num_classes`` values, observed when a label exists) next to a continuous style latent ``z``.

* generation: ``p(y) = 1/K``, ``p(z) = N(0, I)``, ``p(x | y, z)`` = the decoder fed ``[z, onehot(y)]``;
* recognition: ``q(y | x)`` (a softmax head on the encoder trunk) and ``q(z | x, y)`` (Gaussian heads fed
  ``[trunk(x), onehot(y)]``).

Per unlabelled image the objective is the ELBO with ``y`` summed out exactly over its K values::

    U(x) = sum_y q(y|x) [ E_q(z|x,y) log p(x|y,z) - KL(q(z|x,y) || p(z)) + log p(y) - log q(y|x) ]

and per labelled pair the paper's importance-sampled bound on ``log p(x, y)`` plus ``alpha * log q(y|x)``
(:func:`supervised_bound`).

``unlabelled`` chooses how ``y`` is handled for unlabelled images:

* ``"enumerate"`` (default): ``y`` summed out exactly as above, one decoder pass per class -- Kingma et
  al.'s M2 (2014), the special case the paper compares with;
* ``"concrete"``: as the authors' released code (probtorch's ``mnist-semisupervised`` example): per
  importance sample a relaxed one-hot ``y~ = softmax((log q(y|x) + Gumbel) / temperature)`` feeds
  ``q(z|x,y~)`` and the decoder, and ``y`` enters the bound through ``log q(k|x) - log p(k)`` at
  ``k = argmax y~`` (probtorch scores a Concrete variable by the categorical mass of its argmax).  The S
  samples are averaged with equal weights (nothing is observed, so the log-weights are 0).  As the
  temperature goes to 0 its expectation is the enumerated ELBO (Gumbel-max), at S decoder passes per image
  instead of K.

Which examples carry labels is a :class:`untwine.data.labels.LabelledSet`: a fixed subset of
a dataset's factor grid chosen from the run's seed (or given arrays), from which ``labelled_batch_size``
labelled rows are drawn into every batch with the run's torch generator -- so training stays
bit-identical on resume.  The training loop attaches the set (``attach_dataset``); the batch's factors are used
only to log the accuracy of ``q(y|x)`` on the unlabelled rows.  See docs/semi_supervised.md.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from untwine.data.labels import LabelledSet, check_labels
from untwine.data.stream import Batch
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
)
from untwine.models.objectives import LossOutput, VAEModel, checked_int
from untwine.models.parameters import Param, defaults_of

__all__ = [
    "SS_ARCHITECTURES",
    "SS_ESTIMATORS",
    "SS_UNLABELLED",
    "SemiSupervisedVAE",
    "label_log_likelihood_estimate",
    "gumbel_softmax_sample",
    "log_mean_exp",
    "supervised_bound",
    "unsupervised_bound",
]

SS_ARCHITECTURES = ("conv", "fc", "mlp")
SS_ESTIMATORS = ("weighted", "iwae")
SS_UNLABELLED = ("enumerate", "concrete")


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


def gumbel_softmax_sample(
    logits: torch.Tensor, temperature: float, num_samples: int, generator: torch.Generator
) -> torch.Tensor:
    """``num_samples`` relaxed one-hot draws per row of ``logits`` (N, K): (S, N, K).

    ``softmax((logits + g) / temperature)`` with ``g = -log(-log u)``, ``u ~ U(0, 1)`` from ``generator``
    (the Concrete / Gumbel-softmax distribution of Maddison et al. and Jang et al., 2017); differentiable in
    ``logits``.  Its argmax is distributed as ``softmax(logits)`` (Gumbel-max) at every temperature.
    """
    shape = (num_samples, *logits.shape)
    u = torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float32)
    tiny = torch.finfo(torch.float32).tiny
    gumbel = -torch.log((-torch.log(u.clamp(tiny, 1.0))).clamp_min(tiny)).to(logits.device)
    return torch.softmax((logits.float().unsqueeze(0) + gumbel) / temperature, -1)


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
    """flatten -> ``hidden`` ReLU [-> ``hidden`` ReLU] (``fc``: 64x64 images, two layers of 1200 units, as
    dlib's ``fc_encoder``; the authors' MNIST network: one layer of 256)."""

    def __init__(self, num_channels: int, image_size: int, hidden: int, hidden_layers: int = 2):
        super().__init__()
        self.num_channels, self.image_size, self.out_features = num_channels, image_size, hidden
        self.fc1 = nn.Linear(image_size * image_size * num_channels, hidden)
        self.fc2 = nn.Linear(hidden, hidden) if hidden_layers == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            expected = (self.num_channels, self.image_size, self.image_size)
            if x.dim() != 4 or tuple(x.shape[1:]) != expected:
                raise ValueError(
                    f"expected images of shape (N, {', '.join(map(str, expected))}) (NCHW), "
                    f"got {tuple(x.shape)}"
                )
        h = F.relu(self.fc1(_flatten_nhwc(x)))
        return h if self.fc2 is None else F.relu(self.fc2(h))


class _MLPDecoder(nn.Module):
    """``[z, onehot(y)]`` -> ``hidden`` ReLU [-> ``hidden`` ReLU] -> logits (N, C, S, S)."""

    def __init__(
        self, num_channels: int, num_inputs: int, image_size: int, hidden: int, hidden_layers: int = 2
    ):
        super().__init__()
        self.num_channels, self.image_size = num_channels, image_size
        self.fc1 = nn.Linear(num_inputs, hidden)
        self.fc2 = nn.Linear(hidden, hidden) if hidden_layers == 2 else None
        self.out = nn.Linear(hidden, image_size * image_size * num_channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc1(h))
        if self.fc2 is not None:
            h = F.relu(self.fc2(h))
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
    param_specs = (
        Param("num_classes", 3, int, low=2),  # dSprites' shape
        Param("label_factor", 0, int, low=0),
        Param("labelled_fraction", 0.01, float, low=0, low_open=True, high=1),
        Param("num_labels", None, int, low=1, nullable=True),  # overrides labelled_fraction when set
        Param("labelled_batch_size", 16, int, low=0),
        Param("alpha", 0.1, float, low=0),
        Param("num_samples", 1, int, low=1),
        Param("estimator", "weighted", str, choices=SS_ESTIMATORS),
        Param("unlabelled", "enumerate", str, choices=SS_UNLABELLED),
        Param("temperature", 0.66, float, low=0, low_open=True),  # the authors' Concrete temperature
    )
    defaults = defaults_of(param_specs)

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
        unlabelled: str = "enumerate",
        temperature: float = 0.66,
        image_size: int | None = None,
        hidden: int | None = None,
        hidden_layers: int = 2,
    ):
        nn.Module.__init__(self)
        num_channels = checked_int("num_channels", num_channels, 1)
        num_latents = checked_int("num_latents", num_latents, 1)
        num_classes = checked_int("num_classes", num_classes, 2)
        if architecture not in SS_ARCHITECTURES:
            raise ValueError(f"architecture must be one of {SS_ARCHITECTURES}, got {architecture!r}")
        if reconstruction not in L.RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {L.RECONSTRUCTIONS}, got {reconstruction!r}")
        if estimator not in SS_ESTIMATORS:
            raise ValueError(f"estimator must be one of {SS_ESTIMATORS}, got {estimator!r}")
        if unlabelled not in SS_UNLABELLED:
            raise ValueError(f"unlabelled must be one of {SS_UNLABELLED}, got {unlabelled!r}")
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if hidden_layers not in (1, 2):
            raise ValueError(f"hidden_layers must be 1 or 2, got {hidden_layers!r}")
        if not float(alpha) >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha!r}")
        if num_labels is None and not 0.0 < float(labelled_fraction) <= 1.0:
            raise ValueError(f"labelled_fraction must lie in (0, 1], got {labelled_fraction!r}")
        image_size = IMAGE_SIZE if image_size is None else checked_int("image_size", image_size, 1)
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
        self.label_factor = checked_int("label_factor", label_factor)
        self.labelled_fraction = float(labelled_fraction)
        self.num_labels = None if num_labels is None else checked_int("num_labels", num_labels, 1)
        self.labelled_batch_size = checked_int("labelled_batch_size", labelled_batch_size)
        self.alpha = float(alpha)
        self.num_samples = checked_int("num_samples", num_samples, 1)
        self.estimator = estimator
        self.unlabelled, self.temperature = unlabelled, float(temperature)
        self.params = {
            "num_classes": num_classes,
            "label_factor": self.label_factor,
            "labelled_fraction": self.labelled_fraction,
            "num_labels": self.num_labels,
            "labelled_batch_size": self.labelled_batch_size,
            "alpha": self.alpha,
            "num_samples": self.num_samples,
            "estimator": estimator,
            "unlabelled": unlabelled,
            "temperature": self.temperature,
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
            hidden = 256 if hidden is None else checked_int("hidden", hidden, 1)
            trunk = _MLPTrunk(num_channels, image_size, hidden, hidden_layers)
            decoder = _MLPDecoder(num_channels, num_latents + num_classes, image_size, hidden, hidden_layers)
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
        return check_labels(array[:, self.label_factor], self.num_classes, f"factors[:, {self.label_factor}]")

    def compute_loss(self, batch: Batch, step: int, generator: torch.Generator) -> LossOutput:
        """Loss on the unlabelled ``batch.images`` plus ``labelled_batch_size`` rows of the attached labelled set.

        ``batch.factors`` (optional, (N, num_factors)): the batch's ground truth; only its ``label_factor``
        column is read, to log ``accuracy_unlabelled`` -- it never enters the loss.
        """
        x, factors = Batch.checked(batch).images, batch.factors
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
            y_l = torch.from_numpy(check_labels(labels, K, "labels", n_l, "labelled_images")).to(device)
        if unlabelled_labels is not None:
            unlabelled_labels = check_labels(unlabelled_labels, K, "unlabelled_labels", n_u, "x")
        parts = [t for t in ((x if n_u else None), (labelled_images if n_l else None)) if t is not None]
        images = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
        h, class_logits = self.encoder(images)
        log_q_y_all = torch.log_softmax(class_logits.float(), 1)
        eye = torch.eye(K, device=device, dtype=h.dtype)
        concrete = self.unlabelled == "concrete"
        # Rows per unlabelled image: one per class (enumerate) or one per importance sample (concrete).
        R = S if concrete else K
        h_u, h_l = h[:n_u], h[n_u:]
        style_h = [h_u.unsqueeze(0).expand(R, n_u, h.shape[1]).reshape(R * n_u, -1)] if n_u else []
        if not n_u:
            style_y = []
        elif concrete:
            relaxed_y = gumbel_softmax_sample(
                log_q_y_all[:n_u], self.temperature, S, generator
            )  # (S, n_u, K)
            style_y = [relaxed_y.reshape(S * n_u, K).to(h.dtype)]
        else:
            style_y = [eye.unsqueeze(1).expand(K, n_u, K).reshape(K * n_u, K)]
        if n_l:
            style_h.append(h_l)
            style_y.append(eye[y_l])
        style_h_cat, style_y_cat = torch.cat(style_h, 0), torch.cat(style_y, 0)
        mean, logvar = self.encoder.style(style_h_cat, style_y_cat)
        mean, logvar = mean.float(), logvar.float()
        # Samples: one per unlabelled row; S per labelled image.
        mean_u, logvar_u = mean[: R * n_u], logvar[: R * n_u]
        mean_l, logvar_l = mean[R * n_u :], logvar[R * n_u :]
        d = mean.shape[1]
        mean_ls = mean_l.unsqueeze(0).expand(S, n_l, d).reshape(S * n_l, d)
        logvar_ls = logvar_l.unsqueeze(0).expand(S, n_l, d).reshape(S * n_l, d)
        sample_mean = torch.cat([mean_u, mean_ls], 0)
        sample_logvar = torch.cat([logvar_u, logvar_ls], 0)
        z = L.sample_gaussian(sample_mean, sample_logvar, generator)
        dec_y = torch.cat([style_y_cat[: R * n_u], style_y_cat[R * n_u :].repeat(S, 1)], 0)
        recon_logits = self.decode(z, dec_y)
        target_parts = ([x.repeat(R, 1, 1, 1)] if n_u else []) + (
            [labelled_images.repeat(S, 1, 1, 1)] if n_l else []
        )
        targets = torch.cat(target_parts, 0) if len(target_parts) > 1 else target_parts[0]
        log_prior_y = -math.log(K)
        with torch.autocast(device_type=device.type, enabled=False):
            recon = L.reconstruction_loss(self.reconstruction, recon_logits.float(), targets)
            terms: dict[str, torch.Tensor] = {}
            total = torch.zeros((), device=device)
            reconstruction_sum = torch.zeros((), device=device)
            if n_u:
                log_q_y = log_q_y_all[:n_u]
                q_y = log_q_y.exp()
                kl_u = (0.5 * (mean_u.square() + logvar_u.exp() - logvar_u - 1.0)).view(R, n_u, d)
                if concrete:
                    recon_u = recon[: S * n_u].view(S, n_u)
                    z_u = z[: S * n_u]
                    log_p_z = L.gaussian_log_density(z_u, torch.zeros_like(z_u), torch.zeros_like(z_u))
                    log_q_z = L.gaussian_log_density(z_u, mean_u, logvar_u)
                    picked = relaxed_y.argmax(-1)  # (S, n_u): the class each relaxed sample stands for
                    log_q_k = (
                        log_q_y.unsqueeze(0).expand(S, n_u, K).gather(2, picked.unsqueeze(-1)).squeeze(-1)
                    )
                    per_sample = -recon_u + (log_p_z - log_q_z).sum(-1).view(S, n_u) + log_prior_y - log_q_k
                    bound_u = per_sample.mean(0)  # nothing observed: equal importance weights
                    expected_recon = recon_u.mean(0)
                    kl_per_latent = kl_u.mean((0, 1))
                else:
                    recon_u = recon[: K * n_u].view(K, n_u).t()  # (n_u, K)
                    elbo_given_y = -(recon_u + kl_u.sum(-1).t())
                    bound_u = unsupervised_bound(log_q_y, elbo_given_y, log_prior_y)
                    expected_recon = (q_y * recon_u).sum(1)
                    kl_per_latent = (q_y.t().unsqueeze(-1) * kl_u).sum(0).mean(0)
                total = total + bound_u.sum()
                reconstruction_sum = reconstruction_sum + expected_recon.sum()
                kl_y = (q_y * (log_q_y - log_prior_y)).sum(1)
                terms.update(
                    {
                        "elbo": bound_u.mean(),
                        "reconstruction": expected_recon.mean(),
                        "kl": kl_per_latent.sum() + kl_y.mean(),
                        "kl_y": kl_y.mean(),
                        "class_entropy": -(q_y * log_q_y).sum(1).mean(),
                    }
                )
                if unlabelled_labels is not None:
                    truth = torch.from_numpy(unlabelled_labels).to(device)
                    terms["accuracy_unlabelled"] = (log_q_y.argmax(1) == truth).float().mean()
            if n_l:
                recon_l = recon[R * n_u :].view(S, n_l)
                z_l = z[R * n_u :]
                zeros = torch.zeros_like(z_l)
                log_p_z = L.gaussian_log_density(z_l, zeros, zeros).sum(1).view(S, n_l)
                log_q_z = L.gaussian_log_density(z_l, mean_ls, logvar_ls).sum(1).view(S, n_l)
                log_joint = -recon_l + log_p_z + log_prior_y
                log_q_y_l = log_q_y_all[n_u:].gather(1, y_l[:, None]).squeeze(1)
                bound_l = supervised_bound(
                    log_joint, log_q_z, log_q_y_l.unsqueeze(0).expand(S, n_l), self.alpha, self.estimator
                )
                total = total + bound_l.sum()
                reconstruction_sum = reconstruction_sum + recon_l.mean(0).sum()
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
            # everything in the loss but the (expected) reconstruction: KL terms, label terms
            terms["regularizer"] = loss - reconstruction_sum / (n_u + n_l)
        terms = {
            "loss": loss.detach(),
            **{k: v.detach() for k, v in terms.items()},
            "kl_per_latent": kl_per_latent.detach(),
        }
        # The forward pass for the most probable class of each unlabelled image (concrete: its first
        # relaxed sample; labelled: the given class).
        if n_u and concrete:
            rows = torch.arange(n_u, device=device)
        elif n_u:
            pick = log_q_y_all[:n_u].argmax(1)
            rows = pick * n_u + torch.arange(n_u, device=device)
        else:
            rows = torch.arange(n_l, device=device)
        return LossOutput(
            loss=loss, terms=terms, mean=mean[rows], logvar=logvar[rows], z=z[rows], logits=recon_logits[rows]
        )

    def extra_repr(self) -> str:
        return super().extra_repr() + f", image_size={self.image_size}"

"""Studies as data: a declarative grid of datasets x models x hyperparameter values x seeds.

A :class:`Study` says *what* to run -- which datasets, which model sweeps (one swept parameter per
model, plus fixed parameters), which seeds, the fixed training settings and the evaluation (metrics,
representations, metric seed).  Nothing here runs anything: :mod:`untwine.studies.grid` expands a study
(optionally scaled down by a :class:`~untwine.studies.grid.Selection`) into numbered runs, and
:mod:`untwine.studies.runner` executes them.

A new study is one more entry in :data:`STUDIES` (or a ``Study`` built in Python and handed to
``run_study``)::

    my_study = Study(
        name="beta_sweep", description="β-VAE on procedural dSprites",
        datasets=("procedural_dsprites",),
        models=(ModelSweep("beta_vae", "beta", (1.0, 4.0, 16.0)),),
        seeds=tuple(range(5)), train={"steps": 20_000, "batch_size": 64},
        metrics=("mig", "dci"),
    )

Model numbers follow disentanglement_lib's ``get_config()[model_num]`` ordering -- datasets outermost,
then models in the study's order, then values, then seeds -- so with equal-length value lists
``model_num = (dataset_index * num_models + model_index) * num_values * num_seeds + value_index * num_seeds
+ seed_index``.  For ``unsupervised_study_v1`` this is ``1800 d + 300 m + 50 v + seed``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from untwine.metrics.registry import PRESETS

REFERENCE_V1 = (
    "Locatello, Bauer, Lucic, Rätsch, Gelly, Schölkopf, Bachem (2019). Challenging Common Assumptions in the "
    "Unsupervised Learning of Disentangled Representations. ICML. Grid as in disentanglement_lib's "
    "config/unsupervised_study_v1/sweep.py."
)


@dataclass(frozen=True)
class ModelSweep:
    """One model of a study: a swept parameter and its values, plus fixed parameters.

    ``step_params`` are model parameters counted in training steps (AnnealedVAE's
    ``iteration_threshold``), given for the study's nominal ``train["steps"]``; a scaled study with other
    ``steps`` scales them in proportion (100k of 300k steps stays one third of the run).

    ``global_steps_per_iteration``: a study's ``steps`` count disentanglement_lib's global steps, which
    advance by 2 per FactorVAE iteration (its VAE and discriminator ``minimize`` calls both pass
    ``global_step``).  Such a model trains ``steps // global_steps_per_iteration`` iterations, so
    300,000 study steps are FactorVAE's published 150,000 updates of each network.
    """

    model: str
    parameter: str
    values: tuple[float, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    step_params: Mapping[str, int] = field(default_factory=dict)
    label: str = ""  # display name in reports, e.g. "β-VAE"
    symbol: str = ""  # display name of the swept parameter, e.g. "β"
    global_steps_per_iteration: int = 1
    name: str = ""  # the sweep's name in the grid when a study sweeps one model twice (see ``key``)

    def __post_init__(self) -> None:
        from untwine.models import MODEL_DEFAULTS

        if self.model not in MODEL_DEFAULTS:
            raise ValueError(f"unknown model {self.model!r}; valid models: {', '.join(MODEL_DEFAULTS)}")
        valid = MODEL_DEFAULTS[self.model]
        for name in (self.parameter, *self.fixed, *self.step_params):
            if name not in valid:
                raise ValueError(
                    f"model {self.model!r} has no parameter {name!r}; valid: {', '.join(valid) or 'none'}"
                )
        if not self.values:
            raise ValueError(f"model sweep {self.model!r} needs at least one value")
        if not isinstance(self.global_steps_per_iteration, int) or self.global_steps_per_iteration < 1:
            raise ValueError(
                f"global_steps_per_iteration of {self.model!r} must be a positive integer, "
                f"got {self.global_steps_per_iteration!r}"
            )
        if len(set(self.values)) != len(self.values):
            raise ValueError(f"model sweep {self.model!r} repeats a value: {self.values}")
        object.__setattr__(self, "values", tuple(self.values))
        object.__setattr__(self, "fixed", dict(self.fixed))
        object.__setattr__(self, "step_params", dict(self.step_params))

    @property
    def key(self) -> str:
        """The sweep's name in the grid: in model numbers, ``--models``, the store's ``model`` column and
        the reports.  ``name`` when given (a study that sweeps one model twice with other fixed
        parameters, e.g. ``k=1`` and ``k=rnd``), else the model's name."""
        return self.name or self.model

    @property
    def display(self) -> str:
        return self.label or self.key

    @property
    def parameter_display(self) -> str:
        return self.symbol or self.parameter


@dataclass(frozen=True)
class Study:
    """A declarative grid.  ``train`` holds fixed ``TrainConfig`` keys (``steps``, ``batch_size``, ...);
    ``metrics`` are metric names, aliases or one preset of ``untwine.metrics`` (kept as canonical names;
    ``metric_params`` overrides their parameters, e.g. ``{"mig": {"num_train": 1000}}``); every metric is
    computed for every representation in ``representations`` with seed ``metric_seed``."""

    name: str
    description: str
    datasets: tuple[str, ...]
    models: tuple[ModelSweep, ...]
    seeds: tuple[int, ...]
    train: Mapping[str, Any] = field(default_factory=dict)
    metrics: tuple[str, ...] = ()
    metric_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # per-metric overrides
    representations: tuple[str, ...] = ("mean", "sampled")
    metric_seed: int = 0
    fast: bool = False  # opt-in metric approximations (histogram boosting, ...): off for faithful studies
    reference: str = ""

    def __post_init__(self) -> None:
        from untwine.training import TrainConfig
        from untwine.training.representation import REPRESENTATIONS

        for name in ("datasets", "models", "seeds", "metrics", "representations"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "train", dict(self.train))
        self._resolve_metrics()
        if not self.datasets or not self.models or not self.seeds:
            raise ValueError(f"study {self.name!r} needs at least one dataset, model and seed")
        for label, items in (
            ("dataset", self.datasets),
            ("model", [m.key for m in self.models]),
            ("seed", self.seeds),
        ):
            if len(set(items)) != len(items):
                raise ValueError(f"study {self.name!r} lists a {label} twice: {list(items)}")
        for rep in self.representations:
            if rep not in REPRESENTATIONS:
                raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {rep!r}")
        reserved = {"model", "dataset", "seed", "model_params"}
        bad = sorted(set(self.train) & reserved)
        if bad:
            raise ValueError(f"study {self.name!r}: {bad} are set by the grid, not by `train`")
        TrainConfig.from_overrides(dict(self.train))  # unknown keys fail here, listing the valid ones

    def _resolve_metrics(self) -> None:
        """Metric names, aliases or one preset -> canonical names; parameters checked against the
        metrics' own (unknown names, keys or values fail here, naming the valid ones)."""
        from untwine.metrics import PRESETS, resolve_metrics, resolve_parameters

        metrics = self.metrics
        if len(metrics) == 1 and metrics[0] in PRESETS:
            metrics = tuple(resolve_metrics(metrics[0]))
        elif metrics:
            metrics = tuple(resolve_metrics(list(metrics)))
        params: dict[str, dict[str, Any]] = {}
        for name, given in self.metric_params.items():
            canonical = resolve_metrics([name])[0]
            params.setdefault(canonical, {}).update(given)
        stray = sorted(set(params) - set(metrics))
        if stray:
            raise ValueError(f"study {self.name!r}: metric_params for metrics it does not compute: {stray}")
        if metrics:  # a study may train without evaluating
            resolve_parameters(list(metrics), params)
        object.__setattr__(self, "metrics", metrics)
        object.__setattr__(self, "metric_params", params)

    @property
    def size(self) -> int:
        """Models in the full grid (uneven value lists leave gaps in the numbering, not models)."""
        return len(self.datasets) * sum(len(m.values) for m in self.models) * len(self.seeds)

    @property
    def steps(self) -> int:
        from untwine.training import TrainConfig

        return int(self.train.get("steps", TrainConfig.steps))

    @property
    def max_values(self) -> int:
        return max(len(m.values) for m in self.models)

    def model(self, name: str) -> ModelSweep:
        for sweep in self.models:
            if sweep.key == name:
                return sweep
        raise KeyError(
            f"study {self.name!r} has no model {name!r}; its models: {', '.join(m.key for m in self.models)}"
        )

    def replace(self, **changes: Any) -> Study:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["models"] = [dataclasses.asdict(m) for m in self.models]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Study:
        data = dict(data)
        data["models"] = tuple(ModelSweep(**{**m, "values": tuple(m["values"])}) for m in data["models"])
        return cls(**data)


# -- the metric sets -----------------------------------------------------------------------------------
# The nine metric configs of disentanglement_lib's unsupervised_study_v1/metric_configs: the metrics
# table's "study" preset.
STUDY_V1_METRICS = PRESETS["study"]


def _v1_models() -> tuple[ModelSweep, ...]:
    # disentanglement_lib's get_default_models() chains the models in this order; the order fixes model_num.
    return (
        ModelSweep("beta_vae", "beta", (1.0, 2.0, 4.0, 6.0, 8.0, 16.0), label="β-VAE", symbol="β"),
        ModelSweep(
            "factor_vae",
            "gamma",
            (10.0, 20.0, 30.0, 40.0, 50.0, 100.0),
            label="FactorVAE",
            symbol="γ",
            global_steps_per_iteration=2,
        ),
        ModelSweep(
            "dip_vae_i",
            "lambda_od",
            (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
            fixed={"lambda_d_factor": 10.0},
            label="DIP-VAE-I",
            symbol="λ_od",
        ),
        ModelSweep(
            "dip_vae_ii",
            "lambda_od",
            (1.0, 2.0, 5.0, 10.0, 20.0, 50.0),
            fixed={"lambda_d_factor": 1.0},
            label="DIP-VAE-II",
            symbol="λ_od",
        ),
        ModelSweep("beta_tc_vae", "beta", (1.0, 2.0, 4.0, 6.0, 8.0, 10.0), label="β-TCVAE", symbol="β"),
        ModelSweep(
            "annealed_vae",
            "c_max",
            (5.0, 10.0, 25.0, 50.0, 75.0, 100.0),
            fixed={"gamma": 1000.0},
            step_params={"iteration_threshold": 100_000},
            label="AnnealedVAE",
            symbol="C_max",
        ),
    )


UNSUPERVISED_STUDY_V1 = Study(
    name="unsupervised_study_v1",
    description="The 12,600 models of Locatello et al. (2019): 7 datasets x 6 models x 6 values x 50 seeds.",
    datasets=(
        "dsprites_full",
        "color_dsprites",
        "noisy_dsprites",
        "scream_dsprites",
        "smallnorb",
        "cars3d",
        "shapes3d",
    ),
    models=_v1_models(),
    seeds=tuple(range(50)),
    # model_configs/shared.gin: batch 64, 300k steps, 10 latents, Adam 1e-4, conv encoder/deconv decoder,
    # Bernoulli reconstruction.
    train={
        "steps": 300_000,
        "batch_size": 64,
        "num_latents": 10,
        "learning_rate": 1e-4,
        "architecture": "conv",
        "reconstruction": "bernoulli",
    },
    metrics=STUDY_V1_METRICS,
    representations=("mean", "sampled"),  # postprocess_configs/{mean,sampled}.gin, random_seed 0
    metric_seed=0,  # every metric config has evaluation.random_seed = 0
    fast=False,
    reference=REFERENCE_V1,
)

# disentanglement_lib's config/fairness_study_v1: the sweep (datasets, the six models in the same order,
# values, 50 seeds, shared.gin) is unsupervised_study_v1's, so the model numbers coincide; the metric
# configs are the nine of v1 plus fairness (num_train 10000, 100 test points per class, boosted trees).
FAIRNESS_STUDY_V1 = UNSUPERVISED_STUDY_V1.replace(
    name="fairness_study_v1",
    description="Locatello et al. (2019), On the Fairness of Disentangled Representations: the 12,600 "
    "models of unsupervised_study_v1 scored with its metrics and fairness.",
    metrics=PRESETS["fairness_study"],
    reference="Locatello, Abbati, Rainforth, Bauer, Schölkopf, Bachem. On the Fairness of Disentangled "
    "Representations. NeurIPS 2019. disentanglement_lib config/fairness_study_v1.",
)

# A seconds-per-model smoke test of the whole machinery (the test suite runs it through both executors):
# two cheap metrics with reduced sample sizes, tiny training.
SMOKE_METRICS = ("mig", "unsupervised")

SMOKE_TEST = Study(
    name="smoke_test",
    description="Seconds per model: procedural dSprites, 3 models x 2 values x 2 seeds, 10 steps of batch 16, "
    "two cheap metrics on small samples. For checking an installation, not for science.",
    datasets=("procedural_dsprites",),
    models=(
        ModelSweep("beta_vae", "beta", (1.0, 16.0), label="β-VAE", symbol="β"),
        ModelSweep("factor_vae", "gamma", (10.0, 100.0), label="FactorVAE", symbol="γ"),
        ModelSweep(
            "annealed_vae",
            "c_max",
            (5.0, 100.0),
            fixed={"gamma": 1000.0},
            step_params={"iteration_threshold": 3},
            label="AnnealedVAE",
            symbol="C_max",
        ),
    ),
    seeds=(0, 1),
    train={"steps": 10, "batch_size": 16, "eval_batches": 2, "checkpoint_every": 5, "log_every": 5},
    metrics=SMOKE_METRICS,
    metric_params={"mig": {"num_train": 500}, "unsupervised": {"num_train": 500}},
    representations=("mean", "sampled"),
)


def _weak_models() -> tuple[ModelSweep, ...]:
    """β-VAE (the unsupervised baseline, on single images), then GVAE, Ada-GVAE, ML-VAE and Ada-ML-VAE,
    each on pairs with k = 1 and k = rnd; every sweep over the paper's β values."""
    betas = (1.0, 2.0, 4.0, 6.0, 8.0, 16.0)
    sweeps = [ModelSweep("beta_vae", "beta", betas, label="β-VAE", symbol="β")]
    for model, aggregation, prefix, label in (
        ("group_vae", "labels", "gvae", "GVAE"),
        ("group_vae", "argmax", "ada_gvae", "Ada-GVAE"),
        ("ml_vae", "labels", "mlvae", "ML-VAE"),
        ("ml_vae", "argmax", "ada_mlvae", "Ada-ML-VAE"),
    ):
        for k, suffix in ((1, "k1"), ("rnd", "krnd")):
            sweeps.append(
                ModelSweep(
                    model,
                    "beta",
                    betas,
                    fixed={"aggregation": aggregation, "k": k},
                    label=f"{label} (k={k})",
                    symbol="β",
                    name=f"{prefix}_{suffix}",
                )
            )
    return tuple(sweeps)


# Locatello, Poole, Rätsch, Schölkopf, Bachem, Tschannen (2020): the four pair models with k = 1 and
# k = rnd, β in {1, 2, 4, 6, 8, 16}, 10 seeds, on the paper's five datasets, with the unsupervised
# study's training settings.  disentanglement_lib publishes the models (methods/weak) but no sweep
# file for this study, so the order of datasets and models -- and so the model numbers -- is untwine's
# (the paper's order of datasets, the β-VAE baseline first); it is fixed from here on.
WEAKLY_SUPERVISED_STUDY = Study(
    name="weakly_supervised_study",
    description="Locatello et al. (2020), Weakly-Supervised Disentanglement Without Compromises: β-VAE and "
    "GVAE / Ada-GVAE / ML-VAE / Ada-ML-VAE with k = 1 and rnd, 6 β values x 10 seeds x 5 datasets.",
    datasets=("dsprites_full", "cars3d", "smallnorb", "shapes3d", "mpi3d_real"),
    models=_weak_models(),
    seeds=tuple(range(10)),
    train=dict(UNSUPERVISED_STUDY_V1.train),
    metrics=STUDY_V1_METRICS,
    representations=("mean", "sampled"),
    metric_seed=0,
    fast=False,
    reference="Locatello, Poole, Rätsch, Schölkopf, Bachem, Tschannen (2020). Weakly-Supervised "
    "Disentanglement Without Compromises. ICML. Models as in disentanglement_lib's methods/weak.",
)


def _semi_supervised_models() -> tuple[ModelSweep, ...]:
    """The S^2 models over v1's values of their unsupervised parameter, and the supervised baseline over
    the label counts; every model with 100 and with 1,000 labels, 90 % of them for training."""
    v1 = {sweep.model: sweep for sweep in _v1_models()}
    sweeps = []
    for model, parent in (
        ("s2_beta_vae", "beta_vae"),
        ("s2_factor_vae", "factor_vae"),
        ("s2_dip_vae_i", "dip_vae_i"),
        ("s2_beta_tc_vae", "beta_tc_vae"),
    ):
        base = v1[parent]
        for labels in (100, 1000):
            sweeps.append(
                ModelSweep(
                    model,
                    base.parameter,
                    base.values,
                    fixed={**base.fixed, "num_labels": labels, "train_percentage": 0.9},
                    label=f"S²-{base.display} ({labels} labels)",
                    symbol=base.symbol,
                    global_steps_per_iteration=base.global_steps_per_iteration,
                    name=f"{model}_{labels}",
                )
            )
    sweeps.append(
        ModelSweep(
            "supervised",
            "num_labels",
            (100, 1000),
            fixed={"train_percentage": 0.9},
            label="supervised only",
            symbol="labels",
        )
    )
    return tuple(sweeps)


# The question of Locatello et al. (2020), "Disentangling Factors of Variation Using Few Labels" -- do a
# few labels pick the better model, and do they help in training? -- as a grid of untwine's: the paper's
# exact sweep is not among disentanglement_lib's configs (it ships only test configs for these methods),
# so this is not a reproduction of its numbers.  Each run holds 10 % of its labels out of training and
# scores itself on them (untwine.training.validation); the report's section 9 correlates those scores with
# the test scores.  Perfect labels, the xent supervised loss with gamma_sup = 1 (the models' defaults).
SEMI_SUPERVISED_STUDY = Study(
    name="semi_supervised_study",
    description="Few-label model selection: S²-β-VAE / FactorVAE / DIP-VAE-I / β-TCVAE with 100 and 1,000 "
    "labels over v1's values, and the supervised baseline; 7 datasets x 5 seeds; untwine's grid.",
    datasets=UNSUPERVISED_STUDY_V1.datasets,
    models=_semi_supervised_models(),
    seeds=tuple(range(5)),
    train=dict(UNSUPERVISED_STUDY_V1.train),
    metrics=STUDY_V1_METRICS,
    representations=("mean",),
    metric_seed=0,
    fast=False,
    reference="Locatello, Tschannen, Bauer, Rätsch, Schölkopf, Bachem (2020). Disentangling Factors of "
    "Variation Using Few Labels. ICLR. Grid by untwine (not the paper's published sweep).",
)

STUDIES: dict[str, Study] = {
    study.name: study
    for study in (
        UNSUPERVISED_STUDY_V1,
        FAIRNESS_STUDY_V1,
        WEAKLY_SUPERVISED_STUDY,
        SEMI_SUPERVISED_STUDY,
        SMOKE_TEST,
    )
}


def get_study(name: str) -> Study:
    try:
        return STUDIES[name]
    except KeyError:
        raise KeyError(f"unknown study {name!r}; known studies: {', '.join(STUDIES)}") from None

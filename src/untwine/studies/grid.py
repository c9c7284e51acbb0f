"""Expand a study into numbered runs, optionally scaled down by a :class:`Selection`.

A selection never renumbers: a run keeps the ``model_num`` it has in the full study, so results of a
scaled-down study line up with the full one and ``--model-num 4321`` always means the same model.

Datasets outside the study's own list (the procedural stand-ins, say) are numbered after it, in a slot
derived from the dataset's name alone: dataset index ``len(study.datasets) + dataset_slot(name)``, with
``dataset_slot`` the SHA-256 of the name modulo :data:`OUTSIDE_SLOTS`.  Adding a dataset to the registry
therefore never changes a number, and no number of an outside dataset can alias one of the study's own
models.  Two registered names in the same slot would share numbers: that is detected and refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from untwine.studies.definitions import Study

# TrainConfig keys that describe the machine, not the experiment: left out of the config hash and set
# by the executor when the run starts.
MACHINE_KEYS = ("device", "threads", "progress")


@dataclass(frozen=True)
class RunSpec:
    """One model of a study: its number, grid coordinates and complete training config."""

    model_num: int
    dataset: str
    model: str  # the sweep's key in the study (the model's name unless the study names its sweeps)
    parameter: str
    value: float
    value_index: int
    seed: int
    config: Mapping[str, Any]  # TrainConfig.to_dict() without MACHINE_KEYS

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    def train_config(self, **machine: Any):
        """The ``TrainConfig`` to train this run with ``machine`` settings (device, threads, progress)."""
        from untwine.training import TrainConfig

        return TrainConfig.from_dict({**self.config, **machine})

    def overrides(self) -> list[str]:
        """The run as ``untwine train`` arguments (only what differs from the defaults)."""
        from untwine.training import TrainConfig

        default = TrainConfig().to_dict()
        out = [f"model={self.config['model']}", f"dataset={self.dataset}", f"seed={self.seed}"]
        for key, value in self.config.items():
            if key in ("model", "dataset", "seed", "model_params") or value == default.get(key):
                continue
            out.append(f"{key}={_format(value)}")
        for key, value in self.config["model_params"].items():
            out.append(f"model.{key}={_format(value)}")
        return out


def _format(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)  # 4.0 -> "4.0", True -> "true", None -> "null"


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of a run config, machine keys excluded."""
    clean = {k: v for k, v in config.items() if k not in MACHINE_KEYS}
    text = json.dumps(clean, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Selection:
    """A scaled-down or re-targeted view of a study (the ``untwine study run`` flags).

    ``values`` picks positions (0-based) in every model's value list; ``model_values`` picks values by
    value for named models and wins over ``values`` for them.  ``train`` holds extra TrainConfig
    overrides (``learning_rate``, ``batch_size``, ...); ``steps`` also rescales step-counted model
    parameters (AnnealedVAE's capacity ramp).
    """

    datasets: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None
    values: tuple[int, ...] | None = None
    model_values: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None
    steps: int | None = None
    train: Mapping[str, Any] = field(default_factory=dict)
    model_nums: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "datasets": list(self.datasets) if self.datasets is not None else None,
            "models": list(self.models) if self.models is not None else None,
            "values": list(self.values) if self.values is not None else None,
            "model_values": {k: list(v) for k, v in self.model_values.items()},
            "seeds": list(self.seeds) if self.seeds is not None else None,
            "steps": self.steps,
            "train": dict(self.train),
            "model_nums": list(self.model_nums) if self.model_nums is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Selection:
        def tup(key):
            return tuple(data[key]) if data.get(key) is not None else None

        return cls(
            datasets=tup("datasets"),
            models=tup("models"),
            values=tup("values"),
            model_values={k: tuple(v) for k, v in (data.get("model_values") or {}).items()},
            seeds=tup("seeds"),
            steps=data.get("steps"),
            train=dict(data.get("train") or {}),
            model_nums=tup("model_nums"),
        )


# -- numbering ------------------------------------------------------------------------------------------
OUTSIDE_SLOTS = 10_000  # slots for datasets outside a study's own list; indices len(datasets) + slot


def dataset_slot(name: str) -> int:
    """The stable slot of a dataset outside a study's own list: depends on the name only."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % OUTSIDE_SLOTS


def outside_datasets(study: Study) -> dict[int, str]:
    """slot -> name of every registered dataset that is not in ``study.datasets``; refuses collisions."""
    from untwine.data import list_datasets

    slots: dict[int, str] = {}
    for name in list_datasets():
        if name in study.datasets:
            continue
        slot = dataset_slot(name)
        if slot in slots:
            raise ValueError(
                f"datasets {slots[slot]!r} and {name!r} share model-number slot {slot}; rename one of "
                f"them (a dataset's slot is derived from its name) or add it to study {study.name!r}"
            )
        slots[slot] = name
    return slots


def dataset_index(study: Study, dataset: str) -> int:
    """The dataset coordinate of ``model_num``: the position in the study, else ``len + dataset_slot``."""
    if dataset in study.datasets:
        return study.datasets.index(dataset)
    from untwine.data import list_datasets

    names = list_datasets()
    if dataset not in names:
        raise ValueError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(names)}")
    outside_datasets(study)  # a slot shared with another dataset would give two models one number
    return len(study.datasets) + dataset_slot(dataset)


def strides(study: Study) -> tuple[int, int, int]:
    """(dataset, model, value) strides; the seed stride is 1."""
    value = len(study.seeds)
    model = study.max_values * value
    return len(study.models) * model, model, value


def model_num(study: Study, dataset: str, model: str, value_index: int, seed: int) -> int:
    d_stride, m_stride, v_stride = strides(study)
    model_index = [m.key for m in study.models].index(study.model(model).key)
    if seed not in study.seeds:
        raise ValueError(f"seed {seed} is not in study {study.name!r} (seeds {_ranges(study.seeds)})")
    return (
        dataset_index(study, dataset) * d_stride
        + model_index * m_stride
        + value_index * v_stride
        + study.seeds.index(seed)
    )


def decode_model_num(study: Study, number: int) -> tuple[str, str, int, int]:
    """``model_num`` -> (dataset, model, value_index, seed); a number that names no model is an error."""
    if number < 0:
        raise ValueError(f"model_num must be >= 0, got {number}")
    d_stride, m_stride, v_stride = strides(study)
    d, rest = divmod(number, d_stride)
    m, rest = divmod(rest, m_stride)
    v, s = divmod(rest, v_stride)
    if d < len(study.datasets):
        dataset = study.datasets[d]
    else:
        dataset = outside_datasets(study).get(d - len(study.datasets))
        if dataset is None:
            raise ValueError(
                f"model_num {number} names no model of study {study.name!r}: its numbers are 0-"
                f"{len(study.datasets) * d_stride - 1} for the study's datasets, and datasets outside "
                "it are numbered by a slot derived from their name (see `untwine study run --datasets "
                "NAME --dry-run` for their numbers)"
            )
    sweep = study.models[m]
    if v >= len(sweep.values):
        raise ValueError(
            f"model_num {number} falls in a gap of study {study.name!r} "
            f"({sweep.key} has {len(sweep.values)} values)"
        )
    return dataset, sweep.key, v, study.seeds[s]


def _ranges(seeds: Sequence[int]) -> str:
    seeds = sorted(seeds)
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


# -- expansion -----------------------------------------------------------------------------------------
def run_spec(
    study: Study,
    dataset: str,
    model: str,
    value_index: int,
    seed: int,
    steps: int | None = None,
    train: Mapping[str, Any] | None = None,
) -> RunSpec:
    from untwine.training import TrainConfig

    sweep = study.model(model)
    value = sweep.values[value_index]
    steps = int(steps if steps is not None else study.steps)
    params: dict[str, Any] = dict(sweep.fixed)
    params[sweep.parameter] = value
    for name, nominal in sweep.step_params.items():
        params[name] = max(1, round(nominal * steps / study.steps))
    steps = max(1, steps // sweep.global_steps_per_iteration)  # training iterations (see ModelSweep)
    overrides: dict[str, Any] = {
        **study.train,
        **(train or {}),
        "steps": steps,
        "model": sweep.model,
        "dataset": dataset,
        "seed": seed,
        "progress": False,
    }
    if "checkpoint_every" not in overrides:  # a scaled-down run still gets ~10 checkpoints to resume from
        default = TrainConfig.checkpoint_every
        overrides["checkpoint_every"] = default if steps >= 10 * default else max(1, steps // 10)
    overrides.update({f"model.{k}": v for k, v in params.items()})
    config = TrainConfig.from_overrides(overrides).to_dict()
    for key in MACHINE_KEYS:
        config.pop(key)
    return RunSpec(
        model_num=model_num(study, dataset, model, value_index, seed),
        dataset=dataset,
        model=model,
        parameter=sweep.parameter,
        value=float(value),
        value_index=value_index,
        seed=seed,
        config=config,
    )


def _value_indices(study: Study, sel: Selection, model: str) -> list[int]:
    """Positions in ``model``'s value list that ``sel`` picks (by value, by position, or all)."""
    sweep = study.model(model)
    if model in sel.model_values:
        indices = []
        for value in sel.model_values[model]:
            matches = [
                i for i, v in enumerate(sweep.values) if abs(v - float(value)) <= 1e-9 * max(1, abs(v))
            ]
            if not matches:
                raise ValueError(
                    f"{model}.{sweep.parameter}={value} is not in study {study.name!r} "
                    f"(values {', '.join(f'{v:g}' for v in sweep.values)}); define a new "
                    "study to sweep other values"
                )
            indices.append(matches[0])
        return indices
    if sel.values is not None:
        for i in sel.values:
            if not 0 <= i < len(sweep.values):
                raise ValueError(
                    f"value position {i} is outside {model}'s {len(sweep.values)} values "
                    f"({', '.join(f'{v:g}' for v in sweep.values)})"
                )
        return list(sel.values)
    return list(range(len(sweep.values)))


def expand(study: Study, selection: Selection | None = None) -> list[RunSpec]:
    """Every run of ``study`` under ``selection``, in model_num order.

    ``selection.model_nums`` picks runs by number, datasets outside the study's list included; the other
    filters given with it must contain every number (one outside them is an error naming the filter,
    never silently added or dropped).
    """
    sel = selection or Selection()
    bad_train = sorted(set(sel.train) & {"model", "dataset", "seed", "steps"})
    if bad_train:
        raise ValueError(f"set {bad_train} with the dedicated flags (--datasets, --models, --seeds, --steps)")
    datasets = sel.datasets if sel.datasets is not None else study.datasets
    for name in datasets:
        dataset_index(study, name)  # validates
    models = sel.models if sel.models is not None else tuple(m.key for m in study.models)
    for name in (*models, *sel.model_values):
        study.model(name)
    seeds = sel.seeds if sel.seeds is not None else study.seeds
    for seed in seeds:
        if seed not in study.seeds:
            raise ValueError(f"seed {seed} is not in study {study.name!r} (seeds {_ranges(study.seeds)})")
    if sel.steps is not None and sel.steps < 1:
        raise ValueError(f"steps must be >= 1, got {sel.steps}")
    indices = {model: _value_indices(study, sel, model) for model in models}
    if sel.model_nums is not None:
        runs = [_numbered_run(study, sel, number, indices) for number in sel.model_nums]
    else:
        runs = [
            run_spec(study, dataset, model, value_index, seed, sel.steps, sel.train)
            for dataset in datasets
            for model in models
            for value_index in indices[model]
            for seed in seeds
        ]
    runs.sort(key=lambda r: r.model_num)
    numbers = [r.model_num for r in runs]
    if len(set(numbers)) != len(numbers):
        raise ValueError("the selection lists a run twice (repeated dataset, model, value, seed or number)")
    return runs


def _numbered_run(study: Study, sel: Selection, number: int, indices: Mapping[str, list[int]]) -> RunSpec:
    dataset, model, value_index, seed = decode_model_num(study, number)
    outside = [
        flag
        for flag, inside in (
            ("--datasets", sel.datasets is None or dataset in sel.datasets),
            ("--models", model in indices),
            ("--values", model not in indices or value_index in indices[model]),
            ("--seeds", sel.seeds is None or seed in sel.seeds),
        )
        if not inside
    ]
    if outside:
        sweep = study.model(model)
        raise ValueError(
            f"model_num {number} ({dataset}, {model} {sweep.parameter}={sweep.values[value_index]:g}, "
            f"seed {seed}) is outside the selection's {', '.join(outside)}; with other selection flags, "
            "--model-num may only pick numbers inside them: drop the number or widen the flags"
        )
    return run_spec(study, dataset, model, value_index, seed, sel.steps, sel.train)


def spec_for_model_num(
    study: Study, number: int, steps: int | None = None, train: Mapping[str, Any] | None = None
) -> RunSpec:
    dataset, model, value_index, seed = decode_model_num(study, number)
    return run_spec(study, dataset, model, value_index, seed, steps, train)


# -- flag parsing --------------------------------------------------------------------------------------
def parse_int_list(text: str) -> tuple[int, ...]:
    """``"0-4"`` -> (0, 1, 2, 3, 4); ``"0,3,7-8"`` -> (0, 3, 7, 8)."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                low, high = part.split("-", 1) if not part.startswith("-") else (part, part)
                out.extend(range(int(low), int(high) + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(f"expected integers or ranges like 0-4, got {text!r}") from None
    if not out:
        raise ValueError(f"expected integers or ranges like 0-4, got {text!r}")
    return tuple(out)


def parse_values(specs: Iterable[str]) -> tuple[tuple[int, ...] | None, dict[str, tuple[float, ...]]]:
    """``--values`` flags: ``0,5`` (positions in every model's list) or ``beta_vae=1,16`` (values)."""
    positions: tuple[int, ...] | None = None
    by_model: dict[str, tuple[float, ...]] = {}
    for spec in specs:
        if "=" in spec:
            model, values = spec.split("=", 1)
            try:
                by_model[model.strip()] = tuple(float(v) for v in values.split(",") if v.strip())
            except ValueError:
                raise ValueError(f"--values {spec!r}: expected MODEL=v1,v2,...") from None
        else:
            positions = parse_int_list(spec)
    return positions, by_model

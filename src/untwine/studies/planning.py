"""What to run, decided and checked before anything runs: the study with the evaluation asked for, the
selection (a new one, or the one saved in the study directory), and every run's config.

``untwine study run`` is these functions plus :func:`untwine.studies.runner.run_study`: a bad metric,
metric parameter, dataset, model, value, seed or training key fails here, in seconds, naming what is
wrong and the valid choices -- before a study directory, a store or a worker exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from untwine.studies.definitions import Study, get_study
from untwine.studies.grid import RunSpec, Selection, expand

DEFAULT_STUDIES_DIR = Path("studies")


@dataclass(frozen=True)
class EvaluationChoice:
    """Changes to a study's evaluation: ``metrics`` (names, aliases or one preset; None keeps the
    study's), ``fast`` approximations, and ``metric_params`` on top of the study's own."""

    metrics: tuple[str, ...] | None = None
    fast: bool = False
    metric_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def changes_anything(self) -> bool:
        return self.metrics is not None or self.fast or bool(self.metric_params)


@dataclass(frozen=True)
class StudyPlan:
    """A study ready to run: definition (evaluation applied), selection, directory and store."""

    study: Study
    selection: Selection
    study_dir: Path
    store: str | None
    continued: bool  # the selection was the one saved in study_dir


def parse_metric_params(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["dci.num_train=2000", "mig.num_bins=[10,20]"]`` -> ``{"dci": {"num_train": 2000}, ...}``."""
    from untwine.utils.overrides import parse_value, split_override

    params: dict[str, dict[str, Any]] = {}
    for item in items:
        key, value = split_override(item)
        metric, _, name = key.partition(".")
        if not metric or not name:
            raise ValueError(f"a metric parameter looks like METRIC.KEY=VALUE, got {item!r}")
        params.setdefault(metric, {})[name] = parse_value(value)
    return params


def apply_evaluation(study: Study, choice: EvaluationChoice) -> Study:
    """``study`` with ``choice`` applied; names, parameter keys and values are checked by ``Study``."""
    if choice.metrics is not None:
        from untwine.metrics import PRESETS, resolve_metrics

        names = choice.metrics
        metrics = resolve_metrics(names[0] if len(names) == 1 and names[0] in PRESETS else list(names))
        kept = {name: params for name, params in study.metric_params.items() if name in metrics}
        study = study.replace(metrics=tuple(metrics), metric_params=kept)
    if choice.fast:
        study = study.replace(fast=True)
    if choice.metric_params:
        params = {name: dict(p) for name, p in study.metric_params.items()}
        for name, given in choice.metric_params.items():
            params.setdefault(name, {}).update(given)
        study = study.replace(metric_params=params)
    return study


def resolve_study(
    name: str | None,
    study_dir: Path | None,
    selection: Selection | None = None,
    evaluation: EvaluationChoice | None = None,
    store: str | None = None,
) -> StudyPlan:
    """The study to run from what the user named.

    * no ``name``: continue the study saved in ``study_dir`` (selection and evaluation as saved; giving
      new ones is refused, since they would replace the saved selection silently);
    * ``name`` and no selection or evaluation changes, and ``study_dir`` (default ``studies/NAME``) holds
      that study: continue it with its saved selection;
    * otherwise: study ``name`` with ``evaluation`` applied, under ``selection``.
    """
    from untwine.studies.runner import STUDY_FILE, load_study_file

    selection = selection or Selection()
    evaluation = evaluation or EvaluationChoice()
    changes = selection != Selection() or evaluation.changes_anything
    if name is None:
        if study_dir is None or not (study_dir / STUDY_FILE).exists():
            raise ValueError(
                "name a study (see `untwine study list`) or --dir of an existing study directory"
            )
        if changes:
            raise ValueError("selection flags need the study name too (they replace the saved selection)")
        study, saved, _ = load_study_file(study_dir)
        return StudyPlan(study, saved, study_dir, store, continued=True)
    study = get_study(name)
    study_dir = study_dir or DEFAULT_STUDIES_DIR / study.name
    if not changes and (study_dir / STUDY_FILE).exists():
        saved_study, saved, _ = load_study_file(study_dir)
        if saved_study.name == study.name:  # the same command again, without its flags
            return StudyPlan(saved_study, saved, study_dir, store, continued=True)
    return StudyPlan(apply_evaluation(study, evaluation), selection, study_dir, store, continued=False)


def check_data_available(specs: list[RunSpec]) -> None:
    """Every dataset the runs train on has its files (procedural datasets always do)."""
    from untwine.data.registry import get_spec

    missing = {}
    for name in sorted({s.dataset for s in specs}):
        files = get_spec(name).missing_files()
        if files:
            missing[name] = files
    if missing:
        lines = "; ".join(
            f"{name}: {', '.join(str(f) for f in files[:2])}" for name, files in missing.items()
        )
        raise FileNotFoundError(
            f"dataset files are missing ({lines}); fetch them with "
            f"`untwine data download NAME` or choose procedural datasets with --datasets"
        )


def plan_runs(study: Study, selection: Selection | None = None) -> list[RunSpec]:
    """Every run of ``study`` under ``selection``, each config validated and its data present; raises
    before anything is written (``run_study`` calls it first)."""
    specs = expand(study, selection)
    if not specs:
        raise ValueError("the selection contains no runs")
    check_data_available(specs)
    return specs

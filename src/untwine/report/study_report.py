"""The study report: the analyses of Locatello et al. (2019) on whatever part of a study was run.

``write_study_report(study_dir)`` reads the results store, computes the tables of
:mod:`untwine.studies.analysis`, draws them with matplotlib and writes ``STUDY_DIR/report/``:
``index.html`` (self-contained: images as ``data:`` URIs, inline styles, a Content-Security-Policy
that forbids everything else), the same figures as PNG files, and the tables as CSV.

Sections: what was run; (1) total correlation of sampled vs mean representations against the
regularisation strength; (2) rank correlation between metrics; (3) metric distributions per model and
against the hyperparameter; (4) variance shares of model / hyperparameter / seed (untwine's statistic);
(5) downstream accuracy and sample efficiency vs metrics; (6) unsupervised model selection.  A section
whose inputs were not computed says so instead of drawing an empty figure.

This module draws the figures (on pyplot-free :func:`untwine.visualisation.figures.new_figure` figures,
so the caller's matplotlib backend and open figures are untouched) and gathers what the page shows into a
:class:`StudyReportPage`; the markup and prose are ``templates/study_report.html``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from untwine import __version__
from untwine.report.page import render
from untwine.report.records import Cell, Picture, Table
from untwine.studies import analysis as A
from untwine.studies.definitions import Study
from untwine.studies.grid import Selection
from untwine.utils.io import atomic_write_bytes, atomic_write_text
from untwine.visualisation.figures import figure_png, new_figure

REPORT_DIR = "report"
REPORT_NAME = "index.html"


@dataclass(frozen=True)
class DatasetPictures:
    """The figures of one dataset under its own heading."""

    dataset: str
    pictures: list[Picture]


@dataclass(frozen=True)
class PoolPicture:
    """The model-selection heatmap of one dataset and pool kind; ``None`` when no pool has two runs."""

    dataset: str
    pool: str
    picture: Picture | None


@dataclass(frozen=True)
class Overview:
    """Section "What was run"."""

    num_runs: int
    status_counts: str
    study: Study | None
    selection: str | None
    median_train_seconds: float | None
    median_eval_seconds: float | None
    failed: Table | None
    summary: Table


@dataclass(frozen=True)
class Analyses:
    """Sections 1-6; a ``None`` (or a ``missing_*`` reason) where the inputs were not computed."""

    tc: list[Picture] | None  # None: no ``unsupervised`` metric
    rank: list[Picture] | None  # None: fewer than two scores
    distributions: list[DatasetPictures] | None  # None: no scores
    variance: list[Picture] | None  # None: no scores
    variance_table: Table | None
    downstream: list[Picture]
    missing_downstream: Literal["scores", "tasks"] | None
    selection: list[PoolPicture] | None  # None: no unsupervised or no disentanglement scores
    fairness: list[Picture] | None = None  # None: no fairness metric in the study
    repeats: list[Picture] | None = None  # None: no repeated evaluation (`untwine study reevaluate`)
    repeats_table: Table | None = None
    validation: list[Picture] | None = None  # None: no run scored a labelled validation split


@dataclass(frozen=True)
class StudyReportPage:
    """Everything ``templates/study_report.html`` shows; ``analyses`` is None while nothing finished."""

    title: str
    version: str
    overview: Overview
    analyses: Analyses | None
    gallery: list = field(default_factory=list)  # GalleryItems (report.study_gallery)
    gallery_left_out: int = 0


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "\u2013"
    if isinstance(value, float | np.floating):
        return f"{value:.{digits}f}"
    return str(value)


class _Figures:
    """Renders matplotlib figures to PNG files in ``out_dir`` and to :class:`Picture` records embedding
    them; the numbers each figure shows go beside it as CSV (``name.png`` -> ``name.csv``), linked from
    its caption."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir

    def save(self, fig, name: str, caption: str, numbers: pd.DataFrame, index: bool = False) -> Picture:
        data = figure_png(fig, tight=True)
        atomic_write_bytes(self.out_dir / name, data)
        csv_name = str(Path(name).with_suffix(".csv"))
        atomic_write_bytes(self.out_dir / csv_name, numbers.to_csv(index=index).encode())
        return Picture.from_png(name, data, caption, numbers=csv_name)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in str(text)).strip("_").lower()[:60]


def _labels(study) -> tuple[dict[str, str], dict[str, str]]:
    models, params = {}, {}
    if study is not None:
        for sweep in study.models:
            models[sweep.key] = sweep.display
            params[sweep.key] = sweep.parameter_display
    return models, params


def _model_order(table: pd.DataFrame, study) -> list[str]:
    present = list(dict.fromkeys(table["model"]))
    if study is None:
        return present
    order = [m.key for m in study.models]
    return [m for m in order if m in present] + [m for m in present if m not in order]


def _value_ticks(values: Sequence[float]) -> list[str]:
    return [f"{v:g}" for v in values]


def frame_table(frame: pd.DataFrame, digits: int = 3) -> Table:
    """A :class:`Table` of ``frame``: numbers with ``digits`` decimals (a dash for missing), the rest as text."""
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for value in row:
            numeric = isinstance(value, float | int | np.number) and not isinstance(value, bool)
            cells.append(Cell(_num(value, digits), True) if numeric else Cell(str(value)))
        rows.append(tuple(cells))
    return Table(tuple(str(c) for c in frame.columns), rows)


def _heatmap(
    figures: _Figures,
    matrix: pd.DataFrame,
    name: str,
    caption: str,
    title: str,
    vmin: float = -1.0,
    vmax: float = 1.0,
    cmap: str = "RdBu_r",
) -> Picture:
    rows, cols = matrix.shape
    fig = new_figure(1.1 + 0.62 * cols + 1.6, 0.9 + 0.45 * rows + 0.9, layout=None)
    ax = fig.subplots()
    data = matrix.to_numpy(dtype=float)
    image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(cols), [str(c) for c in matrix.columns], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(rows), [str(r) for r in matrix.index], fontsize=8)
    for i in range(rows):
        for j in range(cols):
            text = "n/a" if not np.isfinite(data[i, j]) else f"{data[i, j]:.2f}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=7,
                color="white"
                if np.isfinite(data[i, j]) and abs(data[i, j] - (vmin + vmax) / 2) > 0.6 * (vmax - vmin) / 2
                else "black",
            )
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return figures.save(fig, name, caption, matrix, index=True)


# -- sections: each returns the records its part of templates/study_report.html shows -------------
def _section_tc(figures: _Figures, table: pd.DataFrame, study) -> list[Picture] | None:
    tc = A.tc_by_regularisation(table)
    if tc.empty or not np.isfinite(tc["tc"]).any():
        return None
    names, symbols = _labels(study)
    pictures = []
    for dataset, group in tc.groupby("dataset", sort=False):
        models = _model_order(group, study)
        cols = min(3, len(models))
        rows = math.ceil(len(models) / cols)
        fig = new_figure(4.0 * cols, 3.0 * rows, layout=None)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, model in zip(axes.flat, models, strict=False):
            part = group[group["model"] == model]
            values = sorted(part["value"].unique())
            position = {v: i for i, v in enumerate(values)}
            for rep, color in (("sampled", "#d55e00"), ("mean", "#0072b2")):
                sub = part[(part["representation"] == rep) & np.isfinite(part["tc"])]
                if sub.empty:
                    continue
                x = sub["value"].map(position).to_numpy(float)
                jitter = (np.random.default_rng(0).random(len(x)) - 0.5) * 0.15
                ax.scatter(x + jitter, sub["tc"], s=14, alpha=0.6, color=color, label=rep)
                medians = sub.groupby("value")["tc"].median()
                ax.plot([position[v] for v in medians.index], medians.to_numpy(), color=color, lw=1.5)
            ax.set_xticks(range(len(values)), _value_ticks(values), fontsize=8)
            ax.set_xlabel(symbols.get(model, part["parameter"].iloc[0]), fontsize=8)
            ax.set_ylabel("total correlation (nats)", fontsize=8)
            ax.set_title(names.get(model, model), fontsize=9)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(models) :]:
            ax.axis("off")
        fig.suptitle(f"{dataset}: TC of sampled vs mean representation", fontsize=10)
        fig.tight_layout()
        pictures.append(
            figures.save(
                fig,
                f"tc_{_slug(dataset)}.png",
                f"{dataset}: total correlation of the Gaussian fitted to each run's codes against the "
                "regularisation strength (points: seeds; lines: medians). Read: where the sampled "
                "representation's TC (orange) falls as the regularisation grows while the mean's (blue) "
                "stays or rises, the penalty acts on the sampled codes only -- the paper's first finding.",
                group,
            )
        )
    return pictures


def _section_rank(figures: _Figures, table: pd.DataFrame, scores) -> list[Picture] | None:
    if len(scores) < 2:
        return None
    return [
        _heatmap(
            figures,
            matrix,
            f"rank_correlation_{_slug(dataset)}.png",
            f"{dataset}: Spearman rank correlation between every two scores across the study's runs. "
            "Read: a dark red block is a group of metrics that order the models alike; pale or blue "
            "cells are metrics that disagree about which model is more disentangled.",
            f"{dataset}: Spearman ρ",
        )
        for dataset, matrix in A.rank_correlation(table, scores).items()
    ]


def _section_distributions(
    figures: _Figures, table: pd.DataFrame, scores, study
) -> list[DatasetPictures] | None:
    points = A.score_points(table, scores)
    if points.empty:
        return None
    names, symbols = _labels(study)
    groups = []
    for dataset, group in points.groupby("dataset", sort=False):
        pictures = []
        models = _model_order(group, study)
        labels = list(dict.fromkeys(group["score"]))
        cols = min(3, len(labels))
        rows = math.ceil(len(labels) / cols)
        fig = new_figure(4.2 * cols, 3.0 * rows, layout=None)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, label in zip(axes.flat, labels, strict=False):
            part = group[group["score"] == label]
            data = [part[part["model"] == m]["number"].to_numpy(float) for m in models]
            usable = [i for i, d in enumerate(data) if len(d) >= 2 and np.ptp(d) > 0]
            if usable:
                ax.violinplot([data[i] for i in usable], positions=usable, showmedians=True, widths=0.8)
            for i, d in enumerate(data):
                jitter = (np.random.default_rng(i).random(len(d)) - 0.5) * 0.2
                ax.scatter(np.full(len(d), i) + jitter, d, s=8, color="black", alpha=0.5, zorder=3)
            ax.set_xticks(
                range(len(models)), [names.get(m, m) for m in models], rotation=30, ha="right", fontsize=8
            )
            ax.set_title(label, fontsize=9)
        for ax in list(axes.flat)[len(labels) :]:
            ax.axis("off")
        fig.tight_layout()
        pictures.append(
            figures.save(
                fig,
                f"violins_{_slug(dataset)}.png",
                f"{dataset}: each score's distribution per model over all its hyperparameter values and "
                "seeds (points: runs). Read: overlapping violins mean the model alone does not decide the "
                "score -- the paper's finding that no model is consistently better.",
                group,
            )
        )
        for label in labels:
            part = group[group["score"] == label]
            cols = min(3, len(models))
            rows = math.ceil(len(models) / cols)
            fig = new_figure(3.6 * cols, 2.7 * rows, layout=None)
            axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
            for ax, model in zip(axes.flat, models, strict=False):
                sub = part[part["model"] == model]
                values = sorted(sub["value"].unique())
                position = {v: i for i, v in enumerate(values)}
                x = sub["value"].map(position).to_numpy(float)
                ax.scatter(
                    x + (np.random.default_rng(1).random(len(x)) - 0.5) * 0.15,
                    sub["number"],
                    s=12,
                    alpha=0.6,
                    color="#0072b2",
                )
                medians = sub.groupby("value")["number"].median()
                ax.plot([position[v] for v in medians.index], medians.to_numpy(), color="#d55e00", lw=1.5)
                ax.set_xticks(range(len(values)), _value_ticks(values), fontsize=8)
                ax.set_xlabel(symbols.get(model, sub["parameter"].iloc[0] if len(sub) else ""), fontsize=8)
                ax.set_title(names.get(model, model), fontsize=9)
            for ax in list(axes.flat)[len(models) :]:
                ax.axis("off")
            fig.suptitle(f"{dataset}: {label} vs hyperparameter", fontsize=10)
            fig.tight_layout()
            pictures.append(
                figures.save(
                    fig,
                    f"vs_hyperparameter_{_slug(dataset)}_{_slug(label)}.png",
                    f"{dataset}: {label} against each model's hyperparameter (points: seeds; orange: "
                    "medians). Read: the spread of the points at one value is what the random seed alone "
                    "does; compare it with the change of the median across values.",
                    part,
                )
            )
        groups.append(DatasetPictures(str(dataset), pictures))
    return groups


def _section_variance(
    figures: _Figures, table: pd.DataFrame, scores, out_dir: Path
) -> tuple[list[Picture] | None, Table | None]:
    shares = A.variance_shares(table, scores)
    if shares.empty:
        return None, None
    shares.to_csv(out_dir / "variance_shares.csv", index=False)
    pictures = []
    for dataset, group in shares.groupby("dataset", sort=False):
        group = group.reset_index(drop=True)
        fig = new_figure(7.5, 0.6 + 0.4 * len(group), layout=None)
        ax = fig.subplots()
        left = np.zeros(len(group))
        for column, color in (("model", "#0072b2"), ("hyperparameter", "#e69f00"), ("seed", "#999999")):
            widths = group[column].fillna(0).to_numpy(float)
            ax.barh(range(len(group)), widths, left=left, color=color, label=column)
            left += widths
        ax.set_yticks(range(len(group)), group["score"], fontsize=8)
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.set_xlabel("share of the sum of squares", fontsize=8)
        ax.legend(fontsize=7, ncol=3, loc="lower right")
        ax.set_title(f"{dataset}: variance shares (untwine's nested decomposition)", fontsize=9)
        fig.tight_layout()
        pictures.append(
            figures.save(
                fig,
                f"variance_shares_{_slug(dataset)}.png",
                f"{dataset}: the share of each score's variance explained by the model, then by its "
                "hyperparameter within the model, the rest by the seed. Read: a long grey bar means the "
                "random seed matters more than the choice of model and hyperparameter.",
                group,
            )
        )
    return pictures, frame_table(shares)


def _section_downstream(
    figures: _Figures, table: pd.DataFrame, scores
) -> tuple[list[Picture], Literal["scores", "tasks"] | None]:
    if not scores:
        return [], "scores"
    matrices = A.downstream_correlation(table, scores)
    if not matrices:
        return [], "tasks"
    pictures = [
        _heatmap(
            figures,
            matrix,
            f"downstream_{_slug(dataset)}.png",
            f"{dataset}: Spearman rank correlation of each disentanglement score with downstream accuracy "
            "and sample efficiency. Read: a positive column means runs that score higher also predict "
            "the factors better from few labels; the paper found this only for some scores and datasets.",
            f"{dataset}: Spearman ρ",
        )
        for dataset, matrix in matrices.items()
    ]
    return pictures, None


def _section_selection(
    figures: _Figures, table: pd.DataFrame, scores, out_dir: Path
) -> list[PoolPicture] | None:
    selectors = A.available(table, A.UNSUPERVISED_SCORES)
    if not selectors or not scores:
        return None
    rates = A.selection_win_rate(table, selectors, scores)
    rates.to_csv(out_dir / "model_selection.csv", index=False)
    items = []
    for (dataset, pool), group in rates.groupby(["dataset", "pool"], sort=False):
        if not group["pools"].any():
            items.append(PoolPicture(str(dataset), str(pool), None))
            continue
        matrix = group.pivot(index="selector", columns="target", values="win_rate")
        matrix = matrix.reindex(index=[s.label for s in selectors], columns=[s.label for s in scores])
        pools = int(group["pools"].max())
        picture = _heatmap(
            figures,
            matrix,
            f"selection_{_slug(dataset)}_{pool}.png",
            f"{dataset}: how often the run an unsupervised score (rows) picks from a pool of {pool} runs "
            f"beats a random run of the pool on each target score (columns), over {pools} pools. Read: 0.5 "
            "is chance; the paper found unsupervised selection close to chance.",
            f"{dataset}: win rate vs random, {pool} pools",
            vmin=0.0,
            vmax=1.0,
            cmap="PuOr",
        )
        items.append(PoolPicture(str(dataset), str(pool), picture))
    return items


def _section_fairness(figures: _Figures, table: pd.DataFrame, scores, out_dir: Path) -> list[Picture] | None:
    matrix = A.fairness_correlation(table, scores)
    if matrix is None:
        return None
    matrix.to_csv(out_dir / "fairness_correlation.csv", index_label="dataset")
    return [
        _heatmap(
            figures,
            matrix,
            "fairness.png",
            "Spearman rank correlation of unfairness with each score, per dataset (negative: the better "
            "the score, the fairer the representation's downstream predictions)",
            "unfairness vs scores: Spearman ρ",
        )
    ]


def _section_validation(figures: _Figures, table: pd.DataFrame) -> list[Picture] | None:
    """Section 9: do the scores on a few labelled validation points rank the models like the test scores?"""
    matrix = A.validation_correlation(table)
    if matrix is None:
        return None
    return [
        _heatmap(
            figures,
            matrix,
            "validation_vs_test.png",
            "Spearman rank correlation, across each dataset's runs, between a score computed on the few "
            "labelled validation points and the same score on the fresh test sample. Read: values near 1 "
            "mean a few labels pick the same models as full ground truth would -- the paper's finding for "
            "its few-label models; near 0, the validation split cannot choose.",
            "validation vs test scores: Spearman ρ",
        )
    ]


def _section_repeats(figures: _Figures, repeats: pd.DataFrame | None, out_dir: Path):
    """Section 8: spread across evaluation seeds, drift with the sample size, ranking stability."""
    scores = A.repeat_scores(repeats) if repeats is not None else None
    if scores is None or scores.empty:
        return None, None
    summary = A.repeat_summary(scores)
    stability = A.ranking_stability(scores)
    merged = summary.merge(stability, on=["dataset", "score", "num_train"])
    merged.to_csv(out_dir / "repeated_evaluation.csv", index=False)
    pictures = []
    for dataset, group in merged.groupby("dataset", sort=False):
        fig = new_figure(9.0, 3.6, layout=None)
        left, right = fig.subplots(1, 2)
        for score, rows in group.groupby("score", sort=False):
            rows = rows.sort_values("num_train")
            left.errorbar(
                rows["num_train"], rows["mean"], yerr=rows["seed_std"], marker="o", capsize=3, label=score
            )
            right.plot(rows["num_train"], rows["spearman_between_seeds"], marker="o", label=score)
        for ax, ylabel in (
            (left, "score (mean over models; bars: seed std)"),
            (right, "Spearman between seeds"),
        ):
            ax.set_xscale("log")
            ax.set_xlabel("num_train")
            ax.set_ylabel(ylabel, fontsize=8)
        right.set_ylim(-1.05, 1.05)
        left.legend(fontsize=7)
        left.set_title(f"{dataset}: drift with the sample size", fontsize=9)
        right.set_title(f"{dataset}: do evaluation seeds rank models alike?", fontsize=9)
        pictures.append(
            figures.save(
                fig,
                f"repeats_{_slug(dataset)}.png",
                f"{dataset}: each score's mean over models against the training-sample size, with the spread "
                "across evaluation seeds as bars (left), and the mean Spearman correlation of the models' "
                "scores between every pair of evaluation seeds (right; 1: the seed does not change the ranking)",
                group,
            )
        )
    return pictures, frame_table(merged)


def _section_overview(
    table: pd.DataFrame, runs: pd.DataFrame, study: Study | None, selection: Selection | None
) -> Overview:
    counts = runs["status"].value_counts().to_dict() if not runs.empty else {}
    chosen = None
    if selection is not None:
        chosen = {k: v for k, v in selection.to_dict().items() if v not in (None, {}, [])}
    finished = runs[runs["status"] == "done"] if not runs.empty else runs
    timed = not finished.empty and finished["train_seconds"].notna().any()
    failed = None
    if not runs.empty and (runs["status"] == "failed").any():
        failed = frame_table(
            runs[runs["status"] == "failed"][["model_num", "dataset", "model", "value", "seed", "error"]]
        )
    return Overview(
        num_runs=len(runs),
        status_counts=", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none",
        study=study,
        selection=str(chosen or "the full study") if selection is not None else None,
        median_train_seconds=float(finished["train_seconds"].astype(float).median()) if timed else None,
        median_eval_seconds=float(finished["eval_seconds"].astype(float).median()) if timed else None,
        failed=failed,
        summary=frame_table(A.summary_counts(table)),
    )


def _analyses(
    figures: _Figures, table: pd.DataFrame, study, out_dir: Path, repeats: pd.DataFrame | None = None
) -> Analyses:
    """Sections 1-6, drawn in the order the page shows them."""
    scores = A.disentanglement_scores(table)
    tc = _section_tc(figures, table, study)
    rank = _section_rank(figures, table, scores)
    distributions = _section_distributions(figures, table, scores, study)
    variance, variance_table = _section_variance(figures, table, scores, out_dir)
    downstream, missing_downstream = _section_downstream(figures, table, scores)
    selection = _section_selection(figures, table, scores, out_dir)
    fairness = _section_fairness(figures, table, scores, out_dir)
    repeat_pictures, repeat_table = _section_repeats(figures, repeats, out_dir)
    validation = _section_validation(figures, table)
    return Analyses(
        tc,
        rank,
        distributions,
        variance,
        variance_table,
        downstream,
        missing_downstream,
        selection,
        fairness,
        repeat_pictures,
        repeat_table,
        validation,
    )


def render_study_report(
    table: pd.DataFrame,
    runs: pd.DataFrame,
    out_dir: str | Path,
    study: Study | None = None,
    selection: Selection | None = None,
    title: str = "study",
    repeats: pd.DataFrame | None = None,
    gallery: tuple[list, int] = ([], 0),
) -> str:
    """HTML of the report for the wide results ``table`` and the ``runs`` table; figures go to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not table.empty and not runs.empty:
        table = table[table["model_num"].isin(runs.loc[runs["status"] == "done", "model_num"])]
    overview = _section_overview(table, runs, study, selection)
    analyses = None
    if not table.empty:
        analyses = _analyses(_Figures(out_dir), table, study, out_dir, repeats)
        table.to_csv(out_dir / "results_wide.csv", index=False)
    page = StudyReportPage(
        title=title,
        version=__version__,
        overview=overview,
        analyses=analyses,
        gallery=gallery[0],
        gallery_left_out=gallery[1],
    )
    return render("study_report.html", page=page)


def write_study_report(study_dir: str | Path, out_dir: str | Path | None = None, store=None) -> Path:
    """Write ``STUDY_DIR/report/index.html`` (and its PNG and CSV files); return the HTML path."""
    from untwine.studies.runner import load_study_file, open_study_store

    study_dir = Path(study_dir)
    study, selection, _ = load_study_file(study_dir)
    store, owns = open_study_store(study_dir, store)
    try:
        table = store.results_frame(wide=True)
        runs = store.runs_frame()
        repeats = store.repeats_frame()
    finally:
        if owns:
            store.close()
    out = Path(out_dir) if out_dir is not None else study_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    from untwine.report.study_gallery import gallery

    text = render_study_report(
        table,
        runs,
        out,
        study=study,
        selection=selection,
        title=study.name,
        repeats=repeats,
        gallery=gallery(study_dir, runs, out),
    )
    path = out / REPORT_NAME
    atomic_write_text(path, text)
    return path

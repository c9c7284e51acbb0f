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
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from untwine import __version__
from untwine.report.page import escape, page
from untwine.studies import analysis as A
from untwine.utils.io import atomic_write_bytes, atomic_write_text

REPORT_DIR = "report"
REPORT_NAME = "index.html"


_e = escape


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "&ndash;"
    if isinstance(value, float | np.floating):
        return f"{value:.{digits}f}"
    return _e(value)


class _Figures:
    """Draws matplotlib figures to PNG files and returns <figure> HTML embedding them."""

    def __init__(self, out_dir: Path):
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        self.plt = plt
        self.out_dir = out_dir
        self.files: list[str] = []

    def save(self, fig, name: str, caption: str) -> str:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        self.plt.close(fig)
        data = buffer.getvalue()
        atomic_write_bytes(self.out_dir / name, data)
        self.files.append(name)
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        return (
            f'<figure><img src="{uri}" alt="{_e(caption)}" data-file="{_e(name)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in str(text)).strip("_").lower()[:60]


def _labels(study) -> tuple[dict[str, str], dict[str, str]]:
    models, params = {}, {}
    if study is not None:
        for sweep in study.models:
            models[sweep.model] = sweep.display
            params[sweep.model] = sweep.parameter_display
    return models, params


def _model_order(table: pd.DataFrame, study) -> list[str]:
    present = list(dict.fromkeys(table["model"]))
    if study is None:
        return present
    order = [m.model for m in study.models]
    return [m for m in order if m in present] + [m for m in present if m not in order]


def _value_ticks(values: Sequence[float]) -> list[str]:
    return [f"{v:g}" for v in values]


def _table_html(frame: pd.DataFrame, digits: int = 3) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for value in row:
            numeric = isinstance(value, float | int | np.number) and not isinstance(value, bool)
            cells.append(
                f'<td class="num">{_num(value, digits)}</td>' if numeric else f"<td>{_e(value)}</td>"
            )
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _heatmap(
    figures: _Figures,
    matrix: pd.DataFrame,
    name: str,
    caption: str,
    title: str,
    vmin: float = -1.0,
    vmax: float = 1.0,
    cmap: str = "RdBu_r",
) -> str:
    plt = figures.plt
    rows, cols = matrix.shape
    fig, ax = plt.subplots(figsize=(1.1 + 0.62 * cols + 1.6, 0.9 + 0.45 * rows + 0.9))
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
    return figures.save(fig, name, caption)


# -- sections ---------------------------------------------------------------------------------------
def _section_tc(figures: _Figures, table: pd.DataFrame, study) -> str:
    tc = A.tc_by_regularisation(table)
    head = (
        '<p class="note">Gaussian total correlation (the <code>unsupervised</code> metric) of the '
        "<b>sampled</b> representation (codes drawn from q(z|x)) and of the <b>mean</b> representation, "
        "against each model's regularisation strength; seeds are points, lines join the medians. The paper's "
        "finding: stronger regularisation lowers the TC of the sampled representation, while the TC of the "
        "mean representation, the one usually evaluated, need not follow.</p>"
    )
    if tc.empty or not np.isfinite(tc["tc"]).any():
        return (
            head
            + '<p class="missing">No total-correlation results: the study has no <code>unsupervised</code> metric.</p>'
        )
    names, symbols = _labels(study)
    plt = figures.plt
    parts = [head]
    for dataset, group in tc.groupby("dataset", sort=False):
        models = _model_order(group, study)
        cols = min(3, len(models))
        rows = math.ceil(len(models) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 3.0 * rows), squeeze=False)
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
        parts.append(
            figures.save(
                fig,
                f"tc_{_slug(dataset)}.png",
                f"{dataset}: total correlation vs regularisation strength, per model",
            )
        )
    return "".join(parts)


def _section_rank(figures: _Figures, table: pd.DataFrame, scores) -> str:
    head = (
        '<p class="note">Spearman rank correlation between the disentanglement scores (mean '
        "representation) over the runs of each dataset. n/a: fewer than three runs with both scores, or a "
        "score that does not vary.</p>"
    )
    if len(scores) < 2:
        return head + '<p class="missing">Fewer than two disentanglement scores were computed.</p>'
    parts = [head]
    for dataset, matrix in A.rank_correlation(table, scores).items():
        parts.append(
            _heatmap(
                figures,
                matrix,
                f"rank_correlation_{_slug(dataset)}.png",
                f"{dataset}: rank correlation between metrics",
                f"{dataset}: Spearman ρ",
            )
        )
    return "".join(parts)


def _section_distributions(figures: _Figures, table: pd.DataFrame, scores, study) -> str:
    head = (
        '<p class="note">Left: the distribution of each score per model over all its hyperparameter values '
        "and seeds (violins; points are runs). Right: the score against the hyperparameter, seeds as points "
        "and the median as a line; the spread between seeds at a fixed value is often as large as the "
        "effect of the value.</p>"
    )
    points = A.score_points(table, scores)
    if points.empty:
        return head + '<p class="missing">No disentanglement scores were computed.</p>'
    names, symbols = _labels(study)
    plt = figures.plt
    parts = [head]
    for dataset, group in points.groupby("dataset", sort=False):
        parts.append(f"<h3>{_e(dataset)}</h3>")
        models = _model_order(group, study)
        labels = list(dict.fromkeys(group["score"]))
        cols = min(3, len(labels))
        rows = math.ceil(len(labels) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
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
        parts.append(
            figures.save(fig, f"violins_{_slug(dataset)}.png", f"{dataset}: score distributions per model")
        )
        for label in labels:
            part = group[group["score"] == label]
            cols = min(3, len(models))
            rows = math.ceil(len(models) / cols)
            fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.7 * rows), squeeze=False, sharey=True)
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
            parts.append(
                figures.save(
                    fig,
                    f"vs_hyperparameter_{_slug(dataset)}_{_slug(label)}.png",
                    f"{dataset}: {label} against the hyperparameter (seeds as points)",
                )
            )
    return "".join(parts)


def _section_variance(figures: _Figures, table: pd.DataFrame, scores, out_dir: Path) -> str:
    head = (
        "<p class=\"note\"><b>untwine's statistic, not the paper's.</b> For each score and dataset, the total "
        "sum of squares over runs is split into three nested parts: between models (model means around the "
        "grand mean), between hyperparameter values within a model (setting means around their model's "
        "mean), and between seeds within a setting (runs around their setting's mean). The shares add up to "
        "1. The paper makes the qualitative point that hyperparameters and random seeds matter more than "
        "the choice of model; these shares put a number on it for the runs at hand.</p>"
    )
    shares = A.variance_shares(table, scores)
    if shares.empty:
        return head + '<p class="missing">No disentanglement scores were computed.</p>'
    shares.to_csv(out_dir / "variance_shares.csv", index=False)
    plt = figures.plt
    parts = [head]
    for dataset, group in shares.groupby("dataset", sort=False):
        group = group.reset_index(drop=True)
        fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.4 * len(group)))
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
        parts.append(
            figures.save(
                fig,
                f"variance_shares_{_slug(dataset)}.png",
                f"{dataset}: shares of each score's variance due to model, hyperparameter, seed",
            )
        )
    parts.append(_table_html(shares))
    return "".join(parts)


def _section_downstream(figures: _Figures, table: pd.DataFrame, scores) -> str:
    head = (
        '<p class="note">Spearman rank correlation between each disentanglement score and downstream '
        "accuracy -- logistic regression (LR) and gradient-boosted trees (GBT) predicting each factor from "
        "the mean representation, averaged over factors -- with 100 and 10,000 training samples, and with "
        "sample efficiency (accuracy at 100 / accuracy at 10,000). The paper found no consistent evidence "
        "that disentanglement makes downstream learning more sample-efficient.</p>"
    )
    if not scores:
        return head + '<p class="missing">No disentanglement scores were computed.</p>'
    matrices = A.downstream_correlation(table, scores)
    if not matrices:
        return head + (
            '<p class="missing">No downstream-task results: the study has neither '
            "<code>downstream_task_logistic_regression</code> nor <code>downstream_task_boosted_trees</code>.</p>"
        )
    parts = [head]
    for dataset, matrix in matrices.items():
        parts.append(
            _heatmap(
                figures,
                matrix,
                f"downstream_{_slug(dataset)}.png",
                f"{dataset}: rank correlation of scores with downstream accuracy and efficiency",
                f"{dataset}: Spearman ρ",
            )
        )
    return "".join(parts)


def _section_selection(figures: _Figures, table: pd.DataFrame, scores, out_dir: Path) -> str:
    selectors = A.available(table, A.UNSUPERVISED_SCORES)
    head = (
        '<p class="note">Can a score computed without labels pick good models? For each unsupervised score '
        "(held-out reconstruction, ELBO and KL of training, total and Wasserstein correlation, mutual "
        "information), the run with the best value is compared with a run drawn at random from the same "
        "pool; the cells show the probability that the chosen run has the better disentanglement score (ties "
        "count one half). <b>Seed</b> pools are the seeds of one model and hyperparameter value (choosing a "
        "seed); <b>dataset</b> pools are all runs of a dataset (choosing a model and its hyperparameter). "
        "0.5 is a coin flip.</p>"
    )
    if not selectors or not scores:
        return (
            head
            + '<p class="missing">Model selection needs unsupervised scores and disentanglement scores.</p>'
        )
    rates = A.selection_win_rate(table, selectors, scores)
    rates.to_csv(out_dir / "model_selection.csv", index=False)
    parts = [head]
    for (dataset, pool), group in rates.groupby(["dataset", "pool"], sort=False):
        if not group["pools"].any():
            parts.append(f'<p class="missing">{_e(dataset)}, {pool} pools: no pool has two runs.</p>')
            continue
        matrix = group.pivot(index="selector", columns="target", values="win_rate")
        matrix = matrix.reindex(index=[s.label for s in selectors], columns=[s.label for s in scores])
        pools = int(group["pools"].max())
        parts.append(
            _heatmap(
                figures,
                matrix,
                f"selection_{_slug(dataset)}_{pool}.png",
                f"{dataset}: P(chosen run beats a random one), {pool} pools ({pools} averaged)",
                f"{dataset}: win rate vs random, {pool} pools",
                vmin=0.0,
                vmax=1.0,
                cmap="PuOr",
            )
        )
    return "".join(parts)


def _section_overview(table: pd.DataFrame, runs: pd.DataFrame, study, selection) -> str:
    counts = runs["status"].value_counts().to_dict() if not runs.empty else {}
    items = [
        f"<li>runs in the store: {len(runs)} ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items())) or 'none'})</li>"
    ]
    if study is not None:
        items.append(f"<li>study: <b>{_e(study.name)}</b> &mdash; {_e(study.description)}</li>")
        if study.reference:
            items.append(f"<li>reference: {_e(study.reference)}</li>")
        items.append(
            f"<li>metrics: {_e(', '.join(study.metrics) or 'none')}; representations: "
            f"{_e(', '.join(study.representations))}; metric seed {study.metric_seed}</li>"
        )
    if selection is not None:
        chosen = {k: v for k, v in selection.to_dict().items() if v not in (None, {}, [])}
        items.append(f"<li>selection (flags): <code>{_e(chosen or 'the full study')}</code></li>")
    finished = runs[runs["status"] == "done"] if not runs.empty else runs
    if not finished.empty and finished["train_seconds"].notna().any():
        train = finished["train_seconds"].astype(float)
        evaluate = finished["eval_seconds"].astype(float)
        items.append(
            f"<li>seconds per model (median): training {train.median():.1f}, evaluation "
            f"{evaluate.median():.1f}</li>"
        )
    if not runs.empty and (runs["status"] == "failed").any():
        failed = runs[runs["status"] == "failed"][["model_num", "dataset", "model", "value", "seed", "error"]]
        items.append("<li>failed runs:" + _table_html(failed) + "</li>")
    return "<ul>" + "".join(items) + "</ul>" + _table_html(A.summary_counts(table))


def render_study_report(
    table: pd.DataFrame,
    runs: pd.DataFrame,
    out_dir: str | Path,
    study=None,
    selection=None,
    title: str = "study",
) -> str:
    """HTML of the report for the wide results ``table`` and the ``runs`` table; figures go to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = _Figures(out_dir)
    if not table.empty:
        table = (
            table[table["model_num"].isin(runs.loc[runs["status"] == "done", "model_num"])]
            if not runs.empty
            else table
        )
    scores = A.disentanglement_scores(table) if not table.empty else []
    sections = [("overview", "What was run", _section_overview(table, runs, study, selection))]
    if table.empty:
        sections.append(
            ("empty", "No results yet", '<p class="missing">No finished runs in the store yet.</p>')
        )
    else:
        sections += [
            (
                "tc",
                "1. Total correlation: sampled vs mean representation",
                _section_tc(figures, table, study),
            ),
            ("rank", "2. Rank correlation between metrics", _section_rank(figures, table, scores)),
            (
                "distributions",
                "3. Metric distributions and hyperparameters",
                _section_distributions(figures, table, scores, study),
            ),
            (
                "variance",
                "4. Variance explained by model, hyperparameter and seed",
                _section_variance(figures, table, scores, out_dir),
            ),
            (
                "downstream",
                "5. Downstream accuracy and sample efficiency",
                _section_downstream(figures, table, scores),
            ),
            (
                "selection",
                "6. Unsupervised model selection",
                _section_selection(figures, table, scores, out_dir),
            ),
        ]
        table.to_csv(out_dir / "results_wide.csv", index=False)
    subtitle = (
        f"untwine {_e(__version__)}. The analyses of Locatello et al. (2019), <i>Challenging Common Assumptions "
        "in the Unsupervised Learning of Disentangled Representations</i>, on the runs in this study's store."
    )
    return page(
        f"untwine study report: {title}",
        f"Study report: {title}",
        subtitle,
        sections,
        nav_label=lambda name: name.split(". ", 1)[-1],
    )


def write_study_report(study_dir: str | Path, out_dir: str | Path | None = None, store=None) -> Path:
    """Write ``STUDY_DIR/report/index.html`` (and its PNG and CSV files); return the HTML path."""
    from untwine.studies.runner import load_study_file, open_study_store

    study_dir = Path(study_dir)
    study, selection, _ = load_study_file(study_dir)
    store, owns = open_study_store(study_dir, store)
    try:
        table = store.results_frame(wide=True)
        runs = store.runs_frame()
    finally:
        if owns:
            store.close()
    out = Path(out_dir) if out_dir is not None else study_dir / REPORT_DIR
    text = render_study_report(table, runs, out, study=study, selection=selection, title=study.name)
    path = out / REPORT_NAME
    atomic_write_text(path, text)
    return path

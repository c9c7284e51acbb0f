"""`untwine evaluate --metrics`: presets, aliases and lists resolve in the library, before any work."""

from __future__ import annotations

import pytest

import untwine.studies.pipeline as pipeline
from untwine.cli import main as cli_main
from untwine.metrics import PRESETS, resolve_metrics


@pytest.fixture
def requested(monkeypatch, tmp_path):
    """Stand in for the evaluation: record the metrics the CLI asks for."""
    calls = []

    def evaluate_run(run_dir, *, metrics, **kwargs):
        calls.append(metrics)
        return {}

    monkeypatch.setattr(pipeline, "evaluate_run", evaluate_run)
    return calls


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("fairness_study", list(PRESETS["fairness_study"])),
        ("study", list(PRESETS["study"])),
        ("all", list(PRESETS["all"])),
        ("sap", ["sap_score"]),
        ("beta_vae, mig,dci", ["beta_vae_sklearn", "mig", "dci"]),
        ("study,irs,mig", [*PRESETS["study"], "irs"]),
    ],
)
def test_evaluate_accepts_presets_aliases_and_lists(requested, tmp_path, argument, expected):
    assert cli_main(["evaluate", str(tmp_path), "--metrics", argument]) == 0
    assert requested == [expected]
    assert requested[0] == resolve_metrics(argument.replace(" ", "").split(","))


def test_evaluate_names_an_unknown_metric_before_loading_the_run(requested, tmp_path, capsys):
    missing_run = tmp_path / "no_such_run"
    assert cli_main(["evaluate", str(missing_run), "--metrics", "study,mgi"]) == 1
    error = capsys.readouterr().err
    assert "unknown metric 'mgi'" in error and "presets: study, fairness_study, all" in error
    assert requested == []
    assert cli_main(["evaluate", str(missing_run), "--metrics", ","]) == 1
    assert "metrics is empty" in capsys.readouterr().err

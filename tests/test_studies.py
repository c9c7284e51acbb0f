"""Studies as data: the unsupervised_study_v1 grid and its model numbers, selections, flag parsing,
the results store (SQLite; PostgreSQL in test_studies_postgres.py) and the CLI's dry run."""

import dataclasses
import json
import pickle
import re
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from untwine.cli import main as cli_main
from untwine.studies.definitions import SMOKE_TEST, UNSUPERVISED_STUDY_V1, ModelSweep, Study, get_study
from untwine.studies.grid import (
    Selection,
    config_hash,
    dataset_slot,
    decode_model_num,
    expand,
    model_num,
    parse_int_list,
    parse_values,
    spec_for_model_num,
)
from untwine.studies.planning import EvaluationChoice, apply_evaluation, parse_metric_params, resolve_study
from untwine.studies.records import Evaluation, ModelResult
from untwine.studies.runner import write_study_file
from untwine.studies.store import ConfigMismatchError, flatten_values, open_store

V1 = UNSUPERVISED_STUDY_V1
V1_DATASETS = [
    "dsprites_full",
    "color_dsprites",
    "noisy_dsprites",
    "scream_dsprites",
    "smallnorb",
    "cars3d",
    "shapes3d",
]
# (model, swept parameter, values, fixed parameters) in the order disentanglement_lib's sweep.py chains them.
V1_MODELS = [
    ("beta_vae", "beta", [1, 2, 4, 6, 8, 16], {}),
    ("factor_vae", "gamma", [10, 20, 30, 40, 50, 100], {}),
    ("dip_vae_i", "lambda_od", [1, 2, 5, 10, 20, 50], {"lambda_d_factor": 10.0}),
    ("dip_vae_ii", "lambda_od", [1, 2, 5, 10, 20, 50], {"lambda_d_factor": 1.0}),
    ("beta_tc_vae", "beta", [1, 2, 4, 6, 8, 10], {}),
    ("annealed_vae", "c_max", [5, 10, 25, 50, 75, 100], {"gamma": 1000.0, "iteration_threshold": 100000}),
]


def _hand(number):
    """model_num -> (dataset, model, params, seed) the way dlib's h.product([datasets, models, seeds]) lists them."""
    grid = [
        (d, m, {p: float(v), **fixed}, s)
        for d in V1_DATASETS
        for m, p, values, fixed in V1_MODELS
        for v in values
        for s in range(50)
    ]
    return grid[number]


@pytest.mark.parametrize(
    "number, expected",
    [
        (0, ("dsprites_full", "beta_vae", {"beta": 1.0}, 0)),
        (300, ("dsprites_full", "factor_vae", {"gamma": 10.0}, 0)),
        (
            1799,
            (
                "dsprites_full",
                "annealed_vae",
                {"c_max": 100.0, "gamma": 1000.0, "iteration_threshold": 100000},
                49,
            ),
        ),
        (4321, ("noisy_dsprites", "dip_vae_i", {"lambda_od": 5.0, "lambda_d_factor": 10.0}, 21)),
        (5432, ("scream_dsprites", "beta_vae", {"beta": 1.0}, 32)),
        (7777, ("smallnorb", "factor_vae", {"gamma": 100.0}, 27)),
        (9876, ("cars3d", "dip_vae_i", {"lambda_od": 50.0, "lambda_d_factor": 10.0}, 26)),
        (10026, ("cars3d", "dip_vae_ii", {"lambda_od": 5.0, "lambda_d_factor": 1.0}, 26)),
        (
            12599,
            (
                "shapes3d",
                "annealed_vae",
                {"c_max": 100.0, "gamma": 1000.0, "iteration_threshold": 100000},
                49,
            ),
        ),
    ],
)
def test_v1_model_numbers_match_hand_derived_configs(number, expected):
    # 4321 = 1800*2 + 300*2 + 50*2 + 21: noisy_dsprites (3rd dataset), DIP-VAE-I (3rd model), λ_od=5 (3rd value), seed 21
    assert _hand(number) == expected
    spec = spec_for_model_num(V1, number)
    dataset, model, params, seed = expected
    assert (spec.dataset, spec.model, spec.seed) == (dataset, model, seed)
    assert spec.config["model_params"] == {**spec.config["model_params"], **params}
    # dlib's 300k global steps: FactorVAE's global step advances twice per iteration.
    assert spec.config["steps"] == (150_000 if model == "factor_vae" else 300_000)
    assert spec.config["batch_size"] == 64
    assert spec.config["learning_rate"] == 1e-4 and spec.config["num_latents"] == 10
    assert (
        spec.model_num
        == number
        == 1800 * V1_DATASETS.index(dataset)
        + 300 * [m[0] for m in V1_MODELS].index(model)
        + 50 * spec.value_index
        + seed
    )


def test_scaled_steps_count_global_steps():
    factor_vae = spec_for_model_num(V1, 300, steps=2000)
    beta_vae = spec_for_model_num(V1, 0, steps=2000)
    annealed = spec_for_model_num(V1, 1799, steps=3000)
    assert (factor_vae.config["steps"], beta_vae.config["steps"], annealed.config["steps"]) == (
        1000,
        2000,
        3000,
    )
    assert annealed.config["model_params"]["iteration_threshold"] == 1000  # 100k of 300k, scaled
    with pytest.raises(ValueError, match="global_steps_per_iteration"):
        dataclasses.replace(V1.models[1], global_steps_per_iteration=0)


def test_v1_grid_is_the_published_one():
    assert len(V1.datasets) == 7 and list(V1.datasets) == V1_DATASETS
    assert [(m.model, m.parameter, list(m.values)) for m in V1.models] == [
        (m, p, [float(x) for x in v]) for m, p, v, _ in V1_MODELS
    ]
    assert V1.seeds == tuple(range(50)) and len(V1.metrics) == 9 and V1.representations == ("mean", "sampled")
    runs = expand(V1)
    assert len(runs) == 12_600 and [r.model_num for r in runs] == list(range(12_600))
    for number in (0, 4321, 12_599):  # expand and decode agree
        assert decode_model_num(V1, number) == (
            runs[number].dataset,
            runs[number].model,
            runs[number].value_index,
            runs[number].seed,
        )
    # DIP-VAE lambda_d = 10 lambda_od (I) and = lambda_od (II), as in the paper
    assert runs[spec_for_model_num(V1, 700).model_num].config["model_params"]["lambda_d_factor"] == 10.0
    assert runs[1000].model == "dip_vae_ii" and runs[1000].config["model_params"]["lambda_d_factor"] == 1.0


def test_selection_scales_down_and_keeps_numbers():
    selection = Selection(
        datasets=("shapes3d", "procedural_dsprites"),
        values=(0, 5),
        seeds=(0, 1),
        steps=3000,
        train={"learning_rate": 5e-4},
    )
    runs = expand(V1, selection)
    assert len(runs) == 2 * 6 * 2 * 2
    full = {r.model_num: r for r in runs if r.dataset == "shapes3d"}
    assert 10800 in full and 10800 + 250 + 1 in full  # shapes3d is dataset 6: 1800*6; value 5 seed 1
    for run in runs:
        assert run.config["steps"] == (1500 if run.model == "factor_vae" else 3000)  # global steps
        assert run.config["learning_rate"] == 5e-4
        assert run.value == V1.model(run.model).values[run.value_index]
        if run.model == "annealed_vae":  # 100k of 300k steps -> 1000 of 3000
            assert run.config["model_params"]["iteration_threshold"] == 1000
    # procedural datasets are numbered after the study's seven, in a slot derived from their name
    assert dataset_slot("procedural_dsprites") == 5922
    base = (7 + 5922) * 1800
    assert min(r.model_num for r in runs if r.dataset == "procedural_dsprites") == base == 10_672_200
    # by value, for one model
    runs = expand(
        V1,
        Selection(
            datasets=("procedural_dsprites",),
            models=("beta_vae",),
            model_values={"beta_vae": (1, 16)},
            seeds=(3,),
        ),
    )
    assert [(r.value, r.seed) for r in runs] == [(1.0, 3), (16.0, 3)]
    # explicit model numbers
    assert [r.model_num for r in expand(V1, Selection(model_nums=(4321, 5)))] == [5, 4321]


@pytest.mark.parametrize(
    "selection, message",
    [
        (Selection(seeds=(50,)), "seed 50 is not in study"),
        (Selection(values=(6,)), "value position 6 is outside"),
        (Selection(model_values={"beta_vae": (3,)}), "beta_vae.beta=3 is not in study"),
        (Selection(models=("vae",)), "has no model 'vae'"),
        (Selection(datasets=("svhn",)), "unknown dataset 'svhn'"),
        (Selection(train={"seed": 3}), "dedicated flags"),
        (Selection(train={"stepz": 3}), "unknown config key 'stepz'"),
    ],
)
def test_selection_errors_name_the_problem(selection, message):
    with pytest.raises((ValueError, KeyError), match=message):
        expand(V1, selection)


def test_flag_parsing():
    assert parse_int_list("0-4") == (0, 1, 2, 3, 4)
    assert parse_int_list("0,3,7-8") == (0, 3, 7, 8)
    with pytest.raises(ValueError, match="ranges like 0-4"):
        parse_int_list("a-b")
    assert parse_values(["0,5"]) == ((0, 5), {})
    assert parse_values(["beta_vae=1,16", "factor_vae=10"]) == (
        None,
        {"beta_vae": (1.0, 16.0), "factor_vae": (10.0,)},
    )


def test_studies_are_data_and_validate():
    study = Study(
        name="mine",
        description="",
        datasets=("procedural_dsprites",),
        models=(ModelSweep("beta_vae", "beta", (1.0, 4.0)),),
        seeds=(0,),
        train={"steps": 5},
    )
    assert Study.from_dict(json.loads(json.dumps(study.to_dict()))) == study
    assert Study.from_dict(json.loads(json.dumps(V1.to_dict()))) == V1
    with pytest.raises(ValueError, match="has no parameter 'gamma'"):
        ModelSweep("beta_vae", "gamma", (1.0,))
    with pytest.raises(ValueError, match="set by the grid"):
        study.replace(train={"seed": 1})
    with pytest.raises(ValueError, match="unknown config key"):
        study.replace(train={"stepz": 1})
    with pytest.raises(KeyError, match="known studies"):
        get_study("nope")
    # uneven value lists leave gaps in the numbering, never collisions
    uneven = study.replace(
        models=(ModelSweep("beta_vae", "beta", (1.0, 4.0, 8.0)), ModelSweep("factor_vae", "gamma", (10.0,)))
    )
    numbers = [r.model_num for r in expand(uneven)]
    assert numbers == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="gap"):
        decode_model_num(uneven, 4)


def test_config_hash_ignores_the_machine():
    spec = spec_for_model_num(V1, 4321)
    assert config_hash({**spec.config, "threads": 7, "device": "cuda"}) == spec.config_hash
    assert config_hash({**spec.config, "steps": 5}) != spec.config_hash
    assert spec.train_config(threads=1, device="cpu").threads == 1


def test_flatten_values():
    values = {
        "a": 1,
        "b": {"c": 2.5, "d": [1, 2]},
        "e": "text",
        "f": float("nan"),
        "g": True,
        "h": np.float32(0.5),
    }
    assert dict(flatten_values(values)) == {
        "a": 1.0,
        "b/c": 2.5,
        "b/d/0": 1.0,
        "b/d/1": 2.0,
        "f": None,
        "g": 1.0,
        "h": 0.5,
    }


def _result(model_num, value, extra=None):
    return ModelResult(
        model_num=model_num,
        worker="w",
        evaluations=(
            Evaluation(
                "mean",
                "mig",
                0.1,
                {"values": {"discrete_mig": value, "per_factor": [value, 0.0], **(extra or {})}},
            ),
            Evaluation("train", "final_eval", None, {"values": {"elbo": -1.0}}),
        ),
        train_seconds=1.0,
        eval_seconds=0.5,
        versions={"torch": "x"},
        git_commit="abc",
    )


def test_sqlite_store_round_trip_idempotent_and_frames(tmp_path):
    specs = expand(SMOKE_TEST, Selection(models=("beta_vae",), seeds=(0,)))
    store = open_store(tmp_path)
    assert store.register_runs(specs) == 2 and store.register_runs(specs) == 0
    assert store.status_counts() == {"pending": 2, "running": 0, "done": 0, "failed": 0}
    store.mark_running(specs[0].model_num, "local")
    store.record(_result(specs[0].model_num, 0.25))
    store.record(_result(specs[0].model_num, 0.25))  # a repeated write replaces, never duplicates
    store.mark_running(specs[1].model_num)
    assert store.reset_interrupted() == 1
    store.record(ModelResult(specs[1].model_num, "w", error="ValueError: boom", traceback="Traceback ..."))
    runs = {r["model_num"]: r for r in store.runs()}
    assert runs[specs[0].model_num]["status"] == "done" and runs[specs[0].model_num]["attempts"] == 1
    assert runs[specs[1].model_num]["error"] == "ValueError: boom" and runs[specs[1].model_num]["traceback"]
    assert store.num_results() == 4
    long = store.results_frame()
    assert len(long) == 4 and set(long["key"]) == {"discrete_mig", "per_factor/0", "per_factor/1", "elbo"}
    wide = store.results_frame(wide=True)
    assert len(wide) == 1 and wide.loc[0, "mean/mig/discrete_mig"] == 0.25 and wide.loc[0, "value"] == 1.0
    assert store.evaluated(specs[0].model_num) == {("mean", "mig"), ("train", "final_eval")}
    # a different config under the same model number is refused
    other = expand(SMOKE_TEST, Selection(models=("beta_vae",), seeds=(0,), steps=11))
    with pytest.raises(ConfigMismatchError, match="another training config"):
        store.register_runs(other)
    # non-finite numbers are NULL
    store.record(_result(specs[0].model_num, float("inf")))
    assert store.results_frame(wide=True)["mean/mig/discrete_mig"].isna().all()
    store.close()
    with sqlite3.connect(tmp_path / "results.sqlite") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_export_csv_and_parquet(tmp_path):
    specs = expand(SMOKE_TEST, Selection(models=("beta_vae",), seeds=(0,)))
    with open_store(tmp_path) as store:
        store.register_runs(specs)
        for i, spec in enumerate(specs):
            store.record(_result(spec.model_num, 0.1 * i))
        paths = store.export(tmp_path / "export")
        wide = store.results_frame(wide=True)
    assert sorted(p.name for p in paths) == sorted(
        f"{t}.{f}" for t in ("runs", "results", "results_wide") for f in ("csv", "parquet")
    )
    csv = pd.read_csv(tmp_path / "export" / "results_wide.csv")
    pd.testing.assert_frame_equal(csv, wide, check_dtype=False)
    parquet = pd.read_parquet(tmp_path / "export" / "results.parquet")
    assert len(parquet) == 8 and set(parquet.columns) >= {
        "model_num",
        "representation",
        "metric",
        "key",
        "score",
    }


def test_sqlite_readers_do_not_block_the_writer(tmp_path):
    specs = expand(SMOKE_TEST)
    writer = open_store(tmp_path)
    writer.register_runs(specs)
    stop, errors = threading.Event(), []

    def read():
        reader = open_store(tmp_path)
        try:
            while not stop.is_set():
                reader.results_frame(wide=True)
                reader.status_counts()
        except Exception as error:  # pragma: no cover - the failure being tested for
            errors.append(error)
        finally:
            reader.close()

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for spec in specs:
            writer.record(_result(spec.model_num, 0.5))
    finally:
        stop.set()
        thread.join()
    assert not errors and writer.status_counts()["done"] == len(specs)


def test_cli_dry_run_and_reproduce_print_only(capsys):
    assert (
        cli_main(["study", "reproduce", "unsupervised_study_v1", "--model-num", "4321", "--print-only"]) == 0
    )
    out = capsys.readouterr().out
    assert "DIP-VAE-I on noisy_dsprites, lambda_od=5, seed 21" in out
    assert (
        "untwine train model=dip_vae_i dataset=noisy_dsprites seed=21 model.lambda_od=5.0 model.lambda_d_factor=10.0"
        in out
    )
    assert (
        cli_main(
            [
                "study",
                "run",
                "unsupervised_study_v1",
                "--datasets",
                "procedural_dsprites",
                "--values",
                "0,5",
                "--seeds",
                "0-1",
                "--steps",
                "3000",
                "--dry-run",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.strip().endswith("24 models") and "annealed_vae  c_max=100 seed=1" in out
    assert cli_main(["study", "list"]) == 0
    assert "unsupervised_study_v1: 12600 models" in capsys.readouterr().out
    assert cli_main(["study", "run", "unsupervised_study_v1", "--seeds", "77", "--dry-run"]) == 1
    assert "seed 77 is not in study" in capsys.readouterr().err


def test_evaluation_choices_change_the_study():
    with pytest.raises(ValueError, match="metric_params for metrics it does not compute"):
        resolve_study(
            "smoke_test",
            Path("/nonexistent"),
            evaluation=EvaluationChoice(
                metrics=("mig", "dci"),
                fast=True,
                metric_params=parse_metric_params(
                    ["dci.num_train=300", "downstream_task_boosted_trees.num_train=[100,1000]"]
                ),
            ),
        )
    plan = resolve_study(
        "smoke_test",
        None,
        evaluation=EvaluationChoice(
            metrics=("mig", "dci"), fast=True, metric_params=parse_metric_params(["dci.num_train=300"])
        ),
    )
    study = plan.study
    assert study.metrics == ("mig", "dci") and study.fast and plan.store is None and not plan.continued
    assert study.metric_params == {"mig": {"num_train": 500}, "dci": {"num_train": 300}}
    assert str(plan.study_dir) == "studies/smoke_test" and plan.selection == Selection()
    # aliases become canonical names (results and metric files use them); one preset expands
    study = apply_evaluation(SMOKE_TEST, EvaluationChoice(metrics=("sap", "beta_vae")))
    assert study.metrics == ("sap_score", "beta_vae_sklearn") and study.metric_params == {}
    assert apply_evaluation(SMOKE_TEST, EvaluationChoice(metrics=("study",))).metrics == V1.metrics
    assert apply_evaluation(SMOKE_TEST, EvaluationChoice(metrics=("all",))).metrics[-8:] == (
        "fairness",
        "irs",
        "unified_scores",
        "reduced_downstream_task",
        "strong_downstream_task",
        "mig_continuous",
        "sap_continuous",
        "dci_regression",
    )
    with pytest.raises(ValueError, match="METRIC.KEY=VALUE"):
        parse_metric_params(["num_train=3"])


def test_a_study_directory_is_continued_with_its_saved_selection(tmp_path):
    selection = Selection(models=("beta_vae",), seeds=(1,))
    write_study_file(tmp_path, SMOKE_TEST, selection, "results.sqlite")
    plan = resolve_study("smoke_test", tmp_path)
    assert plan.continued and plan.selection == selection and plan.study == SMOKE_TEST
    assert resolve_study(None, tmp_path).selection == selection
    with pytest.raises(ValueError, match="need the study name too"):
        resolve_study(None, tmp_path, Selection(seeds=(0,)))
    assert not resolve_study("smoke_test", tmp_path, Selection(seeds=(0,))).continued
    with pytest.raises(ValueError, match="name a study"):
        resolve_study(None, tmp_path / "empty")


# -- everything is checked before anything is written or trained ---------------------------------------
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--metrics", "nonexistent"], "unknown metric 'nonexistent'; known metrics: beta_vae_sklearn"),
        (["--metrics", "mig,studyy"], "unknown metric 'studyy'.*presets: study, fairness_study, all"),
        (["--metric-param", "mig.num_trian=5"], r"unknown parameters \['num_trian'\]; known: \['num_bins'"),
        (["--metric-param", "dci.num_train=5"], "metric_params for metrics it does not compute: \\['dci'\\]"),
        (["--metric-param", "num_train=5"], "METRIC.KEY=VALUE"),
        (["--datasets", "svhn"], "unknown dataset 'svhn'; valid datasets: dsprites_full"),
        (["--set", "learning_rat=1e-3"], "unknown config key 'learning_rat'; valid keys:"),
        (["--set", "seed=3"], "dedicated flags"),
        (["--models", "vae"], "has no model 'vae'"),
        (["--model-num", "50000"], "model_num 50000 names no model of study 'smoke_test'"),
        (["--datasets", "dsprites_full"], "dataset files are missing"),
    ],
)
def test_bad_input_fails_before_anything_is_written(tmp_path, capsys, flags, message):
    study_dir = tmp_path / "study"
    code = cli_main(["study", "run", "smoke_test", "--dir", str(study_dir), "--executor", "inline", *flags])
    err = capsys.readouterr().err
    assert code == 1 and re.search(message, err), err
    assert not study_dir.exists()  # no study.json, no store, no run directory


def test_presets_and_aliases_are_accepted_by_the_cli(capsys):
    for metrics in ("study", "fairness_study", "all", "sap,beta_vae,mig"):
        flags = ["--metrics", metrics, "--models", "beta_vae", "--seeds", "0", "--dry-run"]
        assert cli_main(["study", "run", "smoke_test", *flags]) == 0
        assert capsys.readouterr().out.strip().endswith("2 models")


# -- model numbers: published ones fixed, the others stable and never aliasing --------------------------
def test_numbers_outside_the_grid_are_refused_not_aliased():
    with pytest.raises(ValueError, match="model_num 12600 names no model of study 'unsupervised_study_v1'"):
        decode_model_num(V1, 12_600)
    with pytest.raises(ValueError, match="model_num 12600 names no model"):
        expand(V1, Selection(model_nums=(12_600,)))
    number = 10_672_200 + 4321 % 1800  # procedural_dsprites, the model of 4321 on noisy dSprites
    assert decode_model_num(V1, number) == ("procedural_dsprites", "dip_vae_i", 2, 21)
    (spec,) = expand(V1, Selection(model_nums=(number,)))
    assert (spec.dataset, spec.model, spec.value, spec.seed) == ("procedural_dsprites", "dip_vae_i", 5.0, 21)


def test_numbers_do_not_depend_on_the_registry_order(monkeypatch):
    import untwine.data

    names = untwine.data.list_datasets()
    before = {name: model_num(V1, name, "beta_vae", 0, 0) for name in names}
    assert before["dsprites_full"] == 0 and before["shapes3d"] == 10_800  # published
    monkeypatch.setattr(untwine.data, "list_datasets", lambda: ["a_new_dataset", *reversed(names)])
    assert {name: model_num(V1, name, "beta_vae", 0, 0) for name in names} == before
    # two names in one slot would share numbers: refused, naming both
    monkeypatch.setattr(untwine.data, "list_datasets", lambda: [*names, "extra_141", "extra_189"])
    assert dataset_slot("extra_141") == dataset_slot("extra_189")
    with pytest.raises(ValueError, match="'extra_141' and 'extra_189' share model-number slot 7371"):
        model_num(V1, "procedural_dsprites", "beta_vae", 0, 0)
    assert model_num(V1, "shapes3d", "beta_vae", 0, 0) == 10_800  # the study's own numbers still work


def test_model_num_with_other_filters_must_lie_inside_them():
    runs = expand(V1, Selection(model_nums=(4321, 4322), seeds=(21, 22), datasets=("noisy_dsprites",)))
    assert [r.model_num for r in runs] == [4321, 4322]
    for selection, flags in [
        (Selection(model_nums=(4321,), seeds=(0,)), "--seeds"),
        (Selection(model_nums=(4321,), datasets=("shapes3d",), models=("beta_vae",)), "--datasets, --models"),
        (Selection(model_nums=(4321,), values=(0,)), "--values"),
        (Selection(model_nums=(4321,), model_values={"dip_vae_i": (1.0,)}), "--values"),
    ]:
        with pytest.raises(ValueError, match=f"model_num 4321 .*is outside the selection's {flags};"):
            expand(V1, selection)
    message = "noisy_dsprites, dip_vae_i lambda_od=5, seed 21"
    with pytest.raises(ValueError, match=message):
        expand(V1, Selection(model_nums=(4321,), seeds=(0,)))


def test_default_parallelism():
    from untwine.studies.executors import default_parallelism

    assert default_parallelism(cpus=2, gpus=0) == (2, 1)  # this machine: 2 workers x 1 thread
    assert default_parallelism(cpus=4, gpus=0) == (4, 1)
    assert default_parallelism(cpus=16, gpus=0) == (8, 2)
    assert default_parallelism(cpus=64, gpus=0) == (16, 4)
    assert default_parallelism(cpus=16, gpus=1) == (1, 16)  # one worker per GPU
    assert default_parallelism(cpus=16, gpus=4) == (4, 4)


def test_scaled_runs_keep_checkpointing():
    assert spec_for_model_num(V1, 0).config["checkpoint_every"] == 5000  # 60 checkpoints in 300k steps
    assert spec_for_model_num(V1, 0, steps=3000).config["checkpoint_every"] == 300
    assert (
        spec_for_model_num(V1, 0, steps=3000, train={"checkpoint_every": 7}).config["checkpoint_every"] == 7
    )


# -- records, executors, progress ------------------------------------------------------------------------
def test_task_and_result_records_pickle_and_the_store_records_them(tmp_path):
    from untwine.studies.runner import make_task

    (spec,) = expand(SMOKE_TEST, Selection(models=("beta_vae",), values=(0,), seeds=(0,)))
    task = make_task(spec, SMOKE_TEST, tmp_path, device="cpu", threads=2)
    assert pickle.loads(pickle.dumps(task)) == task
    assert (
        task.run_dir == str((tmp_path / "runs" / "00000").resolve()) and task.config_hash == spec.config_hash
    )
    assert task.metrics == ("mig", "unsupervised") and task.metric_params["mig"] == {"num_train": 500}
    assert (task.mode, task.threads, task.device) == ("faithful", 2, "cpu")
    result = _result(spec.model_num, 0.5)
    assert pickle.loads(pickle.dumps(result)) == result and result.ok
    try:
        raise ValueError("boom")
    except ValueError as error:
        failure = ModelResult.failure(3, error, "local", train_seconds=2.0)
    assert not failure.ok and failure.error == "ValueError: boom" and "Traceback" in failure.traceback
    assert pickle.loads(pickle.dumps(failure)) == failure

    (failed_spec,) = expand(SMOKE_TEST, Selection(models=("beta_vae",), values=(0,), seeds=(1,)))
    failure = dataclasses.replace(failure, model_num=failed_spec.model_num)
    with open_store(tmp_path) as store:
        store.register_runs([spec, failed_spec])
        store.record(result)
        store.record(failure)
        runs = {run["model_num"]: run for run in store.runs()}
        assert store.result_rows() == [
            (spec.model_num, "mean", "mig", "discrete_mig", 0.5),
            (spec.model_num, "mean", "mig", "per_factor/0", 0.5),
            (spec.model_num, "mean", "mig", "per_factor/1", 0.0),
            (spec.model_num, "train", "final_eval", "elbo", -1.0),
        ]
    done, failed = runs[spec.model_num], runs[failed_spec.model_num]
    assert (done["status"], done["worker"], done["train_seconds"], done["eval_seconds"]) == (
        "done",
        "w",
        1.0,
        0.5,
    )
    assert (done["git_commit"], json.loads(done["versions_json"])) == ("abc", {"torch": "x"})
    assert (failed["status"], failed["error"], failed["worker"]) == ("failed", "ValueError: boom", "local")
    assert failed["train_seconds"] == 2.0 and failed["eval_seconds"] is None
    assert "Traceback" in failed["traceback"]


def test_the_executors_share_one_protocol():
    from untwine.studies.executors import Executor, InlineExecutor, LocalExecutor

    for executor in (InlineExecutor(threads=2), LocalExecutor(workers=2, threads=1, gpus=0)):
        assert isinstance(executor, Executor)
        assert executor.slots >= 1 and executor.threads >= 1 and executor.describe()
        executor.shutdown()


def test_progress_messages_without_a_terminal_and_the_status_text():
    import io

    from untwine.studies.progress import StudyProgress, format_duration, format_status

    assert [format_duration(s) for s in (7, 125, 3725)] == ["7s", "2m05s", "1h02m"]
    stream = io.StringIO()  # not a terminal: no bar, the messages only
    progress = StudyProgress(total=4, done=1, failed=0, stream=stream)
    progress.started()
    progress.started()
    assert progress.pending == 1
    progress.finished(ok=False, message="model 3 failed: ValueError: boom")
    progress.finished(ok=True)
    progress.close()
    assert stream.getvalue() == "model 3 failed: ValueError: boom\n"
    assert (progress.done, progress.failed, progress.running) == (2, 1, 0)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()  # a terminal: the bar, with the counts in its postfix
    progress = StudyProgress(total=4, done=1, failed=0, stream=terminal)
    progress.started()
    progress.finished(ok=False, message="model 3 failed: ValueError: boom")
    progress.close()
    assert progress.bar.n == 2 and "model 3 failed: ValueError: boom\n" in terminal.getvalue()
    assert "2/4" in terminal.getvalue() and "1 done, 1 failed, 0 running, 2 pending" in terminal.getvalue()
    quiet = io.StringIO()
    StudyProgress(total=1, done=0, failed=0, stream=quiet, enabled=False).message("hidden")
    assert quiet.getvalue() == ""
    status = {
        "study": "smoke_test",
        "total": 4,
        "counts": {"done": 2, "running": 0, "failed": 1, "pending": 1},
        "mean_model_seconds": 65.0,
        "failed": [{"model_num": 3, "error": "ValueError: boom"}],
        "results": 10,
        "store": "x.sqlite",
    }
    text = format_status(status, "DIR")
    assert "2/4 done, 0 running, 1 failed, 1 pending; 10 stored numbers" in text
    assert "65.0 s per model" in text and "1m05s of work left" in text
    assert "failed model 3: ValueError: boom" in text and "--retry-failed" in text


def test_export_falls_back_to_csv_without_pyarrow(tmp_path, monkeypatch):
    import sys

    from untwine.studies.runner import export_study

    specs = expand(SMOKE_TEST, Selection(models=("beta_vae",), seeds=(0,)))
    write_study_file(tmp_path, SMOKE_TEST, Selection(models=("beta_vae",), seeds=(0,)), "results.sqlite")
    with open_store(tmp_path) as store:
        store.register_runs(specs)
        store.record(_result(specs[0].model_num, 0.5))
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` fails
    export = export_study(tmp_path)
    assert sorted(p.name for p in export.paths) == ["results.csv", "results_wide.csv", "runs.csv"]
    assert "pyarrow" in export.skipped and export.skipped.endswith("wrote CSV only")
    with pytest.raises(RuntimeError, match="pyarrow"):
        export_study(tmp_path, formats=("parquet",))
    with pytest.raises(FileNotFoundError, match="not a study directory"):
        export_study(tmp_path / "nowhere")

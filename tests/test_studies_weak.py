"""The weakly-supervised study: its grid and numbering, sweeps that share a model under their own
names, and a scaled run end to end (pair models trained, scored with the unsupervised metrics, stored
under the sweep names, pictured with the pair animation)."""

from __future__ import annotations

import pytest

from untwine.studies.definitions import WEAKLY_SUPERVISED_STUDY, ModelSweep, Study
from untwine.studies.executors import InlineExecutor
from untwine.studies.grid import Selection, decode_model_num, expand, model_num
from untwine.studies.runner import run_dir_for, run_study
from untwine.studies.store import open_store

STUDY = WEAKLY_SUPERVISED_STUDY
SWEEPS = [
    "beta_vae",
    "gvae_k1",
    "gvae_krnd",
    "ada_gvae_k1",
    "ada_gvae_krnd",
    "mlvae_k1",
    "mlvae_krnd",
    "ada_mlvae_k1",
    "ada_mlvae_krnd",
]


def test_the_grid_and_its_numbers():
    assert [m.key for m in STUDY.models] == SWEEPS
    assert STUDY.size == 5 * 9 * 6 * 10
    assert all(m.values == (1.0, 2.0, 4.0, 6.0, 8.0, 16.0) for m in STUDY.models)
    # datasets outermost, then sweeps, then β values, then seeds: 540 d + 60 m + 10 v + seed
    assert model_num(STUDY, "cars3d", "ada_gvae_krnd", 2, 7) == 540 * 1 + 60 * 4 + 10 * 2 + 7
    assert decode_model_num(STUDY, 540 * 4 + 60 * 8 + 10 * 5 + 9) == ("mpi3d_real", "ada_mlvae_krnd", 5, 9)
    assert STUDY.train["steps"] == 300_000 and STUDY.train["batch_size"] == 64


def test_sweeps_of_one_model_train_it_with_their_own_fixed_parameters():
    (spec,) = expand(
        STUDY,
        Selection(datasets=("procedural_dsprites",), models=("ada_gvae_krnd",), values=(2,), seeds=(3,)),
    )
    assert spec.model == "ada_gvae_krnd" and spec.parameter == "beta" and spec.value == 4.0
    assert spec.config["model"] == "group_vae"
    assert spec.config["model_params"] == {"beta": 4.0, "aggregation": "argmax", "k": "rnd"}
    assert spec.overrides()[:3] == ["model=group_vae", "dataset=procedural_dsprites", "seed=3"]
    assert "model.k=rnd" in spec.overrides() and "model.aggregation=argmax" in spec.overrides()
    (labels,) = expand(STUDY, Selection(datasets=("cars3d",), models=("mlvae_k1",), values=(0,), seeds=(0,)))
    assert labels.config["model"] == "ml_vae" and labels.config["model_params"]["aggregation"] == "labels"
    assert labels.config["model_params"]["k"] == 1


def test_a_study_that_sweeps_one_model_twice_needs_names():
    twice = (ModelSweep("group_vae", "beta", (1.0,)), ModelSweep("group_vae", "beta", (2.0,), fixed={"k": 2}))
    with pytest.raises(ValueError, match="lists a model twice"):
        Study(name="x", description="", datasets=("procedural_dsprites",), models=twice, seeds=(0,))
    named = (twice[0], ModelSweep("group_vae", "beta", (2.0,), fixed={"k": 2}, name="gvae_k2"))
    study = Study(name="x", description="", datasets=("procedural_dsprites",), models=named, seeds=(0,))
    assert [s.model for s in expand(study)] == ["group_vae", "gvae_k2"]
    with pytest.raises(KeyError, match="has no model 'ml_vae'; its models: group_vae, gvae_k2"):
        expand(study, Selection(models=("ml_vae",)))


def test_a_scaled_weak_study_runs_end_to_end(tmp_path):
    study = STUDY.replace(
        metrics=("mig",), metric_params={"mig": {"num_train": 500}}, representations=("mean",)
    )
    selection = Selection(
        datasets=("procedural_dsprites",),
        models=("beta_vae", "ada_gvae_k1", "mlvae_krnd"),
        values=(2,),
        seeds=(0,),
        steps=4,
        train={"batch_size": 8, "eval_batches": 1},
    )
    summary = run_study(
        study, tmp_path / "weak", selection, executor=InlineExecutor(threads=1), progress=False
    )
    assert (summary.total, summary.done, summary.failed) == (3, 3, 0)
    with open_store(tmp_path / "weak") as store:
        runs = {r["model"]: r for r in store.runs()}
        assert set(runs) == {"beta_vae", "ada_gvae_k1", "mlvae_krnd"}
        frame = store.results_frame(wide=True)
    assert len(frame) == 3 and frame["mean/mig/discrete_mig"].between(0, 1).all()
    # the pair run's picture folder shows its training pairs
    from untwine.visualisation.run_visuals import visualise_run

    spec = next(s for s in expand(study, selection) if s.model == "ada_gvae_k1")
    manifest = visualise_run(run_dir_for(tmp_path / "weak", spec.model_num), tmp_path / "pictures")
    assert manifest["pair_animation"] == "animations/pairs.gif"
    assert (tmp_path / "pictures" / "animations" / "pairs.gif").stat().st_size > 1000

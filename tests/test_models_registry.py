"""The model table: one entry per model, weights only from an explicit generator (never torch's global
random state, through build_model and a short train()), and `untwine train --help` generated from it."""

import re

import pytest
import torch
from torch import nn

from untwine.models import MODEL_DEFAULTS, MODELS, VAEModel, build_model, instantiate
from untwine.training import TrainConfig, train


def _global_rng() -> tuple[torch.Tensor, int]:
    return torch.random.get_rng_state(), torch.initial_seed()


def _assert_unmoved(before: tuple[torch.Tensor, int], what: str) -> None:
    state, seed = _global_rng()
    assert torch.equal(state, before[0]), f"{what} drew from torch's global generator"
    assert seed == before[1], f"{what} reseeded torch's global generator"


def test_the_global_rng_check_detects_a_draw():
    before = _global_rng()
    torch.rand(1)
    with pytest.raises(AssertionError, match="drew from"):
        _assert_unmoved(before, "torch.rand")


# Every model of the table, plus the S^2 variants whose construction adds parameters at attach time.
CASES = [(name, []) for name in MODELS] + [
    ("s2_beta_vae", ["model.supervised_loss=embed"]),
    ("s2_dip_vae_i", ["model.supervised_loss=l2"]),
]


@pytest.mark.parametrize("name, extra", CASES, ids=[" ".join([n, *e]) for n, e in CASES])
def test_build_and_train_never_touch_the_global_rng(tmp_path, name, extra):
    params = {"dataset_size": 1000} if name.endswith("beta_tc_vae") else {}
    before = _global_rng()
    build_model(name, 1, init_generator=torch.Generator().manual_seed(0), **params)
    _assert_unmoved(before, f"build_model({name!r})")
    config = TrainConfig.from_overrides(
        [f"model={name}", *extra, "steps=2", "batch_size=4", "eval_batches=1", "progress=false", "threads=1"]
        + ["model.num_labels=20"] * name.startswith("s2_")
    )
    train(config, tmp_path / "run")
    _assert_unmoved(before, f"train(model={name})")


def test_instantiate_refuses_a_parameter_that_reset_parameters_misses():
    class Forgetful(VAEModel):
        name = "forgetful"

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.extra = nn.Parameter(torch.zeros(3))  # not a Linear/Conv: reset_parameters_tf skips it

    with pytest.raises(RuntimeError, match="left extra uninitialised"):
        instantiate(Forgetful, 0, 1)


def test_model_table_is_the_one_source():
    assert list(MODEL_DEFAULTS) == list(MODELS)
    for name, entry in MODELS.items():
        assert entry.name == name and entry.cls.name == name
        assert MODEL_DEFAULTS[name] == entry.cls.defaults and entry.description
    assert {"factor_vae", "ss_vae", "s2_beta_tc_vae"} <= set(MODELS)


def test_train_help_lists_every_model_and_its_parameters(capsys):
    from untwine.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    blocks = re.split(r"\n  (?=\S)", text)  # one block per model: its line and its parameter lines
    for name, entry in MODELS.items():
        block = next(b for b in blocks if b.startswith(name + " "))
        assert entry.description in " ".join(block.split())
        for param in entry.defaults:
            assert f"model.{param}=" in block, (name, param)
    factor_vae = next(b for b in blocks if b.startswith("factor_vae "))
    assert "model.gamma=10.0" in factor_vae
    tc_vae = next(b for b in blocks if b.startswith("beta_tc_vae "))
    assert "model.tc_estimator=mws (one of mws, mss) model.dataset_size=null (an integer >= 2 or null)" in (
        " ".join(tc_vae.split())
    )
    assert "model.beta=1.0 (a number >= 0)" in next(b for b in blocks if b.startswith("beta_vae "))
    assert "Keys: model, model.<param>, dataset, steps," in text

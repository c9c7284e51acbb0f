"""The reference toy dataset as an untwine GroundTruthDataset, and helpers to load the reference cases.

The observation of a factor vector *is* the factor vector (float32), as in ``families.ToyGroundTruthData``;
the representation families of ``families.py`` map those observations to codes.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path

import numpy as np

from untwine.data.base import FactorSpace, GroundTruthDataset

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import families  # noqa: E402  (numpy-only reference code next to this file)


class ToyDataset(GroundTruthDataset):
    """Observation = factor index vector as float32 (deterministic)."""

    deterministic = True

    def __init__(self, space: str):
        self.name = f"toy_{space}"
        self.factor_space = FactorSpace(families.FACTOR_SPACES[space], families.FACTOR_NAMES[space])
        self.observation_shape = (len(self.factor_space.sizes),)  # not an image: the toy convention

    def _observations(self, factors, rng):
        return factors.astype(np.float32)


def family_fn(space: str, family: str, noise_seed: int = 0):
    """The family's representation function (stateful: it draws fresh noise at every call)."""
    return families.make_family(family, families.FACTOR_SPACES[space]).representation_function(noise_seed)


def is_stochastic(family: str) -> bool:
    return family in ("disentangled", "rotated", "noisy")


@cache
def expected() -> dict:
    return json.loads((HERE / "expected.json").read_text())["cases"]


@cache
def load_case(name: str) -> dict:
    """Arrays of case ``"space/family"``: factors_train, codes_train, factors_test, codes_test."""
    with np.load(HERE / "cases" / (name.replace("/", "__") + ".npz")) as data:
        return {k: data[k] for k in ("factors_train", "codes_train", "factors_test", "codes_test")}


CASES = ("dsprites/disentangled", "dsprites/rotated", "small/disentangled", "small/rotated")

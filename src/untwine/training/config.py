"""Training configuration: one dataclass, overridable by ``key=value`` strings everywhere.

The same convention serves the CLI (``untwine train model=beta_vae model.beta=4 steps=5000``), Python
(``TrainConfig.from_overrides([...])`` or plain keyword arguments) and study grids.  Unknown keys are
errors that list the valid keys.  ``model.<param>`` keys are checked against the chosen model's typed
parameters (``untwine.models.check_model_params``: name, type, range).  ``seed`` is an integer in
[0, 2**63).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from untwine.utils.overrides import parse_value, split_override

#: Seeds are integers in [0, 2**63): numpy's SeedSequence takes any non-negative integer, but a seed is
#: also a column of the studies' results store (a signed 64-bit integer) and a JSON number.
SEED_LIMIT = 2**63


@dataclass
class TrainConfig:
    model: str = "beta_vae"
    model_params: dict[str, Any] = field(default_factory=dict)  # set as model.<name>=value
    dataset: str = "procedural_dsprites"
    steps: int = 300_000  # real iterations (FactorVAE: one VAE and one discriminator update per step)
    batch_size: int = 64
    seed: int = 0
    learning_rate: float = 1e-4
    num_latents: int = 10
    architecture: str = "conv"  # "conv" | "fc"
    encoder_kernels: str = "dlib"  # "dlib" (k2 on conv layers 3-4) | "paper" (k4)
    reconstruction: str = "bernoulli"  # "bernoulli" | "l2"
    checkpoint_every: int = 5000
    log_every: int = 100
    eval_batches: int = 16  # held-out batches scored at the end of training
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default
    channels_last: bool = True  # faster oneDNN convolutions on CPU; same numerics run to run
    bf16: bool = False  # bfloat16 autocast: ~2x faster on CPUs with AMX, numerics change
    progress: bool = True

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "model_params"]

    @classmethod
    def from_overrides(
        cls, overrides: Iterable[str] | Mapping[str, Any], base: TrainConfig | None = None
    ) -> TrainConfig:
        """Apply ``key=value`` strings (or a mapping) on top of ``base`` (default: the defaults)."""
        items = (
            overrides.items() if isinstance(overrides, Mapping) else (split_override(o) for o in overrides)
        )
        values = dataclasses.asdict(base) if base is not None else {}
        model_params = dict(values.pop("model_params", {}))
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in items:
            if key.startswith("model."):
                model_params[key[len("model.") :]] = parse_value(value)
            elif key in fields and key != "model_params":
                values[key] = _coerce(key, parse_value(value), fields[key])
            else:
                raise ValueError(
                    f"unknown config key {key!r}; valid keys: {', '.join(cls.keys())}, model.<param>"
                )
        config = cls(**values, model_params=model_params)
        config.validate()
        return config

    def validate(self) -> None:
        from untwine.data import list_datasets
        from untwine.data.user import is_file_dataset
        from untwine.models import check_model_params

        check_model_params(self.model, self.model_params)
        if is_file_dataset(self.dataset):
            from untwine.data.user import load_file_dataset

            shape = load_file_dataset(self.dataset).observation_shape  # reads and checks the file now
            if tuple(shape[:2]) != (64, 64):
                raise ValueError(
                    f"{self.dataset}: the study's networks take 64x64 images, the file holds {tuple(shape)}"
                )
        elif self.dataset not in list_datasets():
            raise ValueError(
                f"unknown dataset {self.dataset!r}; valid datasets: {', '.join(list_datasets())}"
            )
        for name in ("steps", "batch_size", "checkpoint_every", "log_every", "num_latents"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < SEED_LIMIT:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        if self.eval_batches < 0 or self.threads < 0:
            raise ValueError("eval_batches and threads must be >= 0")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        choices = {
            "architecture": ("conv", "fc"),
            "encoder_kernels": ("dlib", "paper"),
            "reconstruction": ("bernoulli", "l2"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    def resolved_model_params(self) -> dict[str, Any]:
        """The model's defaults with this config's overrides applied (what the run really used)."""
        from untwine.models import MODEL_DEFAULTS

        return {**MODEL_DEFAULTS[self.model], **self.model_params}

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["model_params"] = self.resolved_model_params()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown} in saved config; valid keys: {sorted(fields)}")
        config = cls(**dict(data))
        config.validate()
        return config


def _coerce(key: str, value: Any, spec: dataclasses.Field) -> Any:
    kind = {"int": int, "float": float, "bool": bool, "str": str}.get(str(spec.type))
    if kind is None:
        return value
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        # 5e3 -> 5000; beyond 2**53 a float no longer holds every integer (1e30 is not the integer meant)
        return int(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        raise ValueError(
            f"config key {key!r} needs an integer, got {value!r}: a float this large is not an exact "
            "integer; write the number's digits"
        )
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"config key {key!r} needs a {kind.__name__}, got {value!r}")
    return value

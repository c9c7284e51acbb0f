"""``encoder.json``: what an evaluation directory of an outside encoder was made from."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from untwine.utils.io import atomic_write_json

RECORD_FILE = "encoder.json"


@dataclass(frozen=True)
class EncoderRecord:
    """Where the codes came from: ``kind`` (torchscript, onnx, callable, codes), ``source`` (the file or
    ``module:function``), the dataset, the image ``layout``, ``outputs`` (``codes`` or ``mean_logvar``)
    and the code dimension."""

    kind: str
    source: str
    dataset: str
    layout: str
    outputs: str
    code_dim: int

    @property
    def representations(self) -> tuple[str, ...]:
        return ("mean", "sampled") if self.outputs == "mean_logvar" else ("mean",)


def write_encoder_record(directory: str | Path, record: EncoderRecord) -> Path:
    path = Path(directory) / RECORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, asdict(record))
    return path


def read_encoder_record(directory: str | Path) -> EncoderRecord | None:
    """The record of ``directory``, or None when it is not an outside encoder's evaluation."""
    path = Path(directory) / RECORD_FILE
    if not path.exists():
        return None
    return EncoderRecord(**json.loads(path.read_text()))

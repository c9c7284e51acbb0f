"""Encoders from outside untwine, turned into representations the metrics can score.

A user's model arrives as a TorchScript file (:mod:`.torchscript`), an ONNX file (:mod:`.onnx_file`,
through onnxruntime), a Python callable ``module:function`` (:mod:`.python_callable`), or as
precomputed codes (:mod:`untwine.metrics.precomputed`).  :func:`~untwine.encoders.loading.load_encoder`
loads the first three, checks the model's output on a probe batch of the dataset's images before any
metric runs, and returns the representation with an :class:`~untwine.encoders.record.EncoderRecord`
that is written next to the results (``encoder.json``).

The contract an encoder follows: it receives float32 images in [0, 1], shaped ``(n, H, W, C)``
(``layout="nhwc"``, the datasets' own layout) or ``(n, C, H, W)`` (``layout="nchw"``), and returns
either codes ``(n, d)`` or a pair ``(mean, log-variance)`` of ``(n, d)`` arrays; a pair makes the
sampled representation (``mean + exp(logvar / 2) * eps``) available too.
"""

from untwine.encoders.loading import ENCODER_KINDS, load_encoder
from untwine.encoders.record import EncoderRecord, read_encoder_record, write_encoder_record

__all__ = ["ENCODER_KINDS", "EncoderRecord", "load_encoder", "read_encoder_record", "write_encoder_record"]

"""Encoders, decoders and the FactorVAE discriminator of the unsupervised study, in PyTorch.

The layer stacks, activations, "same" padding, flattening order and initialisation follow
disentanglement_lib's TensorFlow networks (``methods/shared/architectures.py``); see docs/models.md
for every convention and where it differs from PyTorch's defaults.

Images are NCHW float tensors in [0, 1] with 64x64 pixels.  Every network also accepts
channels_last inputs (``x.contiguous(memory_format=torch.channels_last)``), and the conv networks can
be moved to channels_last with ``module.to(memory_format=torch.channels_last)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SIZE = 64
ENCODER_KERNELS = ("dlib", "paper")

__all__ = [
    "IMAGE_SIZE",
    "ENCODER_KERNELS",
    "tf_same_padding",
    "Conv2dSame",
    "ConvTranspose2dSame",
    "ConvEncoder",
    "DeconvDecoder",
    "FCEncoder",
    "FCDecoder",
    "Discriminator",
    "glorot_uniform_",
    "tf_fans",
    "reset_parameters_tf",
    "make_encoder",
    "make_decoder",
]


# ---------------------------------------------------------------------------------------------------
# TensorFlow "same" padding
# ---------------------------------------------------------------------------------------------------
def tf_same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """(before, after) zero padding TF's ``padding="same"`` applies to one spatial axis of a conv.

    TF makes the output ``ceil(size / stride)`` long and pads ``max((out - 1) * stride + k - size, 0)``
    in total, putting the extra pixel of an odd total *after* (right/bottom).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``tf.layers.conv2d(..., padding="same")``: square kernel, TF's padding computed per input size.

    Symmetric padding is handed to the convolution itself (no copy); asymmetric padding (odd total,
    e.g. a 3x3 kernel with stride 2 on an even input, or a 4x4 kernel on an odd one) is applied with
    ``F.pad`` first.  With ``input_size`` given the padding is fixed at construction (no shape logic
    in ``forward``, so the layer traces cleanly); inputs must then have that size.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        input_size: int | None = None,
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=True)
        self.input_size = input_size
        self._static = None if input_size is None else self._pads(input_size, input_size)

    def _pads(self, h: int, w: int) -> tuple[int, int, int, int]:
        k, s = self.kernel_size[0], self.stride[0]
        top, bottom = tf_same_padding(h, k, s)
        left, right = tf_same_padding(w, k, s)
        return left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = self._static or self._pads(int(x.shape[-2]), int(x.shape[-1]))
        if top == bottom and left == right:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left))
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride)


class ConvTranspose2dSame(nn.ConvTranspose2d):
    """``tf.layers.conv2d_transpose(..., padding="same")``: output = input * stride.

    TF computes this op as the gradient (w.r.t. the input) of a "same" conv whose input is
    ``stride`` times larger, so its implicit padding is :func:`tf_same_padding` of the *output* size.
    When that padding is symmetric (all layers of the study: 4x4 kernel, stride 2 -> 1 pixel each side)
    PyTorch's ``padding=p`` gives the identical result; otherwise the full transposed convolution is
    cropped at TF's offset.  ``input_size`` fixes the geometry at construction, as for :class:`Conv2dSame`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        input_size: int | None = None,
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=True)
        self.input_size = input_size
        self._static = None if input_size is None else self._geometry(input_size, input_size)

    def _geometry(self, h_in: int, w_in: int) -> tuple[int, int, int, int, int, int]:
        k, s = self.kernel_size[0], self.stride[0]
        h, w = h_in * s, w_in * s
        top, bottom = tf_same_padding(h, k, s)
        left, right = tf_same_padding(w, k, s)
        return h, w, top, bottom, left, right

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        h, w, top, bottom, left, right = self._static or self._geometry(int(x.shape[-2]), int(x.shape[-1]))
        k, s = self.kernel_size[0], self.stride[0]
        if top == bottom and left == right and k >= s:
            return F.conv_transpose2d(x, self.weight, self.bias, self.stride, (top, left))
        extra = max(s - k, 0)  # the full output (n-1)s+k is shorter than n*s when k < s
        y = F.conv_transpose2d(x, self.weight, self.bias, self.stride, 0, (extra, extra))
        return y[..., top : top + h, left : left + w]


# ---------------------------------------------------------------------------------------------------
# Initialisation: TF's glorot_uniform kernels and zero biases
# ---------------------------------------------------------------------------------------------------
def tf_fans(module: nn.Module) -> tuple[int, int]:
    """(fan_in, fan_out) as TF computes them for the layer's kernel.

    Dense: (in, out).  conv2d, kernel (k, k, in, out): (k*k*in, k*k*out).  conv2d_transpose, kernel
    (k, k, out, in): (k*k*out, k*k*in) -- swapped, but glorot only uses the sum.
    """
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, nn.ConvTranspose2d):
        rf = module.kernel_size[0] * module.kernel_size[1]
        return rf * module.out_channels, rf * module.in_channels
    if isinstance(module, nn.Conv2d):
        rf = module.kernel_size[0] * module.kernel_size[1]
        return rf * module.in_channels, rf * module.out_channels
    raise TypeError(f"no TF fan rule for {type(module).__name__}")


def glorot_uniform_(
    weight: torch.Tensor, fan_in: int, fan_out: int, generator: torch.Generator
) -> torch.Tensor:
    """Fill ``weight`` from U(-l, l), l = sqrt(6 / (fan_in + fan_out)) (variance 2 / (fan_in + fan_out))."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return nn.init.uniform_(weight, -limit, limit, generator=generator)


def reset_parameters_tf(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise every Linear / Conv2d / ConvTranspose2d below ``module`` like TF 1.x layers do.

    Modules are visited in registration order, so a given generator state gives the same weights.
    """
    for sub in module.modules():
        if isinstance(sub, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            fan_in, fan_out = tf_fans(sub)
            glorot_uniform_(sub.weight, fan_in, fan_out, generator)
            if sub.bias is not None:
                with torch.no_grad():
                    sub.bias.zero_()
    return module


# ---------------------------------------------------------------------------------------------------
# Helpers for TF's NHWC flatten / reshape order
# ---------------------------------------------------------------------------------------------------
def _flatten_nhwc(x: torch.Tensor) -> torch.Tensor:
    """Flatten (N, C, H, W) in TF's (H, W, C) order; free when ``x`` is channels_last."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


def _unflatten_nhwc(x: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`_flatten_nhwc`: a (N, C, H, W) view with channels_last strides."""
    return x.reshape(x.shape[0], height, width, channels).permute(0, 3, 1, 2)


def _check_images(x: torch.Tensor, num_channels: int) -> None:
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    if x.dim() != 4 or x.shape[1] != num_channels or x.shape[2] != IMAGE_SIZE or x.shape[3] != IMAGE_SIZE:
        raise ValueError(
            f"expected images of shape (N, {num_channels}, {IMAGE_SIZE}, {IMAGE_SIZE}) (NCHW), got {tuple(x.shape)}"
        )


# ---------------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------------
class ConvEncoder(nn.Module):
    """disentanglement_lib's ``conv_encoder``.

    conv 32 k4 s2 -> conv 32 k4 s2 -> conv 64 kK s2 -> conv 64 kK s2 (ReLU, TF "same")
    -> flatten (TF's H, W, C order) -> dense 256 ReLU -> dense ``num_latents`` (mean) and a second
    dense head (log-variance).  K = 2 for ``kernels="dlib"`` (the code and its released models),
    K = 4 for ``kernels="paper"`` (Table 2 of Locatello et al. 2019 / the beta-VAE paper).
    """

    def __init__(self, num_channels: int, num_latents: int = 10, kernels: str = "dlib"):
        super().__init__()
        if kernels not in ENCODER_KERNELS:
            raise ValueError(f"encoder_kernels must be one of {ENCODER_KERNELS}, got {kernels!r}")
        k34 = 2 if kernels == "dlib" else 4
        self.num_channels, self.num_latents, self.kernels = num_channels, num_latents, kernels
        self.conv1 = Conv2dSame(num_channels, 32, 4, 2, input_size=IMAGE_SIZE)
        self.conv2 = Conv2dSame(32, 32, 4, 2, input_size=IMAGE_SIZE // 2)
        self.conv3 = Conv2dSame(32, 64, k34, 2, input_size=IMAGE_SIZE // 4)
        self.conv4 = Conv2dSame(64, 64, k34, 2, input_size=IMAGE_SIZE // 8)
        self.fc = nn.Linear(4 * 4 * 64, 256)
        self.mean = nn.Linear(256, num_latents)
        self.logvar = nn.Linear(256, num_latents)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_images(x, self.num_channels)
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h))
        h = F.relu(self.conv3(h))
        h = F.relu(self.conv4(h))
        h = F.relu(self.fc(_flatten_nhwc(h)))
        return self.mean(h), self.logvar(h)


class DeconvDecoder(nn.Module):
    """disentanglement_lib's ``deconv_decoder``: returns logits (N, C, 64, 64).

    dense 256 ReLU -> dense 1024 ReLU -> reshape to 4x4x64 (TF's H, W, C order) -> convT 64 -> convT 32
    -> convT 32 -> convT C (all 4x4, stride 2, TF "same" = PyTorch padding 1; ReLU between).
    """

    def __init__(self, num_channels: int, num_latents: int = 10):
        super().__init__()
        self.num_channels, self.num_latents = num_channels, num_latents
        self.fc1 = nn.Linear(num_latents, 256)
        self.fc2 = nn.Linear(256, 1024)
        self.deconv1 = ConvTranspose2dSame(64, 64, 4, 2, input_size=4)
        self.deconv2 = ConvTranspose2dSame(64, 32, 4, 2, input_size=8)
        self.deconv3 = ConvTranspose2dSame(32, 32, 4, 2, input_size=16)
        self.deconv4 = ConvTranspose2dSame(32, num_channels, 4, 2, input_size=32)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc2(F.relu(self.fc1(z))))
        h = _unflatten_nhwc(h, 64, 4, 4)
        # Follow the weights' memory format (the reshape yields channels_last strides for free).
        fmt = (
            torch.channels_last
            if self.deconv1.weight.is_contiguous(memory_format=torch.channels_last)
            and not self.deconv1.weight.is_contiguous()
            else torch.contiguous_format
        )
        h = h.contiguous(memory_format=fmt)
        h = F.relu(self.deconv1(h))
        h = F.relu(self.deconv2(h))
        h = F.relu(self.deconv3(h))
        return self.deconv4(h)


class FCEncoder(nn.Module):
    """disentanglement_lib's ``fc_encoder`` (beta-VAE paper, dSprites): flatten -> 1200 ReLU -> 1200 ReLU -> heads."""

    def __init__(self, num_channels: int, num_latents: int = 10):
        super().__init__()
        self.num_channels, self.num_latents = num_channels, num_latents
        self.fc1 = nn.Linear(IMAGE_SIZE * IMAGE_SIZE * num_channels, 1200)
        self.fc2 = nn.Linear(1200, 1200)
        self.mean = nn.Linear(1200, num_latents)
        self.logvar = nn.Linear(1200, num_latents)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_images(x, self.num_channels)
        h = F.relu(self.fc2(F.relu(self.fc1(_flatten_nhwc(x)))))
        return self.mean(h), self.logvar(h)


class FCDecoder(nn.Module):
    """disentanglement_lib's ``fc_decoder``: 1200 tanh -> 1200 tanh -> 1200 tanh -> 64*64*C logits."""

    def __init__(self, num_channels: int, num_latents: int = 10):
        super().__init__()
        self.num_channels, self.num_latents = num_channels, num_latents
        self.fc1 = nn.Linear(num_latents, 1200)
        self.fc2 = nn.Linear(1200, 1200)
        self.fc3 = nn.Linear(1200, 1200)
        self.out = nn.Linear(1200, IMAGE_SIZE * IMAGE_SIZE * num_channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.fc3(torch.tanh(self.fc2(torch.tanh(self.fc1(z))))))
        return _unflatten_nhwc(self.out(h), self.num_channels, IMAGE_SIZE, IMAGE_SIZE).contiguous()


class Discriminator(nn.Module):
    """FactorVAE's discriminator (``fc_discriminator``): 6 dense layers of 1000, leaky ReLU 0.2, 2 logits.

    Logit 0 is the class "sample of q(z)" (real codes), logit 1 "sample of prod_j q(z_j)" (codes
    permuted dimension-wise).  ``forward(z, detach_parameters=True)`` evaluates the same function with
    the weights cut from autograd, so a loss through it sends gradients to ``z`` only.
    """

    def __init__(
        self, num_latents: int = 10, hidden: int = 1000, depth: int = 6, negative_slope: float = 0.2
    ):
        super().__init__()
        self.negative_slope = negative_slope
        sizes = [num_latents] + [hidden] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.logits = nn.Linear(hidden, 2)

    def forward(self, z: torch.Tensor, detach_parameters: bool = False) -> torch.Tensor:
        def p(t: torch.Tensor) -> torch.Tensor:
            return t.detach() if detach_parameters else t

        h = z.flatten(1)
        for layer in self.hidden:
            h = F.leaky_relu(F.linear(h, p(layer.weight), p(layer.bias)), self.negative_slope)
        return F.linear(h, p(self.logits.weight), p(self.logits.bias))

    @staticmethod
    def clipped_probabilities(logits: torch.Tensor) -> torch.Tensor:
        """softmax(logits) clipped to [1e-6, 1 - 1e-6], as disentanglement_lib's ``make_discriminator``."""
        return torch.softmax(logits.float(), dim=1).clamp(1e-6, 1 - 1e-6)


def make_encoder(
    architecture: str, num_channels: int, num_latents: int, encoder_kernels: str = "dlib"
) -> nn.Module:
    if architecture == "conv":
        return ConvEncoder(num_channels, num_latents, encoder_kernels)
    if architecture == "fc":
        if encoder_kernels not in ENCODER_KERNELS:
            raise ValueError(f"encoder_kernels must be one of {ENCODER_KERNELS}, got {encoder_kernels!r}")
        return FCEncoder(num_channels, num_latents)
    raise ValueError(f"architecture must be 'conv' or 'fc', got {architecture!r}")


def make_decoder(architecture: str, num_channels: int, num_latents: int) -> nn.Module:
    if architecture == "conv":
        return DeconvDecoder(num_channels, num_latents)
    if architecture == "fc":
        return FCDecoder(num_channels, num_latents)
    raise ValueError(f"architecture must be 'conv' or 'fc', got {architecture!r}")

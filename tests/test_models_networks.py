"""untwine.models.networks: shapes, TF "same" padding, TF layouts and TF initialisation."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from untwine.models import build_model
from untwine.models.networks import (
    Conv2dSame,
    ConvEncoder,
    ConvTranspose2dSame,
    DeconvDecoder,
    Discriminator,
    FCDecoder,
    FCEncoder,
    _flatten_nhwc,
    _unflatten_nhwc,
    reset_parameters_tf,
    tf_fans,
    tf_same_padding,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------------
# shapes and layer structure
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kernels", ["dlib", "paper"])
def test_conv_shapes(channels, kernels):
    model = build_model("beta_vae", channels, encoder_kernels=kernels, init_generator=_gen())
    x = torch.rand(5, channels, 64, 64, generator=_gen(1))
    mean, logvar = model.encode(x)
    assert mean.shape == logvar.shape == (5, 10) and mean.dtype == torch.float32
    logits = model.decode(mean)
    assert logits.shape == (5, channels, 64, 64)
    # Intermediate maps: 64 -> 32 -> 16 -> 8 -> 4 with TF "same" for both kernel variants.
    enc = model.encoder
    h = x
    for conv, size, ch in ((enc.conv1, 32, 32), (enc.conv2, 16, 32), (enc.conv3, 8, 64), (enc.conv4, 4, 64)):
        h = F.relu(conv(h))
        assert h.shape == (5, ch, size, size)
    k34 = 2 if kernels == "dlib" else 4
    assert enc.conv1.kernel_size == enc.conv2.kernel_size == (4, 4)
    assert enc.conv3.kernel_size == enc.conv4.kernel_size == (k34, k34)
    assert [tuple(p.shape) for p in enc.parameters()] == [
        (32, channels, 4, 4),
        (32,),
        (32, 32, 4, 4),
        (32,),
        (64, 32, k34, k34),
        (64,),
        (64, 64, k34, k34),
        (64,),
        (256, 1024),
        (256,),
        (10, 256),
        (10,),
        (10, 256),
        (10,),
    ]
    dec = model.decoder
    assert [tuple(p.shape) for p in dec.parameters()] == [
        (256, 10),
        (256,),
        (1024, 256),
        (1024,),
        (64, 64, 4, 4),
        (64,),
        (64, 32, 4, 4),
        (32,),
        (32, 32, 4, 4),
        (32,),
        (32, channels, 4, 4),
        (channels,),
    ]


@pytest.mark.parametrize("channels", [1, 3])
def test_fc_shapes_and_structure(channels):
    model = build_model("vae", channels, num_latents=6, architecture="fc", init_generator=_gen())
    assert isinstance(model.encoder, FCEncoder) and isinstance(model.decoder, FCDecoder)
    x = torch.rand(3, channels, 64, 64, generator=_gen(1))
    mean, logvar = model.encode(x)
    assert mean.shape == logvar.shape == (3, 6)
    assert model.decode(mean).shape == (3, channels, 64, 64)
    assert [tuple(p.shape) for p in model.encoder.parameters()] == [
        (1200, 4096 * channels),
        (1200,),
        (1200, 1200),
        (1200,),
        (6, 1200),
        (6,),
        (6, 1200),
        (6,),
    ]
    assert [tuple(p.shape) for p in model.decoder.parameters()] == [
        (1200, 6),
        (1200,),
        (1200, 1200),
        (1200,),
        (1200, 1200),
        (1200,),
        (4096 * channels, 1200),
        (4096 * channels,),
    ]
    # The FC decoder uses tanh (dlib's fc_decoder): hidden units are bounded by 1.
    dec, z = model.decoder, torch.randn(4, 6, generator=_gen(2)) * 50
    h = torch.tanh(dec.fc3(torch.tanh(dec.fc2(torch.tanh(dec.fc1(z))))))
    expected = _unflatten_nhwc(dec.out(h), channels, 64, 64)
    torch.testing.assert_close(dec(z), expected)


def test_wrong_image_shape_raises():
    model = build_model("vae", 1, init_generator=_gen())
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 64, 64\)"):
        model.encode(torch.rand(2, 64, 64, 1))
    with pytest.raises(ValueError, match="encoder_kernels must be one of"):
        build_model("vae", 1, encoder_kernels="k3", init_generator=0)


# --------------------------------------------------------------------------------------------------
# TF "same" padding
# --------------------------------------------------------------------------------------------------
def test_tf_same_padding_values():
    # k4 s2 on an even input pads one pixel on each side; k2 s2 pads nothing.
    assert tf_same_padding(64, 4, 2) == (1, 1)
    assert tf_same_padding(32, 4, 2) == (1, 1)
    assert tf_same_padding(16, 2, 2) == (0, 0)
    assert tf_same_padding(8, 2, 2) == (0, 0)
    # Odd totals put the extra pixel after (right / bottom).
    assert tf_same_padding(5, 4, 2) == (1, 2)
    assert tf_same_padding(64, 3, 2) == (0, 1)
    assert tf_same_padding(7, 3, 1) == (1, 1)
    assert tf_same_padding(4, 1, 2) == (0, 0)


def _tf_same_conv_reference(x, w, stride):
    """Naive numpy conv with TF "same" semantics: out = ceil(n / s), window start = i * s - pad_before."""
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    oh, ow = -(-h // stride), -(-wd // stride)
    pt = max((oh - 1) * stride + k - h, 0) // 2
    pl = max((ow - 1) * stride + k - wd, 0) // 2
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            for di in range(k):
                for dj in range(k):
                    r, q = i * stride + di - pt, j * stride + dj - pl
                    if 0 <= r < h and 0 <= q < wd:
                        out[:, :, i, j] += np.einsum("nc,oc->no", x[:, :, r, q], w[:, :, di, dj])
    return out


@pytest.mark.parametrize(
    "size,kernel,stride", [(8, 4, 2), (7, 4, 2), (8, 2, 2), (8, 3, 2), (7, 3, 1), (6, 4, 1)]
)
def test_conv2d_same_matches_tf_reference(size, kernel, stride):
    layer = Conv2dSame(2, 3, kernel, stride).double()
    with torch.no_grad():
        layer.bias.zero_()
    x = torch.rand(2, 2, size, size, generator=_gen(3), dtype=torch.float64)
    expected = _tf_same_conv_reference(x.numpy(), layer.weight.detach().numpy(), stride)
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    static = Conv2dSame(2, 3, kernel, stride, input_size=size).double()
    static.load_state_dict(layer.state_dict())
    torch.testing.assert_close(static(x), layer(x))


def test_conv2d_same_known_answer_with_asymmetric_padding():
    # 5x5 ones, 4x4 ones kernel, stride 2: TF pads (1, 2), so the last window sees only 2x2 pixels.
    layer = Conv2dSame(1, 1, 4, 2)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.zero_()
    out = layer(torch.ones(1, 1, 5, 5))[0, 0]
    torch.testing.assert_close(out, torch.tensor([[9.0, 12, 6], [12, 16, 8], [6, 8, 4]]))
    # On the study's even sizes the padding is symmetric and equals PyTorch's padding=1.
    x = torch.rand(2, 1, 64, 64, generator=_gen(4))
    layer64 = Conv2dSame(1, 4, 4, 2)
    torch.testing.assert_close(layer64(x), F.conv2d(x, layer64.weight, layer64.bias, 2, 1))


@pytest.mark.parametrize(
    "size,kernel,stride", [(4, 4, 2), (5, 4, 2), (4, 3, 2), (3, 2, 2), (4, 1, 2), (4, 5, 2)]
)
def test_conv_transpose_same_is_gradient_of_tf_same_conv(size, kernel, stride):
    """TF's conv2d_transpose(padding="same") is the input-gradient of conv2d(padding="same") on an
    input ``stride`` times larger; our layer must equal that vector-Jacobian product."""
    deconv = ConvTranspose2dSame(3, 2, kernel, stride).double()
    with torch.no_grad():
        deconv.bias.zero_()
    y = torch.rand(2, 3, size, size, generator=_gen(5), dtype=torch.float64)
    out_size = size * stride
    conv = Conv2dSame(2, 3, kernel, stride).double()
    with torch.no_grad():
        conv.weight.copy_(deconv.weight)  # both (in=2 / out=3) x ... in their own convention
        conv.bias.zero_()
    x = torch.zeros(2, 2, out_size, out_size, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(conv(x), x, grad_outputs=y)
    out = deconv(y)
    assert out.shape == (2, 2, out_size, out_size)
    torch.testing.assert_close(out, grad, rtol=1e-12, atol=1e-12)
    static = ConvTranspose2dSame(3, 2, kernel, stride, input_size=size).double()
    static.load_state_dict(deconv.state_dict())
    torch.testing.assert_close(static(y), out)


def test_decoder_transposed_convs_equal_pytorch_padding_one():
    dec = DeconvDecoder(1)
    h = torch.rand(2, 64, 4, 4, generator=_gen(6))
    ref = F.conv_transpose2d(h, dec.deconv1.weight, dec.deconv1.bias, stride=2, padding=1)
    assert ref.shape == (2, 64, 8, 8)
    torch.testing.assert_close(dec.deconv1(h), ref, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------
# TF (NHWC) flatten / reshape order
# --------------------------------------------------------------------------------------------------
def test_flatten_uses_tf_nhwc_order():
    n, c, h, w = 2, 3, 4, 5
    x = torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w)
    flat = _flatten_nhwc(x)
    for ci, hi, wi in ((0, 0, 1), (2, 3, 4), (1, 2, 0)):
        assert flat[1, (hi * w + wi) * c + ci] == x[1, ci, hi, wi]
    torch.testing.assert_close(_unflatten_nhwc(flat, c, h, w), x, rtol=0, atol=0)
    # channels_last input flattens without a copy
    cl = x.contiguous(memory_format=torch.channels_last)
    assert _flatten_nhwc(cl).data_ptr() == cl.data_ptr()


def test_encoder_dense_layer_sees_nhwc_features():
    enc = ConvEncoder(1)
    captured = {}
    enc.fc.register_forward_hook(lambda m, inp, out: captured.update(features=inp[0]))
    x = torch.rand(2, 1, 64, 64, generator=_gen(7))
    enc(x)
    h = x
    for conv in (enc.conv1, enc.conv2, enc.conv3, enc.conv4):
        h = F.relu(conv(h))
    torch.testing.assert_close(captured["features"], h.permute(0, 2, 3, 1).reshape(2, 1024))


# --------------------------------------------------------------------------------------------------
# initialisation
# --------------------------------------------------------------------------------------------------
def test_tf_fans():
    assert tf_fans(torch.nn.Linear(7, 5)) == (7, 5)
    assert tf_fans(Conv2dSame(3, 32, 4, 2)) == (48, 512)
    assert tf_fans(ConvTranspose2dSame(32, 3, 4, 2)) == (48, 512)


@pytest.mark.parametrize("name", ["beta_vae", "factor_vae"])
def test_glorot_uniform_statistics(name):
    model = build_model(name, 3, init_generator=_gen(8))
    checked = 0
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear | torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            continue
        fan_in, fan_out = tf_fans(module)
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        w = module.weight.detach().double()
        assert float(w.abs().max()) <= limit
        assert torch.count_nonzero(module.bias) == 0
        if w.numel() >= 20000:  # variance estimate within ~1% (3.5 sigma at n = 20k is < 3%)
            assert float(w.var()) == pytest.approx(2.0 / (fan_in + fan_out), rel=0.03)
            assert float(w.abs().max()) > 0.99 * limit
            checked += 1
    assert checked == (9 if name == "factor_vae" else 4)
    # spot values: dlib conv3 (2x2, 32 -> 64) and the last transposed conv (32 -> 3)
    assert 2.0 / (4 * 32 + 4 * 64) == pytest.approx(1 / 192)
    enc = model.encoder
    assert float(enc.conv3.weight.detach().abs().max()) <= math.sqrt(6 / (4 * 32 + 4 * 64))
    assert float(model.decoder.deconv4.weight.detach().abs().max()) <= math.sqrt(6 / (16 * 35))


def test_init_generator_is_deterministic_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = build_model("factor_vae", 1, init_generator=_gen(11)).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    b = build_model("factor_vae", 1, init_generator=_gen(11)).state_dict()
    c = build_model("factor_vae", 1, init_generator=_gen(12)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["encoder.conv1.weight"], c["encoder.conv1.weight"])
    # An int seed is a new CPU generator with that seed.
    d = build_model("factor_vae", 1, init_generator=11).state_dict()
    assert all(torch.equal(a[k], d[k]) for k in a)
    reset_parameters_tf(torch.nn.Linear(3, 3), _gen(0))


# --------------------------------------------------------------------------------------------------
# discriminator
# --------------------------------------------------------------------------------------------------
def test_discriminator_structure_and_detached_weights():
    disc = Discriminator(10)
    assert [tuple(p.shape) for p in disc.parameters()] == (
        [(1000, 10), (1000,)] + [(1000, 1000), (1000,)] * 5 + [(2, 1000), (2,)]
    )
    reset_parameters_tf(disc, _gen(0))
    z = torch.randn(4, 10, generator=_gen(1), requires_grad=True)
    h = z
    for layer in disc.hidden:
        h = layer(h)
        h = torch.where(h > 0, h, 0.2 * h)
    expected = disc.logits(h)
    torch.testing.assert_close(disc(z), expected)
    out = disc(z, detach_parameters=True)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert z.grad is not None and all(p.grad is None for p in disc.parameters())
    probs = Discriminator.clipped_probabilities(torch.tensor([[30.0, -30.0], [0.0, 0.0]]))
    torch.testing.assert_close(probs, torch.tensor([[1 - 1e-6, 1e-6], [0.5, 0.5]]))


# --------------------------------------------------------------------------------------------------
# memory formats, tracing
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_channels_last_gives_same_outputs(channels):
    model = build_model("beta_vae", channels, init_generator=_gen(9))
    x = torch.rand(4, channels, 64, 64, generator=_gen(10))
    mean, logvar = model.encode(x)
    logits = model.decode(mean)
    cl = build_model("beta_vae", channels, init_generator=_gen(9)).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    mean_cl, logvar_cl = cl.encode(x_cl)
    logits_cl = cl.decode(mean_cl)
    torch.testing.assert_close(mean_cl, mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logvar_cl, logvar, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits_cl, logits, rtol=1e-4, atol=1e-4)
    # a channels_last input into the default (NCHW) model works too
    torch.testing.assert_close(model.encode(x_cl)[0], mean, rtol=1e-4, atol=1e-5)


def test_trace_is_clean():
    model = build_model("beta_vae", 1, init_generator=_gen(0)).eval()

    class Wrapper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            mean = self.m.encode(x)[0]
            return mean, self.m.decode(mean)

    x = torch.rand(2, 1, 64, 64, generator=_gen(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        with torch.no_grad():
            traced = torch.jit.trace(Wrapper(model), x)
    x5 = torch.rand(5, 1, 64, 64, generator=_gen(2))
    with torch.no_grad():
        torch.testing.assert_close(traced(x5)[1], model.decode(model.encode(x5)[0]))

"""Pictures of models: traversals, reconstructions, prior samples, latent-cycle GIFs, curves, metric heatmaps.

Most checks use a hand-built model whose decoder draws a blob at x = 32 + 14 tanh(z0), so what a
traversal or an animation must show is known exactly.
"""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from untwine.visualisation import animations, curves, metric_plots, traversals

SIZE = 64


class BlobModel(torch.nn.Module):
    """decode(z): a Gaussian blob centred at x = 32 + 14 tanh(z0), y = 32; encode inverts it for z0.

    Latents 1.. are ignored by the decoder and encoded as exactly the prior (KL 0: inactive).
    With 3 channels the blob is orange on a blue background.
    """

    def __init__(self, num_channels=1, num_latents=3):
        super().__init__()
        self.num_channels, self.num_latents = num_channels, num_latents
        self.register_buffer("grid", torch.arange(SIZE, dtype=torch.float32))

    def centre(self, z):
        return 32.0 + 14.0 * torch.tanh(z[:, 0])

    def decode(self, z):
        x = self.centre(z)[:, None, None]
        g = self.grid
        blob = torch.exp(-((g[None, None, :] - x) ** 2 + (g[None, :, None] - 32.0) ** 2) / (2 * 4.0**2))
        if self.num_channels == 1:
            image = blob[:, None]
        else:
            foreground = torch.tensor([1.0, 0.55, 0.1])[None, :, None, None]
            background = torch.tensor([0.1, 0.2, 0.8])[None, :, None, None]
            image = blob[:, None] * foreground + (1 - blob[:, None]) * background
        image = image.clamp(1e-4, 1 - 1e-4)
        return torch.log(image) - torch.log1p(-image)  # logits

    def encode(self, x):
        weight = (x.mean(1) - x.mean(1).amin(dim=(1, 2), keepdim=True)).clamp_min(0)
        if self.num_channels == 3:  # the blob is where red dominates
            weight = (x[:, 0] - x[:, 2]).clamp_min(0)
        cx = (weight.sum(1) * self.grid).sum(1) / weight.sum((1, 2)).clamp_min(1e-6)
        z0 = torch.atanh(((cx - 32.0) / 14.0).clamp(-0.999, 0.999))
        mean = torch.zeros(x.shape[0], self.num_latents)
        mean[:, 0] = z0
        logvar = torch.zeros_like(mean)
        logvar[:, 0] = -4.0
        return mean, logvar


def centre_of_mass_x(image):
    weight = np.asarray(image, dtype=np.float64)
    weight = weight[..., 0] - weight[..., 2] if weight.shape[-1] == 3 else weight[..., 0]
    weight = np.clip(weight - weight.min(), 0, None)
    return float((weight.sum(0) * np.arange(weight.shape[1])).sum() / weight.sum())


def gif_frames(data):
    image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    assert image.format == "GIF"
    return image, [
        np.asarray(frame.convert("RGB")).astype(np.int16) for frame in ImageSequence.Iterator(image)
    ]


# -- cycles -------------------------------------------------------------------------------------------
def test_triangle_wave_cycles_from_start_to_both_ends_and_back():
    wave = animations.triangle_wave(0.5, 8)
    np.testing.assert_allclose(wave, [0.5, 0.75, 1.0, 0.75, 0.5, 0.25, 0.0, 0.25])
    np.testing.assert_allclose(
        animations.triangle_wave(7.0, 4), [1.0, 0.5, 0.0, 0.5]
    )  # start clipped into [0, 1]

    values = animations.cycle_interval(0.3, 40, -2.0, 2.0)
    step = 8.0 / 40
    assert (
        values[0] == pytest.approx(0.3)
        and 2.0 - step <= values.max() <= 2.0
        and -2.0 <= values.min() <= -2.0 + step
    )
    assert np.all(np.abs(np.diff(np.r_[values, values[0]])) <= step + 1e-9)  # loops without a jump
    assert np.all(animations.cycle_interval(0.3, 5, 1.0, 1.0) == 1.0)  # empty range: still

    gauss = animations.cycle_gaussian(0.0, 20)
    assert gauss[0] == pytest.approx(0.0, abs=1e-9)
    assert gauss.max() == pytest.approx(3.0902, abs=1e-3) and gauss.min() == pytest.approx(-3.0902, abs=1e-3)
    fitted = animations.cycle_gaussian(5.0, 20, loc=5.0, scale=0.5)
    assert fitted[0] == pytest.approx(5.0) and fitted.max() == pytest.approx(5.0 + 0.5 * 3.0902, abs=1e-3)


def test_cycle_values_of_every_kind():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(50, 4)) * [1.0, 0.1, 3.0, 0.0]
    logvars = np.full((50, 4), -2.0)
    base = means[0]
    for kind in animations.CYCLES:
        values = animations.cycle_values(kind, base, means, logvars, num_frames=12)
        assert values.shape == (12, 4) and values.dtype == np.float32 and np.isfinite(values).all()
    minmax = animations.cycle_values("minmax_interval", base, means, logvars, 12)
    np.testing.assert_allclose(minmax[0], base, rtol=1e-5, atol=1e-6)
    assert np.all(minmax[:, 3] == 0.0)  # a latent whose codes never change stays still
    span = means.max(0) - means.min(0)
    assert np.all(minmax.max(0) <= means.max(0) + 1e-6) and np.all(
        minmax.max(0) >= means.max(0) - span / 6 - 1e-6
    )
    loc, scale = animations.fitted_gaussian(means, logvars)
    conf = animations.cycle_values("conf_interval", base, means, logvars, 12)
    assert np.all(conf.max(0) <= loc + 2 * scale + 1e-5) and np.all(conf.min(0) >= loc - 2 * scale - 1e-5)
    with pytest.raises(ValueError, match="unknown cycle"):
        animations.cycle_values("spiral", base, means, logvars)


# -- traversals, reconstructions, samples ----------------------------------------------------------
def test_traversal_of_the_position_latent_moves_the_blob_monotonically():
    model = BlobModel()
    code = np.array([0.2, 0.0, 0.0], dtype=np.float32)
    values = np.linspace(-2, 2, 9)
    traversal = traversals.latent_traversal(model, code, values)
    assert traversal.shape == (3, 9, SIZE, SIZE, 1) and traversal.dtype == np.float32
    assert traversal.min() >= 0.0 and traversal.max() <= 1.0
    xs = [centre_of_mass_x(image) for image in traversal[0]]
    assert np.all(np.diff(xs) > 0.5), xs  # left to right, every step
    assert xs[0] < 22 and xs[-1] > 42
    for row in traversal[1:]:  # ignored latents: nothing moves
        assert np.abs(row - row[0]).max() < 1e-6

    relative = traversals.latent_traversal(model, code, [-1.0, 0.0, 1.0], dimensions=[0], relative=True)
    np.testing.assert_allclose(relative[0, 1], traversals.decode(model, code[None])[0], atol=1e-6)


def test_traversal_figure_labels_rows_with_kl_and_grey_for_inactive_latents():
    model = BlobModel()
    xs = np.linspace(21, 43, 16)
    images = traversals.decode(model, np.stack([np.arctanh((xs - 32) / 14), 0 * xs, 0 * xs], 1))
    mean, logvar = traversals.encode(model, images)
    np.testing.assert_allclose(mean[:, 0], np.arctanh((xs - 32) / 14), atol=0.05)
    kl = traversals.kl_per_latent(mean, logvar)
    assert kl[0] > 0.5 and kl[1] == 0.0 and kl[2] == 0.0
    labels, colours = traversals.latent_labels(kl, range(3))
    assert (
        labels[0].startswith("z0  KL ") and "inactive" not in labels[0] and labels[1].endswith("(inactive)")
    )
    assert colours[0] != colours[1]

    figure = traversals.traversal_image(model, images, base_index=3, steps=7)
    assert figure.dtype == np.uint8 and figure.ndim == 3 and figure.shape[2] == 3
    grid_height, grid_width = 3 * (SIZE + 2) + 2, 7 * (SIZE + 2) + 2
    assert figure.shape[0] > grid_height and figure.shape[1] > grid_width + 40  # header on top, labels left
    label_column = figure[-grid_height:, : figure.shape[1] - grid_width]
    assert (label_column < 128).any()  # text was drawn
    # the grid itself is on the right, under the header
    first = traversals.latent_traversal(model, mean[3], np.linspace(-2, 2, 7))[0, 0, ..., 0]
    np.testing.assert_allclose(
        figure[-grid_height:, -grid_width:][2 : 2 + SIZE, 2 : 2 + SIZE, 0], first * 255, atol=1
    )


def test_reconstructions_and_prior_samples():
    model = BlobModel(num_channels=3)
    codes = np.array([[-1.0, 0, 0], [0.0, 0, 0], [1.0, 0, 0]], dtype=np.float32)
    images = traversals.decode(model, codes)
    assert images.shape == (3, SIZE, SIZE, 3) and 0 <= images.min() and images.max() <= 1
    recon = traversals.reconstruct(model, images)
    np.testing.assert_allclose(recon, images, atol=0.02)
    pairs = traversals.reconstruction_pairs(images, recon, columns=2)
    assert pairs.shape == (2 * SIZE + 3 * 2, 2 * (2 * SIZE) + 3 * 2, 3)

    a_codes, a_images = traversals.sample_prior(model, 5, seed=1)
    b_codes, _ = traversals.sample_prior(model, 5, seed=1)
    c_codes, _ = traversals.sample_prior(model, 5, seed=2)
    np.testing.assert_array_equal(a_codes, b_codes)
    assert (
        not np.array_equal(a_codes, c_codes)
        and a_codes.shape == (5, 3)
        and a_images.shape == (5, SIZE, SIZE, 3)
    )
    grid = traversals.sample_grid(a_images, columns=4)
    assert grid.shape == (2 * SIZE + 3 * 2, 4 * SIZE + 5 * 2, 3)
    with pytest.raises(ValueError, match="num_latents"):
        traversals.sample_prior(torch.nn.Identity(), 2)


# -- GIFs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [3, 1])
def test_latent_cycle_gif_keeps_frames_and_colour(tmp_path, channels):
    model = BlobModel(num_channels=channels)
    means = np.array([[0.3, 0.0, 0.0], [-1.0, 0.0, 0.0], [1.2, 0.0, 0.0]])
    logvars = np.full_like(means, -1.0)
    written = animations.write_latent_cycles(
        model, means, logvars, tmp_path, num_animations=2, num_frames=12, fps=10
    )
    assert sorted(written) == sorted(animations.CYCLES)
    for kind, paths in written.items():
        assert [p.name for p in paths] == [f"{kind}_cycle0.gif", f"{kind}_cycle1.gif"]
    expected = animations.latent_cycle_gif(model, "fixed_interval", means[0], means, logvars, 12)
    assert expected.shape[0] == 12 and expected.dtype == np.uint8
    image, frames = gif_frames(tmp_path / "fixed_interval_cycle0.gif")
    assert image.n_frames == 12 and image.info.get("loop") == 0 and image.info.get("duration") == 100
    assert frames[0].shape == expected.shape[1:]
    assert max(np.abs(f - frames[0]).max() for f in frames[1:]) > 50  # the animation moves
    # only the position latent's cell moves; its blob goes right, then left, then back
    cell = [f[2 : 2 + SIZE, 2 : 2 + SIZE, : 3 if channels == 3 else 1] for f in frames]
    xs = np.array([centre_of_mass_x(c) for c in cell])
    turn = int(np.argmax(xs))
    assert 0 < turn < 11 and np.all(np.diff(xs[: turn + 1]) > 0)
    other = [f[2 : 2 + SIZE, 4 + SIZE : 4 + 2 * SIZE] for f in frames]
    assert all(np.array_equal(o, other[0]) for o in other)
    spread = max(np.abs(f[..., 0] - f[..., 2]).max() for f in frames)
    if channels == 3:
        assert spread > 100  # colour stayed colour
        # palette quantisation is faithful: the frames come back within a few levels
        errors = np.abs(np.stack(frames) - expected.astype(np.int16))
        assert errors.max() <= 16 and errors.mean() < 1.0
    else:
        assert spread == 0 and all(np.array_equal(f[..., 0], f[..., 1]) for f in frames)  # grey stays grey


def test_gif_bytes_colour_round_trip_and_validation():
    frames = np.zeros((6, 32, 48, 3), dtype=np.float32)
    for f in range(6):
        frames[f, ..., 0] = f / 5
        frames[f, :, :, 2] = np.linspace(0, 1, 48)
        frames[f, 4:12, 4 + 4 * f : 12 + 4 * f, 1] = 1
    image, back = gif_frames(animations.gif_bytes(frames, fps=20))
    assert image.n_frames == 6 and image.size == (48, 32) and image.info["duration"] == 50
    errors = np.abs(np.stack(back) - np.round(frames * 255))  # 6 x 48 x 2 > 256 colours: a fitted palette
    assert errors.max() <= 24 and errors.mean() < 1.0
    few = np.round(frames * 255).astype(np.uint8)
    few[..., 2] = few[..., 2] // 32 * 32  # <= 256 colours: lossless
    _, back = gif_frames(animations.gif_bytes(few))
    np.testing.assert_array_equal(np.stack(back), few)
    grey = np.linspace(0, 1, 5 * 16 * 16).reshape(5, 16, 16, 1)
    _, back = gif_frames(animations.gif_bytes(grey))
    assert all(np.array_equal(b[..., 0], b[..., 2]) for b in back)
    with pytest.raises(ValueError, match="at least one frame"):
        animations.gif_bytes([])
    with pytest.raises(ValueError, match="fps"):
        animations.gif_bytes(frames, fps=0)


def test_grid_shape():
    assert animations.grid_shape(1) == (1, 1)
    assert animations.grid_shape(10) == (2, 5)
    assert animations.grid_shape(16) == (4, 4)
    for n in range(1, 40):
        rows, columns = animations.grid_shape(n)
        assert rows * columns >= n and columns <= 4 * rows


# -- curves -----------------------------------------------------------------------------------------
def _log_records(steps=(10, 20, 30, 40)):
    return [
        {
            "step": s,
            "loss": 100.0 / s,
            "reconstruction": 90.0 / s,
            "kl": 0.1 * s,
            "c": 0.05 * s,
            "kl_per_latent": [0.05 * s, 0.05 * s, 0.0],
            "images_per_second": 1000.0,
        }
        for s in steps
    ]


def test_training_curves_from_log(tmp_path):
    records = _log_records()
    log = tmp_path / "log.jsonl"
    log.write_text(
        "".join(json.dumps(r) + "\n" for r in records[::-1]) + '{"step": 50, "loss": 1'
    )  # truncated line
    read = curves.read_log(tmp_path)
    assert [r["step"] for r in read] == [10, 20, 30, 40]
    series = curves.scalar_series(read)
    assert set(series) == {"loss", "reconstruction", "kl", "images_per_second"}
    steps, kl = curves.kl_matrix(read)
    assert kl.shape == (4, 3) and list(steps) == [10, 20, 30, 40]
    written = curves.write_training_curves(tmp_path, tmp_path / "curves")
    assert sorted(written) == ["capacity", "kl_per_latent", "loss_terms"]
    for path in written.values():
        image = Image.open(path)
        assert image.format == "PNG" and image.size[0] >= 400 and image.size[1] >= 250
    assert curves.plot_capacity([{"step": 1, "loss": 1.0}]) is None
    assert curves.plot_kl_per_latent([]) is None and curves.plot_loss_terms([]) is None
    assert curves.read_log(tmp_path / "missing") == []


# -- metrics -----------------------------------------------------------------------------------------
def test_metric_results_table_and_matrices(tmp_path):
    folder = tmp_path / "metrics" / "mean"
    folder.mkdir(parents=True)
    mi = np.arange(15, dtype=float).reshape(5, 3) / 15  # (latents, factors)
    (folder / "mig.json").write_text(
        json.dumps(
            {
                "metric": "mig",
                "values": {"discrete_mig": 0.25, "per_factor": {"a": 0.1}, "mi_matrix": mi.tolist()},
                "parameters": {"num_train": 100},
            }
        )
    )
    (folder / "dci.json").write_text(
        json.dumps(
            {
                "metric": "dci",
                "values": {"disentanglement": 0.5, "flag": True},
                "matrices": {"importance_matrix": mi.T.tolist(), "ragged": [[1, 2], [3]]},
            }
        )
    )
    (folder / "broken.json").write_text("{not json")
    (tmp_path / "metrics" / "sampled").mkdir()
    results = metric_plots.load_metric_results(tmp_path)
    assert list(results) == ["mean"] and sorted(results["mean"]) == ["dci", "mig"]
    rows = metric_plots.metric_table(results)
    assert ("mean", "mig", "discrete_mig", 0.25) in rows and ("mean", "mig", "per_factor.a", 0.1) in rows
    assert not any(key == "flag" for _, _, key, _ in rows)
    assert list(metric_plots.metric_matrices(results["mean"]["dci"])) == ["importance_matrix"]
    assert list(metric_plots.metric_matrices(results["mean"]["mig"])) == ["mi_matrix"]
    written = metric_plots.write_metric_plots(tmp_path, tmp_path / "plots", ["shape", "scale", "x"])
    assert [(w["metric"], w["name"]) for w in written] == [("dci", "importance_matrix"), ("mig", "mi_matrix")]
    for entry in written:
        assert Image.open(entry["path"]).format == "PNG"
    np.testing.assert_array_equal(metric_plots.orient_latents_by_factors(mi.T, 3), mi)
    # latents x latents (unsupervised scores) and IRS's matrix over the active latents only
    square, label, columns = metric_plots.matrix_axes(np.eye(5), ["a", "b", "c"], num_latents=5)
    assert label == "latent" and columns == [f"z{i}" for i in range(5)]
    _, label, columns = metric_plots.matrix_axes(mi.T, ["a", "b", "c"], num_latents=5)
    assert label == "factor" and columns == ["a", "b", "c"]
    irs = {
        "values": {"IRS": 0.5},
        "matrices": {"irs_matrix": mi[:2].tolist(), "active_dims": [0, 1, 0, 0, 1]},
    }
    assert metric_plots._active_rows(irs, 2, 5) == ["z1", "z4"]
    (folder / "irs.json").write_text(json.dumps({"metric": "irs", **irs}))
    (folder / "unsupervised.json").write_text(
        json.dumps(
            {
                "metric": "unsupervised",
                "values": {"mutual_info_score": 0.1},
                "matrices": {"covariance": np.eye(5).tolist()},
            }
        )
    )
    written = metric_plots.write_metric_plots(
        tmp_path, tmp_path / "plots", ["shape", "scale", "x"], num_latents=5
    )
    assert [(w["metric"], w["name"]) for w in written] == [
        ("dci", "importance_matrix"),
        ("irs", "irs_matrix"),
        ("mig", "mi_matrix"),
        ("unsupervised", "covariance"),
    ]
    assert metric_plots.load_metric_results(tmp_path / "nowhere") == {}


def test_metric_heatmaps_label_latents_with_their_kl_and_grey_collapsed_ones():
    matrix = np.array([[0.9, 0.0], [0.0, 0.0], [0.1, 0.8]])
    figure = metric_plots.plot_matrix(
        matrix, "mig: matrix", ["shape", "scale"], row_names=["z0", "z1", "z2"], row_kl=[2.5, 0.004, 1.25]
    )
    axis = figure.axes[0]
    labels = [tick.get_text() for tick in axis.get_yticklabels()]
    assert labels == ["z0  KL 2.50", "z1  KL 0.00", "z2  KL 1.25"]
    colours = [tick.get_color() for tick in axis.get_yticklabels()]
    assert colours[1] == "#999999" and colours[0] != "#999999" and colours[2] != "#999999"
    assert [t.get_text() for t in axis.get_xticklabels()] == ["shape", "scale"]
    # the collapsed row is veiled: one white band over row 1 only
    bands = [p for p in axis.patches if p.get_alpha() == 0.7]
    assert len(bands) == 1 and bands[0].get_y() == 0.5


def test_visualize_is_an_alias_of_visualise(capsys):
    from untwine.cli import main as cli_main

    with pytest.raises(SystemExit) as stopped:
        cli_main(["visualize", "--help"])
    assert stopped.value.code == 0 and "RUN_DIR/report.html" in capsys.readouterr().out

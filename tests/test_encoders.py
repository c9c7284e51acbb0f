"""Scoring encoders from outside untwine: TorchScript, ONNX, a Python callable, precomputed codes --
cross-checked against the same model scored from Python, and every bad input refused before work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from untwine.cli import main
from untwine.data import get_dataset
from untwine.metrics import evaluate_representation, mig
from untwine.metrics.context import metric_rng
from untwine.models.networks import ConvEncoder

SMALL = [
    "--metric-param",
    "mig.num_train=400",
    "--metric-param",
    "sap_score.num_train=400",
    "--metric-param",
    "sap_score.num_test=200",
]
PARAMS = {"mig": {"num_train": 400}, "sap_score": {"num_train": 400, "num_test": 200}}


class NHWCEncoder(torch.nn.Module):
    """untwine's dlib convolutional encoder behind the outside contract: NHWC images -> (mean, logvar)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = ConvEncoder(num_channels=1, num_latents=6)

    def forward(self, images):
        return self.encoder(images.permute(0, 3, 1, 2).contiguous())


@pytest.fixture(scope="module")
def module():
    return NHWCEncoder().eval()


@pytest.fixture(scope="module")
def torchscript_file(module, tmp_path_factory):
    path = tmp_path_factory.mktemp("enc") / "encoder.pt"
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(module, torch.rand(2, 64, 64, 1)), str(path))
    return path


def python_mean(module):
    def encode(images):
        with torch.no_grad():
            return module(torch.from_numpy(np.asarray(images, dtype=np.float32)))[0].numpy()

    encode.deterministic = True
    return encode


def read_results(out, representation="mean"):
    return {p.stem: json.loads(p.read_text()) for p in (out / "metrics" / representation).glob("*.json")}


def test_torchscript_encoder_scores_as_the_same_module_from_python(
    module, torchscript_file, tmp_path, capsys
):
    out = tmp_path / "ts"
    args = ["evaluate", "--torchscript", str(torchscript_file), "--dataset", "procedural_dsprites"]
    assert main([*args, "--metrics", "mig,sap", *SMALL, "--out", str(out)]) == 0
    assert "results written to" in capsys.readouterr().out
    record = json.loads((out / "encoder.json").read_text())
    assert record["kind"] == "torchscript" and record["outputs"] == "mean_logvar" and record["code_dim"] == 6
    results = read_results(out)
    expected = evaluate_representation(
        get_dataset("procedural_dsprites"), python_mean(module), ["mig", "sap"], params=PARAMS, n_jobs=1
    )
    for name in ("mig", "sap_score"):
        assert results[name]["values"] == expected[name]["values"]
    # An untwine-independent (mean, logvar) encoder also gives the sampled representation.
    assert (
        main([*args, "--metrics", "mig", *SMALL[:2], "--representation", "sampled", "--out", str(out)]) == 0
    )
    sampled = read_results(out, "sampled")["mig"]
    assert sampled["representation"] == "sampled"
    assert sampled["values"]["discrete_mig"] != results["mig"]["values"]["discrete_mig"]
    # The run report works on such a directory: metric sections, no model pictures or curves.
    assert main(["visualise", str(out)]) == 0
    report = (out / "report.html").read_text()
    assert "torchscript encoder encoder.pt on procedural_dsprites" in report
    assert "discrete_mig" in report and "<img" in report  # the scores and their heatmaps
    assert 'id="traversals"' not in report and 'id="curves"' not in report  # no model: left out
    manifest = json.loads((out / "visualisation" / "manifest.json").read_text())
    assert manifest["metric_plots"] and "traversals" not in manifest


def test_onnx_export_of_our_encoder_scores_like_its_torchscript(module, torchscript_file, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tmp_path / "encoder.onnx"
    with torch.no_grad():
        torch.onnx.export(
            module,
            (torch.rand(2, 64, 64, 1),),
            str(path),
            dynamo=False,
            input_names=["images"],
            output_names=["mean", "logvar"],
            dynamic_axes={"images": {0: "n"}, "mean": {0: "n"}, "logvar": {0: "n"}},
        )
    out = tmp_path / "onnx"
    args = ["evaluate", "--onnx", str(path), "--dataset", "procedural_dsprites", "--metrics", "mig"]
    assert main([*args, *SMALL[:2], "--out", str(out)]) == 0
    assert json.loads((out / "encoder.json").read_text())["outputs"] == "mean_logvar"
    from untwine.encoders import load_encoder

    dataset = get_dataset("procedural_dsprites")
    images = dataset.sample_observations_from_factors(dataset.sample_factors(64, 1), 1)
    onnx_encoder, _ = load_encoder("onnx", str(path), dataset)
    ts_encoder, _ = load_encoder("torchscript", str(torchscript_file), dataset)
    for a, b in zip(
        onnx_encoder.encode_mean_logvar(images), ts_encoder.encode_mean_logvar(images), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # two runtimes, float32 kernels
    # MIG bins the codes: a float32 difference moves a point across a bin edge only at an edge, so the
    # scores agree to within one of the 400 points' worth of mutual information.
    ts_out = tmp_path / "ts"
    assert (
        main(
            [
                "evaluate",
                "--torchscript",
                str(torchscript_file),
                "--dataset",
                "procedural_dsprites",
                "--metrics",
                "mig",
                *SMALL[:2],
                "--out",
                str(ts_out),
            ]
        )
        == 0
    )
    onnx_mig = read_results(out)["mig"]["values"]["discrete_mig"]
    ts_mig = read_results(ts_out)["mig"]["values"]["discrete_mig"]
    assert abs(onnx_mig - ts_mig) < 0.01


def test_callable_encoders_deterministic_and_sampling(tmp_path):
    (tmp_path / "user_encoders.py").write_text(
        "import numpy as np\n"
        "def centre(images):\n"
        "    images = np.asarray(images)[..., 0]\n"
        "    mass = images.sum(axis=(1, 2)) + 1e-6\n"
        "    ys, xs = np.mgrid[:64, :64]\n"
        "    return np.stack([(images * xs).sum(axis=(1, 2)) / mass, (images * ys).sum(axis=(1, 2)) / mass,"
        " mass], axis=1)\n"
        "_rng = np.random.default_rng(0)\n"
        "def noisy(images):\n"
        "    return centre(images) + _rng.normal(size=(len(images), 3))\n"
    )
    target = f"{tmp_path / 'user_encoders.py'}"
    out = tmp_path / "centre"
    args = ["evaluate", "--dataset", "procedural_dsprites", "--metrics", "mig", *SMALL[:2]]
    assert main([*args, "--callable", f"{target}:centre", "--out", str(out)]) == 0
    result = read_results(out)["mig"]
    # Centre of mass recovers posX and posY (and the mass the scale): a high MIG.
    assert result["values"]["discrete_mig"] > 0.3
    assert (
        result["code_cache"]["determinism"] == "probed: same output twice" and result["code_cache"]["cached"]
    )
    assert main([*args, "--callable", f"{target}:noisy", "--out", str(tmp_path / "noisy")]) == 0
    noisy = read_results(tmp_path / "noisy")["mig"]["code_cache"]
    assert not noisy["cached"] and noisy["determinism"].startswith("probed: output differs")


def test_precomputed_codes_score_the_rows_they_were_given(tmp_path):
    dataset = get_dataset("procedural_dsprites")
    rng = np.random.default_rng(0)
    factors = dataset.sample_factors(900, rng)
    codes = factors[:, [3, 4, 1]] + rng.normal(scale=0.3, size=(900, 3))
    np.savez(tmp_path / "codes.npz", codes=codes, factors=factors)
    out = tmp_path / "out"
    args = ["evaluate", "--codes", str(tmp_path / "codes.npz"), "--dataset", "procedural_dsprites"]
    assert main([*args, "--metrics", "mig", *SMALL[:2], "--out", str(out)]) == 0
    value = read_results(out)["mig"]["values"]["discrete_mig"]
    # The shared training sample: the first 400 rows of one permutation drawn from the seed.
    order = metric_rng(0, "shared_sample").permutation(900)[:400]
    assert value == mig(codes[order], factors[order])["discrete_mig"]
    assert json.loads((out / "encoder.json").read_text())["kind"] == "codes"


def test_bad_inputs_are_refused_with_the_file_and_the_problem(tmp_path, capsys, module, torchscript_file):
    def error(*args):
        assert main(["evaluate", *args]) == 1
        return capsys.readouterr().err

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model at all")
    assert "is not a TorchScript file" in error(
        "--torchscript", str(junk), "--dataset", "procedural_dsprites", "--out", str(tmp_path / "o")
    )
    if __import__("importlib").util.find_spec("onnxruntime"):
        assert "is not an ONNX model" in error(
            "--onnx", str(junk), "--dataset", "procedural_dsprites", "--out", str(tmp_path / "o")
        )
    (tmp_path / "bad.py").write_text(
        "import numpy as np\n"
        "def flat(images):\n    return np.zeros(len(images))\n"
        "def nan(images):\n    return np.full((len(images), 2), np.nan)\n"
        "def pixels(images):\n    return np.asarray(images).reshape(len(images), -1)[:, :2]\n"
    )
    base = ["--dataset", "procedural_dsprites", "--out", str(tmp_path / "o")]
    message = error("--callable", f"{tmp_path / 'bad.py'}:flat", *base)
    assert "bad.py:flat: the encoder's codes for 4 images have shape (4,); expected (4, d)" in message
    assert "contain NaN or infinity" in error("--callable", f"{tmp_path / 'bad.py'}:nan", *base)
    assert not (tmp_path / "o").exists()  # refused sources leave no output folder
    assert "needs --dataset" in error("--torchscript", str(torchscript_file), "--out", str(tmp_path / "o"))
    assert "needs --out" in error("--torchscript", str(torchscript_file), "--dataset", "procedural_dsprites")
    assert "returns codes only" in error(
        "--callable", f"{tmp_path / 'bad.py'}:pixels", *base, "--representation", "sampled"
    )
    factors = np.random.default_rng(0).integers(0, 3, size=(10, 5))
    np.savez(tmp_path / "short.npz", codes=np.zeros((9, 2)), factors=factors)
    assert "codes has 9 rows but factors has 10" in error(
        "--codes", str(tmp_path / "short.npz"), "--out", str(tmp_path / "o"), "--metrics", "mig"
    )
    factors[3, 0] = 7  # shape has 3 values
    np.savez(tmp_path / "outside.npz", codes=np.zeros((10, 2)), factors=factors)
    assert "factors[3, 0] = 7 is outside factor 0's values 0..2" in error(
        "--codes", str(tmp_path / "outside.npz"), *base, "--metrics", "mig"
    )
    np.savez(tmp_path / "named.npz", z=np.zeros((10, 2)), y=factors)
    assert "lacks the array(s) ['codes', 'factors']" in error("--codes", str(tmp_path / "named.npz"), *base)
    factors[3, 0] = 1
    np.savez(tmp_path / "ok.npz", codes=np.random.default_rng(0).normal(size=(10, 2)), factors=factors)
    assert "beta_vae_sklearn need an encoder" in error(
        "--codes", str(tmp_path / "ok.npz"), *base, "--metrics", "beta_vae"
    )
    assert "give a RUN_DIR, or an encoder" in error("--metrics", "mig")

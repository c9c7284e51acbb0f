"""`untwine visualise RUN_DIR`: the pictures of a tiny trained run and its self-contained HTML report,
checked as files and, when headless Chromium is installed, as rendered in a browser."""

import base64
import html
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from untwine.cli import main as cli_main
from untwine.report import render_run_report
from untwine.training import TrainConfig, train
from untwine.visualisation.animations import CYCLES

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium not installed at /usr/bin/chromium (scripts/install_test_packages.sh)",
)
NUM_FRAMES = 6
MI = (np.arange(50, dtype=float).reshape(10, 5) / 50).tolist()  # (latents, factors)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 20-step AnnealedVAE run on procedural dSprites with a metric result, visualised by the CLI."""
    run_dir = tmp_path_factory.mktemp("report") / "run"
    train(
        TrainConfig.from_overrides(
            [
                "model=annealed_vae",
                "model.iteration_threshold=20",
                "dataset=procedural_dsprites",
                "steps=20",
                "batch_size=16",
                "threads=1",
                "progress=false",
                "log_every=4",
                "eval_batches=1",
                "checkpoint_every=20",
            ]
        ),
        run_dir,
    )
    metrics = run_dir / "metrics" / "mean"
    metrics.mkdir(parents=True)
    (metrics / "mig.json").write_text(
        json.dumps(
            {
                "metric": "mig",
                "values": {"discrete_mig": 0.0123},
                "matrices": {"mutual_information": MI},
                "parameters": {"num_train": 100},
            }
        )
    )
    code = cli_main(
        [
            "visualise",
            str(run_dir),
            "--num-animations",
            "1",
            "--num-frames",
            str(NUM_FRAMES),
            "--num-traversals",
            "1",
        ]
    )
    assert code == 0
    return run_dir


def _manifest(run_dir):
    return json.loads((run_dir / "visualisation" / "manifest.json").read_text())


def test_cli_writes_every_picture_with_the_right_sizes(run):
    out = run / "visualisation"
    manifest = _manifest(run)
    assert manifest["num_channels"] == 1 and len(manifest["kl_per_latent"]) == 10

    recon = Image.open(out / manifest["reconstructions"])  # 24 pairs, 6 per row
    assert recon.size == (6 * (2 * 64 + 2) + 2, 4 * (64 + 2) + 2) and recon.mode == "L"
    samples = np.asarray(Image.open(out / manifest["samples"]))  # 32 samples, 8 per row
    assert samples.shape == (4 * 66 + 2, 8 * 66 + 2) and 0 < samples.mean() < 255

    [traversal_path] = manifest["traversals"]
    traversal = np.asarray(Image.open(out / traversal_path))
    assert traversal.ndim == 3 and traversal.shape[2] == 3
    assert traversal.shape[0] > 10 * 66 + 2 and traversal.shape[1] > 9 * 66 + 2 + 60  # header, labels

    assert sorted(manifest["animations"]) == sorted(CYCLES)
    for kind in CYCLES:
        [path] = manifest["animations"][kind]
        gif = Image.open(out / path)
        assert gif.format == "GIF" and gif.info.get("loop") == 0
        assert gif.size == (5 * 66 + 2, 2 * (64 + 14 + 2) + 2)  # 10 latents in 2 rows, captions under cells
        assert 1 <= gif.n_frames <= NUM_FRAMES  # identical consecutive frames are merged
        durations = []
        for frame in ImageSequence.Iterator(gif):
            durations.append(frame.info["duration"])
            rgb = np.asarray(frame.convert("RGB")).astype(int)
            assert np.array_equal(rgb[..., 0], rgb[..., 2])  # grey data stays grey
        assert sum(durations) == NUM_FRAMES * 100  # 10 fps, whatever was merged

    assert sorted(manifest["curves"]) == ["capacity", "kl_per_latent", "loss_terms"]
    for path in manifest["curves"].values():
        assert Image.open(out / path).format == "PNG"
    [plot] = manifest["metric_plots"]
    assert (plot["metric"], plot["name"]) == ("mig", "mutual_information")
    assert Image.open(out / plot["path"]).size[0] > 200


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _expected_images(manifest):
    return (
        2
        + len(manifest["traversals"])
        + sum(len(v) for v in manifest["animations"].values())
        + len(manifest["curves"])
        + len(manifest["metric_plots"])
    )


def test_report_is_self_contained_html(run):
    text = (run / "report.html").read_text()
    parser = _Tags()
    parser.feed(text)
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    assert len(images) == _expected_images(_manifest(run)) == 12
    for attrs in images:
        assert attrs["src"].startswith(("data:image/png;base64,", "data:image/gif;base64,")) and attrs.get(
            "alt"
        )
        header, data = attrs["src"].split(",", 1)
        picture = Image.open(io.BytesIO(base64.b64decode(data)))
        assert picture.format == header[len("data:image/") :].split(";")[0].upper()
    for tag, attrs in parser.tags:  # nothing is fetched: no scripts, links, external sources
        assert tag not in ("script", "link", "iframe")
        assert not any(
            str(attrs.get(k, "")).startswith(("http:", "https:", "file:", "//")) for k in ("src", "href")
        )
    assert any(
        tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy" for tag, attrs in parser.tags
    )
    for heading in (
        "Configuration",
        "Training curves",
        "Held-out evaluation",
        "Metrics",
        "Latent traversals",
        "Animated latent cycles",
        "Reconstructions",
        "Samples from the prior",
    ):
        assert f">{heading}</h2>" in text
    assert "annealed_vae on procedural_dsprites" in text and "discrete_mig" in text and "0.0123" in text


_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target || {};
  window.__errors.push('error: ' + (e.message || (t.tagName + ' ' + String(t.src || t.href || '').slice(0, 40))));
}, true);
document.addEventListener('securitypolicyviolation', function (e) {
  window.__errors.push('csp: ' + e.violatedDirective + ' ' + e.blockedURI);
});
var __consoleError = console.error;
console.error = function () {
  window.__errors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
  __consoleError.apply(console, arguments);
};
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var out = document.createElement('pre');
  out.id = 'untwine-probe';
  out.textContent = JSON.stringify({
    images: images.length,
    broken: images.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).map(function (i) { return i.alt; }),
    widths: images.map(function (i) { return i.naturalWidth; }),
    errors: window.__errors
  });
  document.body.appendChild(out);
});
</script>"""


def _chromium(tmp_path, *arguments):
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@needs_chromium
def test_report_renders_in_headless_chromium(run, tmp_path):
    report = run / "report.html"
    text = report.read_text()
    # A test-only copy with a probe first in <head> (before the report's CSP, which forbids scripts).
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("<head>", "<head>" + _PROBE, 1))
    result = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    start = result.stdout.index('<pre id="untwine-probe">') + len('<pre id="untwine-probe">')
    probe = json.loads(html.unescape(result.stdout[start : result.stdout.index("</pre>", start)]))
    assert probe["images"] == _expected_images(_manifest(run))
    assert probe["broken"] == [] and all(width > 0 for width in probe["widths"])
    assert probe["errors"] == []
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "Refused" in line], console

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report_screenshot.png"
    screenshot.unlink(missing_ok=True)
    result = _chromium(
        tmp_path,
        "--hide-scrollbars",
        f"--screenshot={screenshot}",
        "--window-size=1200,3000",
        report.as_uri(),
    )
    assert result.returncode == 0 and screenshot.exists(), result.stderr[-2000:]
    pixels = np.asarray(Image.open(screenshot).convert("RGB"))
    assert pixels.shape == (3000, 1200, 3) and pixels.std() > 20  # a page, not a blank
    shutil.copy(report, ARTIFACTS / "report.html")


def test_report_notes_what_is_missing_instead_of_breaking(tmp_path):
    out = tmp_path / "pictures"
    out.mkdir()
    (out / "manifest.json").write_text(
        json.dumps({"traversals": ["gone.png"], "curves": {}, "animations": {}})
    )
    text = render_run_report(tmp_path, out)
    assert "config.json is missing" in text and "final_eval.json is missing" in text
    assert "No metric results" in text and "missing image: gone.png" in text and "<img" not in text


def test_cli_errors_for_a_directory_without_a_run(tmp_path, capsys):
    assert cli_main(["visualise", str(tmp_path)]) == 1
    assert "is not a run directory" in capsys.readouterr().err


def test_metrics_come_first_with_the_headline_and_factor_names(tmp_path):
    """A run directory with metric results only: the headline table (mean and sampled side by side, each
    linking to its metric), per-factor keys under the dataset's factor names, long lists folded."""
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "config": {"model": "beta_vae", "dataset": "toy"},
                "dataset": {"factor_names": ["shape", "scale"], "factor_sizes": [3, 6]},
            }
        )
    )
    for rep, mig in (("mean", 0.25), ("sampled", 0.125)):
        folder = tmp_path / "metrics" / rep
        folder.mkdir(parents=True)
        (folder / "mig.json").write_text(
            json.dumps(
                {
                    "metric": "mig",
                    "values": {"discrete_mig": mig},
                    "parameters": {"num_train": 500, "num_bins": 20},
                }
            )
        )
        values = {f"10000:test_accuracy_factor_{j}": 0.5 + j / 10 for j in range(2)}
        values.update({f"{n}:mean_test_accuracy": 0.7 for n in (10, 100, 1000, 10000)})
        values.update({f"{n}:min_test_accuracy": 0.6 for n in (10, 100, 1000, 10000)})
        values.update({f"{n}:train_accuracy_factor_0": 0.9 for n in (10, 100, 1000)})
        (folder / "downstream_task_boosted_trees.json").write_text(
            json.dumps({"metric": "downstream_task_boosted_trees", "values": values})
        )
    out = tmp_path / "pictures"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"curves": {}, "animations": {}}))
    text = render_run_report(tmp_path, out)
    sections = re.findall(r'<section id="([^"]+)">', text)
    assert sections[0] == "metrics"
    headline = text[text.index("<table>") : text.index("</table>")]
    assert re.search(
        r'<a href="#metric-mig">MIG</a></td><td>[^<]+</td><td class="num">0.25</td><td class="num">0.125</td>',
        headline,
    )
    assert "Downstream accuracy (GBT)" in headline and "BetaVAE score" not in headline  # not evaluated
    assert 'id="metric-mig"' in text and 'id="metric-downstream_task_boosted_trees"' in text
    assert "10000:test_accuracy_scale" in text and "test_accuracy_factor_1" not in text
    assert re.search(r"<details><summary>\d+ keys \(factor names", text)  # the long downstream list
    assert "<code>mig: num_train=500 (study: 10000)</code>" in text  # a smaller sample is stated


def test_factor_names_replace_indices_in_keys():
    from untwine.report.run_report import with_factor_names

    names = ["shape", "scale", "posX"]
    assert with_factor_names("100:train_accuracy_factor_2", names) == "100:train_accuracy_posX"
    assert with_factor_names("mean_fairness:pred0:sens2", names) == "mean_fairness:pred:shape:sens:posX"
    assert with_factor_names("discrete_mig", names) == "discrete_mig"
    assert with_factor_names("x_factor_7", names) == "x_factor_7"  # no such factor: left alone

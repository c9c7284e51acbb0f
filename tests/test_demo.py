"""``make demo`` end to end at a few steps: every stage runs, the reports exist, the paths are printed and
the demo's smaller evaluation samples are stated in the report; a re-run continues instead of failing."""

from __future__ import annotations

import json

from untwine import demo


def test_the_demo_runs_every_stage_and_prints_the_paths(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["--out", str(out), "--steps", "3", "--models", "beta_vae", "--metrics", "mig,factor_vae_metric"]
    assert demo.main(argv) == 0
    printed = capsys.readouterr().out
    report = (out / "runs" / "beta_vae" / "report.html").resolve()
    assert str(report) in printed and "Open the reports" in printed
    assert (out / "data_procedural_dsprites.png").exists() and (out / "data_procedural_shapes3d.png").exists()
    config = json.loads((out / "runs" / "beta_vae" / "config.json").read_text())["config"]
    assert (config["steps"], config["batch_size"], config["learning_rate"]) == (3, 32, 1e-3)
    assert config["bf16"] == demo.native_bf16()
    stored = json.loads(
        (out / "runs" / "beta_vae" / "metrics" / "mean" / "factor_vae_metric.json").read_text()
    )
    assert {k: stored["parameters"][k] for k in demo.DEMO_METRIC_PARAMS["factor_vae_metric"]} == (
        demo.DEMO_METRIC_PARAMS["factor_vae_metric"]
    )
    text = report.read_text()
    assert "num_variance_estimate" in text  # the report lists the settings that differ from the study's
    assert demo.main(argv) == 0  # a re-run finds the run finished and goes on

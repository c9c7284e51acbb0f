"""Faults injected into training runs (issue 16): bad model parameters and seeds, a second process on the
same run directory, divergence before the first checkpoint, killed checkpoint writes, duplicated
TensorBoard steps after a resume, unusable run directories, a full disk, corrupt run files, Ctrl-C."""

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from untwine.cli import main as cli_main
from untwine.models import MODELS, check_model_params
from untwine.training import (
    RunExistsError,
    TrainConfig,
    TrainingDivergedError,
    train,
)
from untwine.training.checkpoint import load_checkpoint

TINY = ["dataset=procedural_dsprites", "batch_size=16", "threads=1", "progress=false", "eval_batches=2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _sigint_as_in_a_terminal() -> None:
    """Run in the child before exec: SIGINT back to its default.  A suite started as a background job of a
    non-interactive shell (``make test &``) runs with SIGINT ignored, which every child inherits, so the
    simulated Ctrl-C would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _config(*overrides):
    return TrainConfig.from_overrides([*TINY, *overrides])


def _one_line_error(capsys, argv, *fragments):
    """``untwine ARGV`` fails with exit code 1 and one stderr line holding every fragment."""
    assert cli_main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def _extend_run(run_dir, steps):
    saved = json.loads((run_dir / "config.json").read_text())
    saved["config"]["steps"] = steps
    (run_dir / "config.json").write_text(json.dumps(saved))


def _assert_same_params(a, b):
    a, b = load_checkpoint(a / "checkpoint.pt")["model"], load_checkpoint(b / "checkpoint.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# -- item 8: model parameters ---------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["-1", "abc", "[1,2]", "null", "nan", "inf", "true"])
def test_bad_model_parameter_is_refused_in_one_line_naming_the_key(capsys, tmp_path, value):
    _one_line_error(
        capsys,
        ["train", *TINY, f"model.beta={value}", "--out", str(tmp_path / "run")],
        "model.beta=",
        "is not allowed for model 'beta_vae': model.beta takes a number >= 0",
    )
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_every_model_parameter_has_a_type_and_a_range():
    for name, entry in MODELS.items():
        assert [p.name for p in entry.param_specs] == list(entry.defaults)
        check_model_params(name, entry.defaults)  # every default is allowed
        for spec in entry.param_specs:
            for wrong in ([1, 2], {"a": 1}, "no-such-word", -1e9, float("inf")):
                if spec.accepts(wrong):
                    continue
                with pytest.raises(ValueError, match=rf"^model\.{spec.name}=.* model\.{spec.name} takes "):
                    check_model_params(name, {spec.name: wrong})
            if not spec.nullable:
                with pytest.raises(ValueError, match=rf"model\.{spec.name}=null"):
                    check_model_params(name, {spec.name: None})
            assert not spec.accepts([1, 2]), (name, spec.name)
    # ranges that matter: probabilities, counts, choices
    for name, key, bad, good in [
        ("annealed_vae", "iteration_threshold", 0, 1),
        ("annealed_vae", "iteration_threshold", 1.5, 100000),
        ("beta_tc_vae", "tc_estimator", "exact", "mss"),
        ("ss_vae", "labelled_fraction", 0.0, 1.0),
        ("ss_vae", "num_classes", 1, 2),
        ("s2_factor_vae", "prob_random", 1.5, 0.0),
        ("s2_beta_vae", "embed_sigma", 0, "learn"),
        ("s2_beta_vae", "l2_learn_scale", 1, False),
        ("s2_dip_vae_i", "labeller", "oracle", "partial"),
    ]:
        with pytest.raises(ValueError, match=f"model.{key}="):
            check_model_params(name, {key: bad})
        check_model_params(name, {key: good})


# -- item 11: seeds -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "seed, fragment",
    [
        ("-1", "seed must be an integer in [0, 2**63), got -1"),
        ("1e30", "config key 'seed' needs an integer, got 1e+30"),
        (str(2**63), "seed must be an integer in [0, 2**63)"),
        ("1.5", "config key 'seed' needs a int, got 1.5"),
    ],
)
def test_bad_seed_is_refused_naming_the_option(capsys, tmp_path, seed, fragment):
    _one_line_error(capsys, ["train", *TINY, f"seed={seed}", "--out", str(tmp_path / "run")], fragment)
    assert TrainConfig.from_overrides(["seed=1e3"]).seed == 1000  # an exact integer written as a float
    assert TrainConfig.from_overrides([f"seed={2**63 - 1}"]).seed == 2**63 - 1


# -- item 4: the run lock ---------------------------------------------------------------------------------
def test_second_process_on_the_same_run_directory_is_refused_naming_the_holder(capsys, tmp_path):
    run = tmp_path / "run"
    args = [*TINY, "steps=100000", "checkpoint_every=5", "log_every=5"]
    holder = subprocess.Popen(
        [sys.executable, "-m", "untwine", "train", *args, "--out", str(run)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (run / "checkpoint.pt").exists():
            assert holder.poll() is None
            time.sleep(0.05)
        config_before = (run / "config.json").read_text()
        for argv in (
            ["train", *args, "seed=7", "--out", str(run)],
            ["train", "--resume", str(run)],
        ):
            _one_line_error(capsys, argv, f"the run directory {run} is in use by process {holder.pid} on ")
        assert (run / "config.json").read_text() == config_before  # the holder's run is untouched
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # the kernel dropped the lock with the process: the run can be resumed (here: made short and finished)
    _extend_run(run, load_checkpoint(run / "checkpoint.pt")["step"] + 1)
    assert cli_main(["train", "--resume", str(run)]) == 0


# -- item 10: existing run, path under a file, read-only directory, full disk ---------------------------
def test_existing_run_and_output_under_a_file_are_one_line_errors(capsys, tmp_path):
    run = train(_config("steps=2", "checkpoint_every=2"), tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    _one_line_error(
        capsys, ["train", *TINY, "steps=2", "--out", str(run)], f"{run} already holds a run", "--resume"
    )
    with pytest.raises(RunExistsError):
        train(_config("steps=2"), run)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing lost

    (tmp_path / "a_file").write_text("not a folder")
    _one_line_error(
        capsys,
        ["train", *TINY, "steps=2", "--out", str(tmp_path / "a_file" / "run")],
        f"cannot create the run directory {tmp_path / 'a_file' / 'run'}",
        f"{tmp_path / 'a_file'} is a file, not a folder",
    )


@contextlib.contextmanager
def _tmpfs(path: Path, options: str):
    """A small tmpfs at ``path`` (root only; skips when the sandbox does not allow mounts)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small filesystem needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_read_only_directory_is_a_one_line_error(capsys, tmp_path):
    if os.geteuid() != 0:
        readonly = tmp_path / "readonly"
        readonly.mkdir()
        readonly.chmod(0o555)
        context = contextlib.nullcontext(readonly)
    else:  # root writes through chmod: a read-only filesystem instead
        context = _tmpfs(tmp_path / "readonly", "ro,size=64k")
    with context as readonly:
        _one_line_error(
            capsys,
            ["train", *TINY, "steps=2", "--out", str(readonly / "run")],
            f"cannot write {readonly / 'run'}",
            "choose a writable directory with --out",
        )


def _checkpoint_intact_after_a_failed_write(capsys, run):
    """The error names the run and the intact checkpoint; no temporary is left; resume finishes the run."""
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"no space left on the device of {run}" in err, err
    assert f"continue with `untwine train --resume {run}` (the checkpoint of step 2 is intact)" in err
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 2
    assert not list(run.glob(".checkpoint.pt.*.tmp"))


def test_full_disk_during_a_checkpoint_write_keeps_the_previous_checkpoint(capsys, tmp_path, monkeypatch):
    """Simulated ENOSPC (at the fsync of the second checkpoint's temporary file), on any machine."""
    import untwine.utils.io as io_module

    args = [*TINY, "steps=6", "checkpoint_every=2", "log_every=1", "seed=4"]
    reference = train(TrainConfig.from_overrides(args), tmp_path / "reference")
    run = tmp_path / "run"
    real_fsync, calls = os.fsync, []

    def fsync_until_full(fd):
        calls.append(fd)
        if len(calls) == 3:  # config.json, first checkpoint, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(io_module.os, "fsync", fsync_until_full)
    assert cli_main(["train", *args, "--out", str(run)]) == 1
    monkeypatch.setattr(io_module.os, "fsync", real_fsync)
    _checkpoint_intact_after_a_failed_write(capsys, run)
    assert cli_main(["train", "--resume", str(run)]) == 0
    _assert_same_params(reference, run)


def test_full_disk_on_a_real_small_filesystem(capsys, tmp_path):
    args = [*TINY, "steps=6", "checkpoint_every=2", "log_every=1", "architecture=fc", "num_latents=2"]
    probe = train(TrainConfig.from_overrides([*args, "steps=2"]), tmp_path / "probe")
    size = (probe / "checkpoint.pt").stat().st_size
    others = sum(p.stat().st_size for p in probe.rglob("*") if p.is_file() and p.name != "checkpoint.pt")
    # room for the run's small files and one checkpoint, not for a second one beside it
    with _tmpfs(tmp_path / "small", f"size={int(1.5 * size + others + 64 * 1024)}") as small:
        run = small / "run"
        assert cli_main(["train", *args, "--out", str(run)]) == 1
        _checkpoint_intact_after_a_failed_write(capsys, run)


# -- item 5: divergence ---------------------------------------------------------------------------------
def test_divergence_before_the_first_checkpoint_says_there_is_nothing_to_resume(tmp_path, monkeypatch):
    import untwine.training.loop as loop

    real_step = loop.training_step

    def diverge_at_step_3(model, batch, step, *args, **kwargs):
        if step == 3:
            raise TrainingDivergedError("non-finite loss at step 3 ('kl' = [nan])")
        return real_step(model, batch, step, *args, **kwargs)

    monkeypatch.setattr(loop, "training_step", diverge_at_step_3)
    with pytest.raises(TrainingDivergedError) as raised:
        train(_config("steps=10", "checkpoint_every=5"), tmp_path / "early")
    assert "no checkpoint was written yet (the first is due at step 5), so there is nothing to resume" in str(
        raised.value
    )
    assert "checkpoint.pt" not in str(raised.value) and not (tmp_path / "early" / "checkpoint.pt").exists()
    with pytest.raises(TrainingDivergedError, match=r"the last good checkpoint, of step 2, is kept at .*pt$"):
        train(_config("steps=10", "checkpoint_every=2"), tmp_path / "late")
    assert load_checkpoint(tmp_path / "late" / "checkpoint.pt")["step"] == 2


# -- items 6 and 7: temporaries of killed writes; TensorBoard after a resume ----------------------------
class _Killed(Exception):
    """Stands for the process dying (the in-process stand-in of SIGKILL)."""


def test_resume_removes_temporaries_of_killed_writes_and_tensorboard_shows_each_step_once(
    tmp_path, monkeypatch
):
    import untwine.training.loop as loop

    args = [*TINY, "steps=6", "checkpoint_every=3", "log_every=1"]
    reference = train(TrainConfig.from_overrides(args), tmp_path / "reference")
    run = tmp_path / "run"
    real_save = loop.save_checkpoint

    def die_writing_step_6(path, state):
        if state["step"] == 6:  # what a kill mid-write leaves: a temporary beside the old checkpoint
            (path.parent / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"\0" * 1000)
            raise _Killed
        real_save(path, state)

    monkeypatch.setattr(loop, "save_checkpoint", die_writing_step_6)
    with pytest.raises(_Killed):
        train(TrainConfig.from_overrides(args), run)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    others = [run / ".notes.txt.x.tmp", run / "metrics" / ".mig.json.abc.tmp"]
    for other in others:  # not the run's own files: left alone
        other.parent.mkdir(exist_ok=True)
        other.write_text("someone else's")
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 3

    train(None, run, resume=True)
    assert not list(run.glob(".checkpoint.pt.*.tmp"))
    assert all(other.exists() for other in others)
    _assert_same_params(reference, run)

    pytest.importorskip("tensorboard", reason="tensorboard is an optional extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    loss = events.Scalars("loss")
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [e.step for e in loss] == [1, 2, 3, 4, 5, 6] == [line["step"] for line in logged]
    assert [e.value for e in loss] == pytest.approx([line["loss"] for line in logged], rel=1e-6)


# -- item 11: corrupt config.json and log.jsonl ---------------------------------------------------------
def test_corrupt_run_files_are_named_and_a_partial_last_log_line_is_dropped(capsys, tmp_path):
    args = [*TINY, "steps=4", "checkpoint_every=2", "log_every=1"]
    run = train(TrainConfig.from_overrides(args), tmp_path / "run")
    _extend_run(run, 6)
    log = run / "log.jsonl"
    log.write_text(log.read_text() + '{"step": 5, "loss": 12')  # power loss in the middle of a line
    assert cli_main(["train", "--resume", str(run)]) == 0
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]

    _extend_run(run, 8)
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], lines[1][:9], *lines[2:]]) + "\n")
    _one_line_error(capsys, ["train", "--resume", str(run)], f"{log}, line 2: not a log record")

    config = run / "config.json"
    config.write_text(config.read_text()[:40])
    _one_line_error(capsys, ["train", "--resume", str(run)], f"{config} is corrupt")
    config.write_text("[]")
    _one_line_error(capsys, ["train", "--resume", str(run)], f"{config} has no 'config' object")


# -- item 11: Ctrl-C ------------------------------------------------------------------------------------
def test_ctrl_c_stops_after_a_checkpointed_step_and_resume_is_bit_identical(capsys, tmp_path):
    args = [*TINY, "steps=300", "checkpoint_every=50", "log_every=1", "seed=5"]
    reference = train(TrainConfig.from_overrides(args), tmp_path / "reference")
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "untwine", "train", *args, "--out", str(run)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_sigint_as_in_a_terminal,
    )
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        lines = (run / "log.jsonl").read_text().splitlines() if (run / "log.jsonl").exists() else []
        if lines and json.loads(lines[-1])["step"] >= 20:
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.02)
    _, err = process.communicate(timeout=60)
    err = err.decode().strip()
    assert process.returncode == 130 and "Traceback" not in err, err
    step = load_checkpoint(run / "checkpoint.pt")["step"]
    assert 20 <= step < 300
    assert (
        err.splitlines()[-1]
        == f"untwine train: stopped at step {step}; continue with `untwine train --resume {run}`"
    )
    assert json.loads((run / "log.jsonl").read_text().splitlines()[-1])["step"] == step

    assert cli_main(["train", "--resume", str(run)]) == 0
    _assert_same_params(reference, run)
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 301))

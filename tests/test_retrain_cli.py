"""`dnatool retrain` as users run it: SIGKILL mid-run then --resume, and one-line bad-input errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dnatool.arch.space import load_space


def _arch_file(tmp_path):
    space = load_space("tiny")
    path = tmp_path / "arch.json"
    path.write_text(space.to_arch(space.sample(np.random.default_rng(3)), name="killme").to_json())
    return str(path)


def _wait_for(path, proc, timeout=300.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "exited early"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)


@pytest.mark.slow  # a SIGKILLed subprocess end to end
def test_sigkill_then_resume_ends_with_all_epochs_and_loadable_files(cli, tmp_path):
    from dnatool.nn.model_run import load_model
    from dnatool.utils import io, runs

    arch, out = _arch_file(tmp_path), tmp_path / "run"
    args = ["retrain", arch, "retrain-tiny", "--epochs", "2", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dnatool", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(out / "checkpoint.pt", proc)
        os.kill(proc.pid, signal.SIGKILL)  # in epoch 2, or while writing epoch 1's files
    finally:
        proc.kill()
        proc.wait()
    assert not (out / "model.pt").exists()
    assert io.load_checkpoint(out / "checkpoint.pt", "retrain-state")["epoch"] >= 1
    resumed = cli(*args, "--resume", "--json")
    assert resumed.code == 0, resumed.stderr
    metrics = json.loads(resumed.stdout)
    assert metrics["epochs"] == 2
    assert "resuming" in resumed.stderr
    loaded = load_model(out)
    assert loaded.trained and loaded.metrics["epochs"] == 2
    assert io.load_checkpoint(out / "checkpoint.pt", "retrain-state")["epoch"] == 2
    assert runs.read_manifest(out)["results"]["epochs"] == 2
    assert (out / "curves.csv").read_text().count("\n") == 3  # header + 2 epochs
    assert not list(out.glob(".*.tmp"))


def _one_line_error(result):
    assert result.code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("no-such-arch",),
        ("efficientnet_b0", "no-such-recipe"),
        ("efficientnet_b0", "-o", "lr_bse=0.1"),
        ("efficientnet_b0", "-o", "batch_size=7"),
        ("efficientnet_b0", "--epochs", "0"),
        ("efficientnet_b0", "--data", "/no/such/folder"),
    ],
)
def test_bad_retrain_inputs_exit_2_with_one_line(cli, tmp_path, args):
    _one_line_error(cli("retrain", *args, "--out", str(tmp_path / "run")))


@pytest.mark.slow  # two CLI retrains (19 s): the default suite stays under its 10-minute line
def test_retrain_with_a_teacher_run_from_the_command_line(cli, tmp_path):
    """`--teacher RUN` distils from a trained model run and records it in the metrics and manifest."""
    from dnatool.arch.resolve import resolve_arch
    from dnatool.nn.model_run import DEFAULT_PREPROCESS, load_model, save_model_run
    from dnatool.nn.timm_adapter import build_model
    from dnatool.utils import runs

    arch, teacher = _arch_file(tmp_path), tmp_path / "teacher"
    spec = resolve_arch(arch).replace(num_classes=10, resolution=32)
    save_model_run(teacher, build_model(spec), spec, DEFAULT_PREPROCESS, {})
    common = ["retrain", arch, "retrain-tiny", "--epochs", "1", "--json"]
    result = cli(*common, "--out", str(tmp_path / "student"), "--teacher", str(teacher))
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["teacher"] == str(teacher)
    assert load_model(tmp_path / "student").metrics["teacher"] == str(teacher)
    inputs = runs.read_manifest(tmp_path / "student")["inputs"]
    assert any(str(teacher) in json.dumps(entry) for entry in inputs)
    bad = cli(*common, "--out", str(tmp_path / "bad"), "--teacher", str(tmp_path / "no-such-run"))
    _one_line_error(bad)
    assert "no-such-run" in bad.stderr


@pytest.mark.slow
def test_torchrun_ddp_on_cpu_trains_with_gloo_and_rank0_writes(tmp_path):
    """Two CPU processes under torchrun: one JSON object, the global validation split, one run."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [
            torchrun,
            "--nproc_per_node",
            "2",
            "-m",
            "dnatool",
            "retrain",
            _arch_file(tmp_path),
            "retrain-tiny",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    metrics = json.loads(lines[0])
    assert metrics["world_size"] == 2 and metrics["val_images"] == 360 and metrics["epochs"] == 1
    from dnatool.nn.model_run import load_model

    assert load_model(out).metrics["world_size"] == 2

"""`dnatool train` / `dnatool rate` end to end on the built-in digits (CPU, seconds)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dnatool.arch.resolve import resolve_arch
from dnatool.nn.model_run import save_model_run
from dnatool.nn.timm_adapter import build_model
from dnatool.utils import io

REPO = Path(__file__).resolve().parents[1]
TEACHER_ARCH = REPO / "recipes" / "arch" / "digits-teacher.json"


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory) -> Path:
    """An (untrained) dnatool model run of the digits teacher arch: training mechanics only."""
    run = tmp_path_factory.mktemp("teacher")
    arch = resolve_arch(str(TEACHER_ARCH))
    save_model_run(run, build_model(arch), arch, {}, {})
    return run


def _train_args(teacher: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "dna-tiny",
        "--out",
        str(out),
        "-o",
        f"teacher={teacher}",
        "-o",
        "max_steps_per_epoch=3",
        "-o",
        "rate_per_class=4",
        *extra,
    ]


def test_train_then_rate_writes_every_artifact(cli, teacher_run, tmp_path):
    run = tmp_path / "run"
    result = cli(*_train_args(teacher_run, run, "-o", "epochs=2", "--json"))
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["epochs"] == 2
    for k in range(3):
        checkpoint = io.load_checkpoint(run / "supernet" / f"block_{k}.pt", "supernet_block")
        assert checkpoint["epoch"] == 2
    cut = json.loads((run / "teacher.json").read_text())["cut"]
    assert [c["shape"] for c in cut] == [[24, 8, 8], [40, 4, 4], [64, 2, 2]]
    assert (run / "curves" / "loss.png").stat().st_size > 1000
    assert len((run / "curves" / "loss.csv").read_text().splitlines()) == 1 + 2 * (2 + 2 + 1)
    assert json.loads((run / "manifest.json").read_text())["finished"]

    rated = cli("rate", str(run), "--json")
    assert rated.code == 0, rated.stderr
    sizes = [20, 80, 16]
    for k, size in enumerate(sizes):
        with np.load(run / "scores" / f"block_{k}.npz") as data:
            assert data["scores"].shape == (size,) and np.isfinite(data["scores"]).all()
            assert data["paths"].shape[0] == size and (data["cells"] >= 0).all()
            rows = {
                (int(c), tuple(int(v) for v in p if v >= 0))
                for c, p in zip(data["cells"], data["paths"])
            }
            assert len(rows) == size
    again = cli("rate", str(run), "--json")
    assert (
        again.code == 0 and json.loads(again.stdout)["blocks"] == json.loads(rated.stdout)["blocks"]
    )


def test_existing_run_needs_resume(cli, teacher_run, tmp_path):
    run = tmp_path / "run"
    assert cli(*_train_args(teacher_run, run, "-o", "epochs=1")).code == 0
    result = cli(*_train_args(teacher_run, run, "-o", "epochs=1"))
    assert result.code == 2 and "--resume" in result.stderr


def test_killed_training_resumes_to_the_end(teacher_run, tmp_path):
    run = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "dnatool",
        *_train_args(teacher_run, run, "-o", "epochs=4", "-o", "max_steps_per_epoch=8"),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = run / "supernet" / "block_2.pt"
    deadline = time.time() + 300
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    epochs = [
        io.load_checkpoint(run / "supernet" / f"block_{k}.pt", "supernet_block")["epoch"]
        for k in range(3)
        if (run / "supernet" / f"block_{k}.pt").exists()
    ]
    assert epochs and max(epochs) < 4, "the run must have been killed before the end"
    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    for k in range(3):
        checkpoint = io.load_checkpoint(run / "supernet" / f"block_{k}.pt", "supernet_block")
        assert checkpoint["epoch"] == 4
        assert sorted({row[0] for row in checkpoint["history"]}) == [0, 1, 2, 3]
    assert not list(run.rglob("*.tmp"))


def _torchrun(teacher: Path, run: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "dnatool",
        *_train_args(teacher, run, "-o", "epochs=1", *extra),
    ]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_torchrun_two_processes_agree(teacher_run, tmp_path):
    run = tmp_path / "run"
    proc = _torchrun(teacher_run, run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ranks = [json.loads((run / "ranks" / f"rank_{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["world"] == 2
    assert ranks[0]["checksums"] == ranks[1]["checksums"]
    assert io.load_checkpoint(run / "supernet" / "block_0.pt", "supernet_block")["epoch"] == 1
    assert proc.stderr.count("supernet trained") == 1, "only rank 0 reports"


def test_torchrun_blocks_on_different_ranks(teacher_run, tmp_path):
    run = tmp_path / "run"
    proc = _torchrun(teacher_run, run, "-o", "distributed=blocks")
    assert proc.returncode == 0, proc.stderr[-2000:]
    owned = [
        sorted(json.loads((run / "ranks" / f"rank_{r}.json").read_text())["checksums"])
        for r in range(2)
    ]
    assert owned == [["0", "2"], ["1"]]
    for k in range(3):
        assert (
            io.load_checkpoint(run / "supernet" / f"block_{k}.pt", "supernet_block")["epoch"] == 1
        )
    assert (run / "curves" / "loss.csv").read_text().count("\n") == 1 + 2 + 2 + 1


def test_bad_recipe_inputs(cli, tmp_path):
    bad = cli("train", "dna-tiny", "-o", "epohcs=3", "--out", str(tmp_path / "x"))
    assert bad.code == 2 and "did you mean 'epochs'" in bad.stderr
    assert cli("train", "no-such-recipe").code == 2
    assert cli("train", "dna-tiny", "-o", "method=darts", "--out", str(tmp_path / "y")).code == 2
    missing = cli(
        "train", "dna-tiny", "-o", "teacher=no/such/teacher", "--out", str(tmp_path / "z")
    )
    assert missing.code == 2 and len(missing.stderr.strip().splitlines()) == 1

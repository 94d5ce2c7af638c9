"""`dnatool train` / `dnatool rate` end to end on the built-in digits (CPU, seconds)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

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


@pytest.fixture(scope="module")
def rated_run(teacher_run, tmp_path_factory):
    """A 2-epoch supernet run of dna-tiny, rated once: (run, train result, rate result)."""
    from conftest import run_cli

    run = tmp_path_factory.mktemp("rated") / "run"
    trained = run_cli(*_train_args(teacher_run, run, "-o", "epochs=2", "--json"))
    assert trained.code == 0, trained.stderr
    rated = run_cli("rate", str(run), "--json")
    assert rated.code == 0, rated.stderr
    return run, trained, rated


def test_train_then_rate_writes_every_artifact(cli, rated_run):
    run, trained, rated = rated_run
    assert json.loads(trained.stdout)["epochs"] == 2
    for k in range(3):
        checkpoint = io.load_checkpoint(run / "supernet" / f"block_{k}.pt", "supernet_block")
        assert checkpoint["epoch"] == 2
    cut = json.loads((run / "teacher.json").read_text())["cut"]
    assert [c["shape"] for c in cut] == [[24, 8, 8], [40, 4, 4], [64, 2, 2]]
    assert (run / "curves" / "loss.png").stat().st_size > 1000
    assert len((run / "curves" / "loss.csv").read_text().splitlines()) == 1 + 2 * (2 + 2 + 1)
    assert json.loads((run / "manifest.json").read_text())["finished"]

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
    written = {p: p.stat().st_mtime_ns for p in (run / "scores").glob("block_*.*")}
    again = cli("rate", str(run), "--json")
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["blocks"] == json.loads(rated.stdout)["blocks"]
    assert again.stderr.count("scores already there, skipped") == 3
    assert {p: p.stat().st_mtime_ns for p in written} == written


def test_per_block_learning_rates_follow_the_recipe(rated_run):
    run = rated_run[0]
    base = {0: 0.002, 1: 0.005, 2: 0.002}  # first and last block 0.002, the others 0.005
    lines = (run / "curves" / "loss.csv").read_text().splitlines()[1:]
    rows = [[float(v) for v in line.split(",")] for line in lines]
    assert {(int(r[0]), int(r[1])) for r in rows} == {(k, e) for k in range(3) for e in (0, 1)}
    for block, epoch, _, _, lr in rows:
        assert lr == pytest.approx(base[int(block)] * 0.9 ** int(epoch), rel=1e-9)
    for k, lr in base.items():
        checkpoint = io.load_checkpoint(run / "supernet" / f"block_{k}.pt", "supernet_block")
        assert checkpoint["optimizer"]["param_groups"][0]["lr"] == pytest.approx(lr * 0.81)


def test_rating_summary_best_is_the_lowest_score(rated_run):
    run, _, rated = rated_run
    summary = json.loads((run / "scores" / "summary.json").read_text())
    assert summary == json.loads(rated.stdout)["blocks"]
    for k in range(3):
        with np.load(run / "scores" / f"block_{k}.npz") as data:
            order = np.argsort(data["scores"], kind="stable")
            lowest = [
                (int(data["cells"][i]), [int(v) for v in data["paths"][i] if v >= 0])
                for i in order[:5]
            ]
            scores = data["scores"][order[:5]].tolist()
        best = summary[str(k)]["best"]
        assert [(b["cell"], b["path"]) for b in best] == lowest
        assert [b["score"] for b in best] == scores == sorted(scores)
        assert summary[str(k)]["training_finished"] and summary[str(k)]["trained_epochs"] == 2
    assert "unfinished" not in rated.stderr


def test_rating_an_unfinished_run_warns_and_records_it(cli, rated_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(rated_run[0], run)
    block = run / "supernet" / "block_1.pt"
    checkpoint = io.load_checkpoint(block, "supernet_block")
    checkpoint["epoch"] = 1
    checkpoint["history"] = [row for row in checkpoint["history"] if row[0] == 0]
    io.save_checkpoint(block, "supernet_block", checkpoint)
    manifest = json.loads((run / "manifest.json").read_text())
    io.write_json(run / "manifest.json", {**manifest, "finished": None})
    result = cli("rate", str(run), "--json")
    assert result.code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "block 0 2, block 1 1, block 2 2" in warnings[0]
    blocks = json.loads(result.stdout)["blocks"]
    assert [blocks[str(k)]["trained_epochs"] for k in range(3)] == [2, 1, 2]
    assert not any(blocks[str(k)]["training_finished"] for k in range(3))
    rating = json.loads((run / "scores" / "manifest.json").read_text())
    assert "unfinished" in rating["results"]["warning"]


def test_existing_run_needs_resume(cli, teacher_run, tmp_path):
    run = tmp_path / "run"
    assert cli(*_train_args(teacher_run, run, "-o", "epochs=1")).code == 0
    result = cli(*_train_args(teacher_run, run, "-o", "epochs=1"))
    assert result.code == 2 and "--resume" in result.stderr


@pytest.mark.slow  # a SIGKILLed subprocess end to end
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
    before = {
        k: io.load_checkpoint(run / "supernet" / f"block_{k}.pt", "supernet_block")
        for k in range(3)
    }
    epochs = [c["epoch"] for c in before.values()]
    assert min(epochs) >= 1 and max(epochs) < 4, "killed after the first epoch, before the end"
    resumed = subprocess.run([*args, "--resume", "--json"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["start_epoch"] == min(epochs)
    assert f"resuming at epoch {min(epochs) + 1}/4" in resumed.stderr
    for k in range(3):
        checkpoint = io.load_checkpoint(run / "supernet" / f"block_{k}.pt", "supernet_block")
        assert checkpoint["epoch"] == 4
        assert sorted({row[0] for row in checkpoint["history"]}) == [0, 1, 2, 3]
        kept = before[k]["history"]
        assert checkpoint["history"][: len(kept)] == kept, "pre-kill epochs were not retrained"
    assert not list(run.rglob("*.tmp"))


class _Stop(Exception):
    pass


def _stop_in_epoch_2(event, **fields):
    if event == "advance" and str(fields.get("status", "")).startswith("epoch 2 "):
        raise _Stop  # epoch 1 is saved


def test_an_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one(teacher_run, tmp_path):
    """Order, paths and shifts are functions of (seed, epoch) or saved with the blocks, so a resumed
    run ends bit-identical to one that was never stopped."""
    from dnatool.train.loop import run_train
    from dnatool.train.recipe import load_train_recipe

    recipe = load_train_recipe(
        "dna-tiny",
        (f"teacher={teacher_run}", "max_steps_per_epoch=3", "rate_per_class=4", "epochs=2"),
    )
    run_train(recipe, tmp_path / "a")
    with pytest.raises(_Stop):
        run_train(recipe, tmp_path / "b", report=_stop_in_epoch_2)
    assert run_train(recipe, tmp_path / "b", resume=True)["start_epoch"] == 1
    for k in range(3):
        a = io.load_checkpoint(tmp_path / "a" / "supernet" / f"block_{k}.pt", "supernet_block")
        b = io.load_checkpoint(tmp_path / "b" / "supernet" / f"block_{k}.pt", "supernet_block")
        assert all(
            torch.equal(a["state_dict"][key], b["state_dict"][key]) for key in a["state_dict"]
        )


def test_resume_refuses_a_different_recipe_or_teacher(cli, teacher_run, tmp_path):
    teacher = tmp_path / "teacher"
    shutil.copytree(teacher_run, teacher)
    run = tmp_path / "run"
    assert cli(*_train_args(teacher, run, "-o", "epochs=1")).code == 0
    manifest = (run / "manifest.json").read_text()
    inputs = json.loads(manifest)["inputs"]
    weights = teacher / "model.pt"
    assert {"path": str(weights), "sha256": io.file_sha256(weights)} in inputs

    other_teacher = tmp_path / "other-teacher"  # the same arch, other weights
    shutil.copytree(teacher_run, other_teacher)
    state = io.load_checkpoint(other_teacher / "model.pt", "model")
    state["state_dict"] = {k: v * 0.5 for k, v in state["state_dict"].items()}
    io.save_checkpoint(other_teacher / "model.pt", "model", state)
    other = cli(*_train_args(other_teacher, run, "-o", "epochs=2", "--resume"))
    assert other.code == 2 and len(other.stderr.strip().splitlines()) == 1
    assert "teacher was" in other.stderr

    state = io.load_checkpoint(weights, "model")
    state["state_dict"] = {k: v + 1 for k, v in state["state_dict"].items()}
    io.save_checkpoint(weights, "model", state)
    changed = cli(*_train_args(teacher, run, "-o", "epochs=2", "--resume"))
    assert changed.code == 2 and "teacher file" in changed.stderr and "changed" in changed.stderr
    assert (run / "manifest.json").read_text() == manifest, "a refused resume writes nothing"


def test_resume_accepts_the_same_teacher_copied_elsewhere(cli, teacher_run, tmp_path):
    """A run folder moved with its teacher (a benchmark OUT copied to another machine) resumes:
    the teacher is the same model.pt at another path."""
    teacher, moved = tmp_path / "teacher", tmp_path / "moved" / "teacher"
    shutil.copytree(teacher_run, teacher)
    shutil.copytree(teacher_run, moved)
    run = tmp_path / "run"
    assert cli(*_train_args(teacher, run, "-o", "epochs=1")).code == 0
    again = cli(*_train_args(moved, run, "-o", "epochs=2", "--resume"))
    assert again.code == 0, again.stderr
    assert json.loads((run / "manifest.json").read_text())["recipe"]["teacher"] == str(moved)


def _torchrun(
    teacher: Path, run: Path, *extra: str, epochs: int = 1, timeout: int = 600
) -> subprocess.CompletedProcess:
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
        *_train_args(teacher, run, "-o", f"epochs={epochs}", *extra),
    ]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def _rank(run: Path, r: int) -> dict:
    return json.loads((run / "ranks" / f"rank_{r}.json").read_text())


@pytest.mark.slow  # two processes end to end
def test_torchrun_two_processes_agree(teacher_run, tmp_path):
    run = tmp_path / "run"
    proc = _torchrun(teacher_run, run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ranks = [_rank(run, r) for r in range(2)]
    assert ranks[0]["world"] == 2
    assert ranks[0]["checksums"] == ranks[1]["checksums"]
    seen = [rank["first_samples"] for rank in ranks]
    assert len(seen[0]) == len(seen[1]) == 3 * 64, "3 steps of batch 64 per rank"
    assert not set(seen[0]) & set(seen[1]), "each rank trains on its own shard"
    assert io.load_checkpoint(run / "supernet" / "block_0.pt", "supernet_block")["epoch"] == 1
    assert proc.stderr.count("supernet trained") == 1, "only rank 0 reports"


@pytest.mark.slow  # two processes end to end
def test_torchrun_blocks_on_different_ranks_and_resume(teacher_run, tmp_path):
    run = tmp_path / "run"
    proc = _torchrun(teacher_run, run, "-o", "distributed=blocks")
    assert proc.returncode == 0, proc.stderr[-2000:]
    owned = [sorted(_rank(run, r)["checksums"]) for r in range(2)]
    assert owned == [["0", "2"], ["1"]]
    assert _rank(run, 0)["first_samples"] == _rank(run, 1)["first_samples"], "all see all data"
    for k in range(3):
        assert (
            io.load_checkpoint(run / "supernet" / f"block_{k}.pt", "supernet_block")["epoch"] == 1
        )
    assert (run / "curves" / "loss.csv").read_text().count("\n") == 1 + 2 + 2 + 1
    # A kill after rank 0 saved its blocks but before rank 1 did: ranks resume at different
    # epochs and must still meet the same barriers.
    block_0 = io.load_checkpoint(run / "supernet" / "block_0.pt", "supernet_block")
    (run / "supernet" / "block_1.pt").unlink()
    resumed = _torchrun(
        teacher_run, run, "-o", "distributed=blocks", "--resume", epochs=2, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for k in range(3):
        checkpoint = io.load_checkpoint(run / "supernet" / f"block_{k}.pt", "supernet_block")
        assert checkpoint["epoch"] == 2
        assert sorted({row[0] for row in checkpoint["history"]}) == [0, 1]
    final_0 = io.load_checkpoint(run / "supernet" / "block_0.pt", "supernet_block")
    assert final_0["history"][:2] == block_0["history"]


def test_blocks_mode_refuses_more_processes_than_blocks(cli, teacher_run, tmp_path):
    env = {**os.environ, "WORLD_SIZE": "4", "RANK": "0", "LOCAL_RANK": "0"}
    run = tmp_path / "run"
    result = cli(*_train_args(teacher_run, run, "-o", "distributed=blocks"), env=env, timeout=120)
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "at most 3 processes" in result.stderr
    assert not run.exists(), "refused before any work"


def test_data_parallel_checkpoints_are_written_by_rank_0_only(teacher_run, tmp_path):
    from dnatool.config import load_recipe
    from dnatool.train.loop import BlockTrainer, save_epoch
    from dnatool.train.recipe import TrainRecipe
    from dnatool.train.setup import build_setup
    from dnatool.utils.distributed import ProcessInfo

    recipe = load_recipe("dna-tiny", TrainRecipe, (f"teacher={teacher_run}",))
    setup = build_setup(recipe, augment=False)
    cpu = torch.device("cpu")
    trainers = {k: BlockTrainer(setup, k, cpu, ProcessInfo(0, 1, 0, cpu)) for k in range(3)}
    for trainer in trainers.values():
        trainer.epoch = 1  # as after training epoch 0
    rank_1 = ProcessInfo(1, 2, 1, cpu)
    assert save_epoch(tmp_path / "a", trainers, rank_1, "data", 0) == []
    assert not (tmp_path / "a").exists()
    assert save_epoch(tmp_path / "b", trainers, ProcessInfo(0, 2, 0, cpu), "data", 0) == [0, 1, 2]
    assert save_epoch(tmp_path / "c", {1: trainers[1]}, rank_1, "blocks", 0) == [1]
    assert (tmp_path / "c" / "supernet" / "block_1.pt").is_file()


def test_bad_recipe_inputs(cli, tmp_path):
    bad = cli("train", "dna-tiny", "-o", "epohcs=3", "--out", str(tmp_path / "x"))
    assert bad.code == 2 and "did you mean 'epochs'" in bad.stderr
    assert cli("train", "no-such-recipe").code == 2
    assert cli("train", "dna-tiny", "-o", "method=darts", "--out", str(tmp_path / "y")).code == 2
    missing = cli(
        "train", "dna-tiny", "-o", "teacher=no/such/teacher", "--out", str(tmp_path / "z")
    )
    assert missing.code == 2 and len(missing.stderr.strip().splitlines()) == 1


def test_cells_keeping_their_own_width_train_rate_and_refuse_the_other_mode(
    cli, teacher_run, tmp_path
):
    run = tmp_path / "own"
    own = ("-o", "epochs=1", "-o", "cell_output=own")
    assert cli(*_train_args(teacher_run, run, *own)).code == 0
    block = io.load_checkpoint(run / "supernet" / "block_0.pt", "supernet_block")
    assert any(key.endswith("adapter.weight") for key in block["state_dict"])
    rated = cli("rate", str(run), "--json")
    assert rated.code == 0, rated.stderr
    other = cli(*_train_args(teacher_run, run, "-o", "epochs=2", "--resume"))
    assert other.code == 2 and "cell_output was 'own', now 'auto'" in other.stderr
    bad = cli(*_train_args(teacher_run, tmp_path / "bad", "-o", "cell_output=wide"))
    assert bad.code == 2 and "cell_output" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_a_run_recorded_before_a_recipe_key_existed_resumes_with_its_default():
    from dataclasses import asdict

    from dnatool.config import resume_conflict
    from dnatool.train.recipe import TrainRecipe

    new = asdict(TrainRecipe())
    old = {k: v for k, v in new.items() if k != "cell_output"}
    assert resume_conflict(TrainRecipe, old, new) is None
    own = {**new, "cell_output": "own"}
    assert "cell_output was 'auto', now 'own'" in resume_conflict(TrainRecipe, old, own)

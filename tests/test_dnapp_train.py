"""DNA++ training and rating on the built-in digits (CPU, seconds): `method: dna++`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dnatool.arch.resolve import resolve_arch
from dnatool.config import load_recipe
from dnatool.errors import BadInput
from dnatool.nn.model_run import save_model_run
from dnatool.nn.timm_adapter import build_model
from dnatool.train.dnapp import DnappRecipe
from dnatool.utils import io

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory) -> Path:
    """An (untrained) model run of the digits teacher arch: training mechanics only."""
    run = tmp_path_factory.mktemp("teacher")
    arch = resolve_arch(str(REPO / "recipes" / "arch" / "digits-teacher.json"))
    torch.manual_seed(0)
    save_model_run(run, build_model(arch), arch, {}, {})
    return run


def _recipe(teacher: Path, *extra: str) -> DnappRecipe:
    base = (f"teacher={teacher}", "max_steps_per_epoch=3", "rate_per_class=4", "epochs=2")
    return load_recipe("dnapp-tiny", DnappRecipe, (*base, *extra))


@pytest.fixture(scope="module")
def trained(teacher_run, tmp_path_factory):
    from dnatool.train.dnapp_loop import run_dnapp

    out = tmp_path_factory.mktemp("dnapp") / "run"
    return out, run_dnapp(_recipe(teacher_run), out)


def test_the_teacher_trains_jointly_and_everything_is_checkpointed(trained, teacher_run):
    from dnatool.nn.model_run import MODEL_FILE
    from dnatool.train.dnapp_loop import teacher_checkpoint
    from dnatool.train.setup import block_checkpoint

    out, result = trained
    assert set(result["final_loss"]) == {"0", "1", "2"}
    assert all(np.isfinite(v).all() for v in result["final_loss"].values())
    block = io.load_checkpoint(block_checkpoint(out, 1), "supernet_block")
    assert block["epoch"] == 2 and set(block["projectors"]) == {"student", "teacher"}
    before = io.load_checkpoint(teacher_run / MODEL_FILE, "model")["state_dict"]
    after = io.load_checkpoint(teacher_checkpoint(out), "dnapp_teacher")["state_dict"]
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert changed, "the teacher's weights did not move: it is not trained jointly"
    assert (out / "curves" / "loss.png").stat().st_size > 0


def test_resume_continues_and_refuses_a_changed_loss(trained, teacher_run):
    from dnatool.train.dnapp_loop import run_dnapp
    from dnatool.train.setup import block_checkpoint

    out, _ = trained
    with pytest.raises(BadInput, match="hinge"):
        run_dnapp(_recipe(teacher_run, "hinge=student"), out, resume=True)
    with pytest.raises(BadInput, match="--resume"):
        run_dnapp(_recipe(teacher_run), out)
    run_dnapp(_recipe(teacher_run, "epochs=3"), out, resume=True)
    history = io.load_checkpoint(block_checkpoint(out, 0), "supernet_block")["history"]
    assert sorted({row[0] for row in history}) == [0, 1, 2]


def test_a_frozen_teacher_is_not_checkpointed(teacher_run, tmp_path):
    from dnatool.train.dnapp_loop import run_dnapp, teacher_checkpoint

    out = tmp_path / "frozen"
    run_dnapp(_recipe(teacher_run, "train_teacher=false", "epochs=1"), out)
    assert not teacher_checkpoint(out).exists()


def test_rating_uses_the_ssl_loss_and_prefix_sharing_equals_naive(trained):
    from dnatool.rate.feature_sharing import score_cell_naive, score_cell_shared
    from dnatool.rate.score_lists import load_score_lists, run_space
    from dnatool.rate.scores import run_rate

    out, _ = trained
    summary = run_rate(out)
    space = run_space(out)
    lists = load_score_lists(out, space)
    assert [len(lst.scores) for lst in lists] == [b.paths for b in space.blocks]
    assert all((lst.scores >= 0).all() for lst in lists)
    assert summary["1"]["settings"]["norm"] == "ssl-loss"
    again = run_rate(out, ssl_score="invariance")  # another score: every block is rated again
    assert again["1"]["settings"]["norm"] == "ssl-invariance"
    invariance = load_score_lists(out, space)
    assert not np.allclose(invariance[1].scores, lists[1].scores)
    with pytest.raises(BadInput, match="--ssl-score"):
        run_rate(out, norm="std")

    from dnatool.train.dnapp import Projector, ssl_score

    gen = torch.Generator().manual_seed(0)
    cell = _a_cell(out, space)
    proj = Projector(24, 16, 8).eval()
    x = torch.randn(6, cell.layers[0][0].conv_pw.in_channels, 8, 8, generator=gen)
    z = torch.randn(6, 8, generator=gen)
    for kind in ("loss", "invariance"):

        def metric(output, target, kind=kind):
            return ssl_score(proj(output), target, kind)

        shared = score_cell_shared(cell, [(x, z)], metric, calibration=x).scores()
        naive = score_cell_naive(cell, [(x, z)], metric, calibration=x).scores()
        assert shared.keys() == naive.keys()
        assert all(shared[p] == pytest.approx(naive[p], rel=1e-5) for p in shared)


def test_rate_cli_takes_the_ssl_score_and_refuses_dnas_norm(cli, trained):
    out, _ = trained
    refused = cli("rate", str(out), "--norm", "var")
    assert refused.code == 2 and "--ssl-score" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    rated = cli("rate", str(out), "--ssl-score", "invariance", "--json")
    assert rated.code == 0, rated.stderr
    assert json.loads(rated.stdout)["blocks"]["0"]["settings"]["norm"] == "ssl-invariance"


def test_the_loss_rating_never_scores_a_lone_image():
    """The SSL loss needs batch variances: the rating split is cut into near-equal batches."""
    from types import SimpleNamespace

    from dnatool.rate.scores import _rating_loader

    data = torch.utils.data.TensorDataset(torch.arange(201.0))
    setup = SimpleNamespace(
        recipe=SimpleNamespace(rate_batch_size=100), splits=SimpleNamespace(rate=data)
    )
    assert [len(b[0]) for b in _rating_loader(setup, "ssl-loss")] == [67, 67, 67]
    assert [len(b[0]) for b in _rating_loader(setup, "std")] == [100, 100, 1]
    seen = sorted(int(i) for b in _rating_loader(setup, "ssl-loss") for i in b[0])
    assert seen == list(range(201))


def _a_cell(out, space):
    from dnatool.nn.supernet import Cell

    torch.manual_seed(0)
    return Cell(space, 1, 1, in_chs=16, out_chs=24).eval()


@pytest.mark.slow
def test_torchrun_two_processes_train_the_same_supernet(teacher_run, tmp_path):
    """DDP on CPU (gloo): the jointly trained teacher and every block's cells and projectors in
    one wrapped step; rank 0 writes checkpoints that continue on one process."""
    import os
    import subprocess
    import sys

    from dnatool.train.dnapp_loop import run_dnapp, teacher_checkpoint

    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    overrides = [
        f"teacher={teacher_run}", "max_steps_per_epoch=3", "rate_per_class=4", "epochs=1",
        "device=cpu",
    ]  # fmt: skip
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "dnatool", "train", "dnapp-tiny", "--out", str(run),
        *[x for o in overrides for x in ("-o", o)],
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert io.load_checkpoint(teacher_checkpoint(run), "dnapp_teacher")["epoch"] == 1
    resumed = run_dnapp(_recipe(teacher_run, "device=cpu"), run, resume=True)
    assert resumed["epochs"] == 2

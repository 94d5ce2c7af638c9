"""BossNAS: fair sampling, the ensemble BYOL loss and momentum, training that does not collapse,
a resumed run equal to an uninterrupted one, and rating -> score lists -> search."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dnatool.arch.space import load_space
from dnatool.errors import BadInput
from dnatool.train.bossnas import (
    BossnasRecipe,
    block_paths,
    byol_loss,
    projection_std,
    sample_paths,
    target_momentum,
)

SHORT = ("epochs=1", "max_steps_per_epoch=3", "rate_per_class=3", "batch_size=16")


def _recipe(*overrides: str, name: str = "bossnas-tiny") -> BossnasRecipe:
    from dnatool.train.recipe import load_train_recipe

    return load_train_recipe(name, (*SHORT, *overrides))


def test_fair_sampling_takes_every_op_once_per_layer_position():
    space = load_space("tiny-w")
    generator = torch.Generator().manual_seed(0)
    for k, block in enumerate(space.blocks):
        for _ in range(50):
            paths = sample_paths(space, k, len(block.ops), True, generator)
            assert all(space._check_choice(k, p) == p for p in paths)
            for i in range(max(c.layers for c in block.cells)):
                ops = [path[i] for _, path in paths if len(path) > i]
                assert len(ops) == len(set(ops))  # no op twice at a position
            assert sorted(path[0] for _, path in paths) == list(range(len(block.ops)))
    counts = np.zeros(4)
    for _ in range(200):
        for _, path in sample_paths(space, 0, 4, False, generator):
            counts[path[0]] += 1
    assert counts.min() > 150  # random sampling is uniform too, not fair per step


def test_every_path_of_a_block_is_enumerated_once():
    space = load_space("tiny-w")
    for k, block in enumerate(space.blocks):
        paths = list(block_paths(space, k))
        assert len(paths) == len(set(paths)) == sum(len(block.ops) ** c.layers for c in block.cells)


def test_byol_loss_and_target_momentum():
    x = torch.randn(8, 16)
    assert float(byol_loss(x, 3 * x)) == pytest.approx(0.0, abs=1e-6)
    assert float(byol_loss(x, -x)) == pytest.approx(4.0, abs=1e-5)
    assert target_momentum(0.99, 0, 100) == pytest.approx(0.99)
    assert target_momentum(0.99, 100, 100) == pytest.approx(1.0)
    assert 0.99 < target_momentum(0.99, 50, 100) < 1.0
    assert projection_std(torch.ones(32, 8) + 1e-3 * torch.randn(32, 8)) < 0.05


@pytest.mark.parametrize(
    "override, words",
    [
        ("paths=1", "'paths' must be >= 2"),
        ("sampling=greedy", "'sampling' must be one of fair, random"),
        ("schedule=parallel", "'schedule' must be one of sequential, frozen"),
        ("momentum=1.0", "'momentum' must be in [0, 1)"),
    ],
)
def test_bad_recipes_are_refused_naming_the_key(override, words):
    with pytest.raises(BadInput, match=words.replace("[", r"\[").replace(")", r"\)")):
        _recipe(override)


class Stop(Exception):
    pass


def _stop_in_block_1(event, **fields):
    if event == "log" and str(fields.get("message", "")).startswith("block 1 epoch 1"):
        raise Stop


def test_training_resumes_to_the_same_weights(tmp_path):
    from dnatool.train.bossnas_loop import KIND, checkpoint_path, run_bossnas
    from dnatool.utils import io

    recipe = _recipe()
    straight = run_bossnas(recipe, tmp_path / "a")
    with pytest.raises(Stop):
        run_bossnas(recipe, tmp_path / "b", report=_stop_in_block_1)
    with pytest.raises(BadInput, match="--resume"):
        run_bossnas(recipe, tmp_path / "b")
    resumed = run_bossnas(recipe, tmp_path / "b", resume=True)
    assert resumed["best"] == straight["best"]
    a = io.load_checkpoint(checkpoint_path(tmp_path / "a"), KIND)
    b = io.load_checkpoint(checkpoint_path(tmp_path / "b"), KIND)
    assert all(torch.equal(a["target"][key], b["target"][key]) for key in a["target"])


def _projection_stds(recipe, checkpoint) -> list[float]:
    """Per block: the spread of the target's projections of its best path on the rating views."""
    from dnatool.rate.bossnas import rating_batches
    from dnatool.train.bossnas_loop import BossState

    state = BossState(recipe, torch.device("cpu"))
    state.load(checkpoint)
    va, _, _ = rating_batches(state.splits, recipe, torch.device("cpu"))
    net, best = state.target.eval(), state.best
    with torch.no_grad():
        return [
            projection_std(net.project(net.prefix(va, best, k), k, best[k], net.in_width(best, k)))
            for k in range(len(best))
        ]


@pytest.mark.slow
def test_the_tiny_recipe_keeps_its_projections_spread(tmp_path):
    """The shipped bossnas-tiny recipe (3 epochs a block): the target's projections stay spread
    (measured 0.74-0.76 per block; 0 would be a collapse to one point)."""
    from dnatool.train.bossnas_loop import KIND, checkpoint_path, run_bossnas
    from dnatool.train.recipe import load_train_recipe
    from dnatool.utils import io

    recipe = load_train_recipe("bossnas-tiny")
    run_bossnas(recipe, tmp_path / "run")
    checkpoint = io.load_checkpoint(checkpoint_path(tmp_path / "run"), KIND)
    assert min(_projection_stds(recipe, checkpoint)) > 0.5


@pytest.mark.slow  # train, rate and search through the CLI
def test_rate_writes_score_lists_that_search_reads_and_leaves_the_target_alone(cli, tmp_path):
    from dnatool.rate.bossnas import rate_block
    from dnatool.train.bossnas_loop import KIND, BossState, checkpoint_path
    from dnatool.utils import io

    run = tmp_path / "run"
    overrides = [x for o in (*SHORT, "schedule=frozen", "sampling=random") for x in ("-o", o)]
    assert cli("train", "bossnas-tiny", *overrides, "--out", str(run)).code == 0
    result = cli("rate", str(run), "--json")
    assert result.code == 0, result.stderr
    blocks = json.loads(result.stdout)["blocks"]
    space = load_space("tiny-w")
    for k in range(len(space.blocks)):
        lst = np.load(run / "scores" / f"block_{k}.npz")
        assert len(lst["scores"]) == blocks[str(k)]["paths"] == len(list(block_paths(space, k)))
        assert lst["scores"].mean() == pytest.approx(1.0)  # relative to the block's mean distance
    searched = cli("search", str(run), "--params", "80k", "--json")
    assert searched.code == 0, searched.stderr
    recipe = _recipe("schedule=frozen", "sampling=random")
    state = BossState(recipe, torch.device("cpu"))
    state.load(io.load_checkpoint(checkpoint_path(run), KIND))
    before = {k: v.clone() for k, v in state.target.state_dict().items()}
    again = rate_block(state.target, state.splits, 0, [], recipe, torch.device("cpu"))
    assert all(torch.equal(before[k], v) for k, v in state.target.state_dict().items())
    first = np.load(run / "scores" / "block_0.npz")["scores"]
    assert np.allclose(again.scores, first)  # fixed views and calibration batch: repeatable
    assert cli("rate", str(run), "--norm", "var").code == 2


@pytest.mark.parametrize(
    "name", ["bossnas-tiny", pytest.param("bossnas-hybrid-tiny", marks=pytest.mark.slow)]
)
def test_prefix_shared_recalibration_equals_per_path_recalibration(name):
    """Rating walks each cell's path tree, refilling BN statistics once per prefix: the scores
    must be exactly those of recalibrating and running every path on its own (MBConv ops, and
    HyTra's ResConv / ResAtt, whose ByobNet BatchNorms are refilled the same way)."""
    from dnatool.rate.bossnas import rate_block
    from dnatool.train.bossnas_loop import BossState

    recipe = _recipe("rate_batch_size=7", name=name)  # several rating chunks per view
    state = BossState(recipe, torch.device("cpu"))
    with torch.no_grad():  # trained-looking BN statistics, so that a missed refill shows
        for m in state.target.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    space, cpu = state.space, torch.device("cpu")
    best = []
    for k in range(len(space.blocks)):
        shared = rate_block(state.target, state.splits, k, best, recipe, cpu)
        alone = rate_block(state.target, state.splits, k, best, recipe, cpu, shared=False)
        assert shared.choices == alone.choices
        assert np.array_equal(shared.scores, alone.scores)
        assert len(set(shared.scores.tolist())) > 1
        block = space.blocks[k]
        n = len(block.ops)
        assert alone.layer_evals == sum(c.layers * n**c.layers for c in block.cells)
        assert shared.layer_evals == sum(n ** (d + 1) for c in block.cells for d in range(c.layers))
        best.append(shared.best)


@pytest.mark.slow
def test_torchrun_two_processes_train_rate_and_search(cli, tmp_path):
    """DDP on CPU (gloo): both ranks sample the same paths and stay in step through every block's
    rating (rank 0 rates and sends the best path); rank 0's run is rated and searched as usual."""
    import os
    import subprocess
    import sys

    from dnatool.train.bossnas_loop import KIND, checkpoint_path
    from dnatool.utils import io

    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "dnatool", "train", "bossnas-tiny", "--out", str(run),
        *[x for o in (*SHORT, "device=cpu", "workers=0") for x in ("-o", o)],
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 processes" in proc.stdout + proc.stderr
    checkpoint = io.load_checkpoint(checkpoint_path(run), KIND)
    space = load_space("tiny-w")
    assert checkpoint["block"] == len(space.blocks) == len(checkpoint["best"])
    assert all(np.isfinite(row[2]) for row in checkpoint["history"])
    assert cli("rate", str(run)).code == 0
    assert cli("search", str(run), "--params", "80k").code == 0


def test_a_process_trains_on_its_share_of_each_epoch_at_the_global_batch_rate():
    from dnatool.train.bossnas_loop import BossState

    recipe = _recipe("max_steps_per_epoch=null")
    alone = BossState(recipe, torch.device("cpu"))
    pair = BossState(recipe, torch.device("cpu"), world=2)
    n = len(alone.splits.train) // recipe.batch_size
    assert (alone.steps_per_epoch(), pair.steps_per_epoch()) == (n, n // 2)
    alone.new_optimizer(), pair.new_optimizer()
    rates = [s.optimizer.param_groups[0]["initial_lr"] for s in (alone, pair)]
    assert rates[1] == pytest.approx(2 * rates[0])  # LARS rate of the global batch


@pytest.mark.slow
def test_hybrid_tiny_recipe_trains_rates_searches_retrains_and_exports(cli, tmp_path):
    """The shipped bossnas-hybrid-tiny recipe (ResConv / ResAtt ops): projections stay spread
    (measured 0.62-0.71 per block), and the whole chain runs on the CLI down to ONNX parity."""
    from dnatool.train.bossnas_loop import KIND, checkpoint_path, run_bossnas
    from dnatool.train.recipe import load_train_recipe
    from dnatool.utils import io

    recipe = load_train_recipe("bossnas-hybrid-tiny")
    run = tmp_path / "run"
    run_bossnas(recipe, run)
    checkpoint = io.load_checkpoint(checkpoint_path(run), KIND)
    assert min(_projection_stds(recipe, checkpoint)) > 0.3
    assert cli("rate", str(run)).code == 0
    searched = cli("search", str(run), "--macs", "2M", "--json")
    assert searched.code == 0, searched.stderr
    assert json.loads(searched.stdout)["macs"] <= 2_000_000
    model = tmp_path / "model"
    retrained = cli("retrain", str(run / "search.json"), "--epochs", "1", "--out", str(model))
    assert retrained.code == 0, retrained.stderr
    exported = cli("export", str(model), "--onnx", str(tmp_path / "m.onnx"), "--json")
    assert exported.code == 0, exported.stderr
    assert json.loads(exported.stdout)["max_abs_diff"] <= 1e-4

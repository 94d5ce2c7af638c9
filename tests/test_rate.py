"""Feature-sharing evaluation must equal naive per-path evaluation exactly (DNA Algorithm 1)."""

from __future__ import annotations

import pytest
import torch

from dnatool.arch.space import Cell as SpaceCell
from dnatool.arch.space import load_space
from dnatool.errors import BadInput
from dnatool.nn.supernet import Cell, Supernet
from dnatool.nn.timm_adapter import build_model
from dnatool.rate.bench import bench_rate
from dnatool.rate.feature_sharing import score_cell_naive, score_cell_shared


def _cell(layers: int, own_width: bool = False) -> Cell:
    torch.manual_seed(0)
    space = load_space("tiny").with_cells(1, (SpaceCell(layers, 8),))
    cell = Cell(space, 1, 0, in_chs=8, out_chs=12, own_width=own_width)
    for module in cell.modules():  # trained-looking BN statistics, so recalibration changes scores
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return cell


def _batches(n: int = 2):
    gen = torch.Generator().manual_seed(1)
    return [
        (torch.randn(4, 8, 8, 8, generator=gen), torch.randn(4, 12, 4, 4, generator=gen))
        for _ in range(n)
    ]


@pytest.mark.parametrize("norm", ["std", "var"])
@pytest.mark.parametrize("recal", [False, True])
@pytest.mark.parametrize("own_width", [False, True])
def test_prefix_sharing_equals_naive(norm, recal, own_width):
    cell = _cell(3, own_width)
    batches = _batches()
    calib = torch.randn(4, 8, 8, 8, generator=torch.Generator().manual_seed(2)) if recal else None
    shared = score_cell_shared(cell, batches, norm, calib)
    naive = score_cell_naive(cell, batches, norm, calib)
    assert len(shared.scores()) == 4**3
    assert shared.scores() == naive.scores()
    assert shared.layer_evals == 2 * (4 + 16 + 64) and naive.layer_evals == 2 * 3 * 64


def test_cells_keeping_their_own_width_are_the_deployed_layers_behind_an_adapter():
    """cell_output=own: a cell's layers are the deployed network's (its width, its residuals)
    and a 1x1 adapter maps its output to the teacher's width; the default makes the last layer
    output the teacher's width instead, so a narrow cell is never narrow in the supernet."""
    space = load_space("ranking-narrow")
    choices = [(1, (0, 3)), (0, (2,)), (2, (1, 1))]
    deployed = build_model(space.to_arch(choices)).blocks[1]  # block 0's stage (after `fixed`)
    x = torch.randn(2, 8, 16, 16)
    for mode, last_width, same_as_deployed in (
        ("teacher", 32, [True, False]),
        ("own", 12, [True, True]),
    ):
        cell = Supernet(space, [32, 64, 128], mode).blocks[0].cells[1].eval()
        layers = [cell.layers[i][op] for i, op in enumerate((0, 3))]
        assert [
            str(layer) == str(deployed[i]) for i, layer in enumerate(layers)
        ] == same_as_deployed
        assert layers[1](layers[0](x)).shape[1] == last_width
        assert cell(x, (0, 3)).shape == (2, 32, 8, 8)
        assert isinstance(cell.adapter, torch.nn.Conv2d) == (mode == "own")
    assert Supernet(space, [32, 64, 128]).blocks[0].cells[1].adapter.__class__ is torch.nn.Identity
    with pytest.raises(BadInput, match="token cells"):
        vit = load_space("vit-tiny")
        Supernet(vit, [64] * len(vit.blocks), "teacher")


def test_bn_recalibration_is_computed_once_per_prefix_across_batches():
    cell = _cell(3)
    batches = _batches(3)
    calib = torch.randn(4, 8, 8, 8, generator=torch.Generator().manual_seed(2))
    shared = score_cell_shared(cell, batches, "std", calib)
    naive = score_cell_naive(cell, batches, "std", calib)
    assert shared.scores() == naive.scores()
    assert shared.recalibrations == 4 + 16 + 64
    assert naive.recalibrations == 3 * 3 * 64
    other = torch.randn(4, 8, 8, 8, generator=torch.Generator().manual_seed(3))
    assert score_cell_shared(cell, batches, "std", other).scores() != shared.scores()


def test_recalibration_and_norm_change_scores():
    cell = _cell(2)
    batches = _batches(1)
    plain = score_cell_shared(cell, batches, "std").scores()
    var = score_cell_shared(cell, batches, "var").scores()
    recal = score_cell_shared(cell, batches, "std", batches[0][0]).scores()
    assert plain != recal and plain != var
    spread = batches[0][1].std()
    assert all(abs(var[p] * spread.item() ** 2 - plain[p] * spread.item()) < 1e-4 for p in plain)


def test_bench_rate_default_cell_has_identical_scores_and_the_predicted_counts():
    data = bench_rate(width=4, size=2, batch=1, repeats=1)
    assert data["identical"] is True
    assert (data["layers"], data["ops"], data["paths"]) == (4, 6, 1296)
    assert (data["shared_layer_evals"], data["naive_layer_evals"]) == (1554, 5184)


def test_bench_rate_json_reports_warm_medians(cli):
    import json

    result = cli(
        "bench", "rate", "--layers", "2", "--width", "4", "--size", "2", "--batch", "1", "--json"
    )
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"speedup", "identical", "layers", "ops", "paths"}
    assert data["identical"] is True and (data["layers"], data["paths"]) == (2, 36)
    repeats = data["setup"]["repeats"]
    assert repeats >= 3 and len(data["shared_runs"]) == len(data["naive_runs"]) == repeats
    assert data["shared_seconds"] == sorted(data["shared_runs"])[repeats // 2]
    assert data["speedup"] == data["naive_seconds"] / data["shared_seconds"]

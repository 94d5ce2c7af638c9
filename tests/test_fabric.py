"""HyTra's resolution fabric (`hytra`, `hytra-tiny`): every layer keeps or halves the scale, so a
cell is entered from one scale only and attention is allowed only at the small scales. Counted
exactly, sampled uniformly, built by timm, run by the SPOS / BossNAS supernet as deployed, and
searched exactly (checked against brute force over every route)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from dnatool.arch.paths import all_paths
from dnatool.arch.space import load_space, space_from_dict
from dnatool.arch.spec import parse_block
from dnatool.errors import BadInput
from dnatool.nn.timm_adapter import build_model, count_macs, count_params

TINY = "hytra-tiny"


def _routes(space):
    """Every architecture of a fabric space, by brute force over all cells and paths."""
    per_block = [
        [(c, p) for c, p in zip(*(x.tolist() for x in all_paths(space, k)), strict=True)]
        for k in range(len(space.blocks))
    ]
    for combo in itertools.product(*per_block):
        choices = [(c, tuple(op for op in p if op >= 0)) for c, p in combo]
        try:
            space.chain_widths(choices)
        except BadInput:
            continue
        yield choices


def _layer_count(
    layers: int, scales: int, allowed: list[int], starts=(0,), ends: tuple | None = None
) -> int:
    """Routes of `layers` choice layers from any of `starts` (the downsampling convs before them
    have no choice), each keeping or halving, weighted by the ops allowed at each layer's input
    scale, ending at any of `ends`: a per-layer count that ignores blocks altogether."""
    ways = [int(s in starts) for s in range(scales)]
    for _ in range(layers):
        ways = [
            ways[s] * allowed[s] + (ways[s - 1] * allowed[s - 1] if s else 0) for s in range(scales)
        ]
    return sum(ways[s] for s in (range(scales) if ends is None else ends))


def test_the_fabric_size_counts_every_route_once():
    tiny = load_space(TINY)
    assert tiny.size == tiny.distinct == sum(1 for _ in _routes(tiny)) == 769
    assert tiny.distinct == _layer_count(6, 3, [1, 2, 2], starts=(0, 1), ends=(1, 2))
    # 16 layers, 4 scales, any start, ResAtt from 1/16 on, ending at 1/32: the paper's
    # "about 2.8e6"
    hytra = load_space("hytra")
    assert hytra.distinct == _layer_count(16, 4, [1, 1, 2, 2], (0, 1, 2, 3), (3,)) == 2_818_086
    assert not hytra.coupled or hytra.in_widths(4) == (2048,)
    assert tiny.coupled and tiny.in_widths(3) == (64, 128)


def test_routes_may_start_after_downsampling_convs():
    """A route starting at a smaller scale opens block 0 with 3x3 stride-2 conv layers (no
    choice), one per halving, keeping the width entering block 0 (a stem's convs); its first
    choice layer then projects to its scale's width."""
    space = load_space(TINY)
    down = space.fabric.downsample
    assert space.blocks[0].ops[down].name == "down_k3"
    starts = set()
    for c, cell in enumerate(space.blocks[0].cells):
        options = space.blocks[0].layer_options(c)
        lead = [d for d, o in enumerate(options) if o == (down,)]
        assert lead == list(range(len(lead)))  # only leading layers, and only the conv
        assert cell.layers == 2 + len(lead)
        layers = space.path_layers(0, (c, tuple(o[0] for o in options)))
        for layer in layers[: len(lead)]:
            assert (layer.spec.type, layer.spec.kernel, layer.spec.stride) == ("cn", 3, 2)
            assert layer.in_width == layer.out_width == space.in_widths(0)[0]
        assert layers[len(lead)].out_width == space.fabric.widths[cell.scales[len(lead)]]
        starts.add(len(lead))
        assert all(down not in o for o in options[len(lead) :])
    assert starts == {0, 1}
    assert all(
        down not in o
        for b in space.blocks[1:]
        for c in range(len(b.cells))
        for o in b.layer_options(c)
    )


def test_a_route_is_a_timm_network_with_the_fabric_geometry():
    """Each layer takes the previous one's output; the first enters at its cell's scale; a layer
    that halves mid-block opens a timm stage (timm strides a stage's first block only); the
    counts of the searchable layers plus the fixed part are the network's own."""
    from dnatool.search import costs as C

    space = load_space(TINY)
    fabric = space.fabric
    rng = np.random.default_rng(0)
    mid_block_stride = False
    for _ in range(6):
        choices = space.sample(rng)
        widths = space.chain_widths(choices)
        size, width = space.block_in_resolution(0), widths[0]
        searchable = np.zeros(2)
        for k, choice in enumerate(choices):
            cell = space.blocks[k].cells[choice[0]]
            for d, layer in enumerate(space.path_layers(k, choice, widths[k])):
                assert (layer.in_width, layer.in_res) == (width, size)
                assert layer.out_res == space.scale_resolution(cell.scales[d])
                if layer.spec.type != "cn":  # a choice layer: its scale's width
                    assert layer.out_width == fabric.widths[cell.scales[d]]
                mid_block_stride |= d > 0 and layer.spec.stride == 2
                size, width = layer.out_res, layer.out_width
            cells, paths = (np.array([x]) for x in (choice[0], list(choice[1])))
            pm = C.path_params_macs(space, k, cells, paths)
            searchable += pm[space.in_widths(k).index(widths[k]), 0]
        assert (width, size) == space.head_input(widths[-1])
        arch = space.to_arch(choices)
        assert all(b.stride == 1 for stage in arch.stages for b in stage[1:])
        model = build_model(arch).eval()
        with torch.no_grad():
            features = model.forward_features(torch.randn(2, 3, 32, 32))
        assert features.shape[-1] == size
        fixed = np.array(C.fixed_params_macs(space, widths[-1]))
        assert tuple(fixed + searchable) == (count_params(model), count_macs(model, (1, 3, 32, 32)))
    assert mid_block_stride


def test_routes_the_fabric_does_not_have_are_refused():
    space = load_space(TINY)
    block0, block1 = space.blocks[0], space.blocks[1]
    at16 = next(c for c, cell in enumerate(block0.cells) if cell.scales[-1] == 0)
    from32 = next(c for c, cell in enumerate(block1.cells) if cell.in_scale == 1)
    route = [(at16, (0, 0)), (from32, (0, 0)), space.example()[2]]
    with pytest.raises(BadInput, match="fabric cannot take that route"):
        space.to_arch(route)
    # ResAtt (op 1) is not allowed at the 16 px scale
    with pytest.raises(BadInput, match="does not fit cell"):
        space.path_layers(0, (at16, (1, 0)))
    base = {
        "version": 2,
        "name": "f",
        "ops": {"type": "hytra", "heads": [4]},
        "fabric": {"widths": [32, 64], "ops": [["rc_k3"], ["rc_k3", "ra_h4"]]},
        "blocks": [{"layers": 2}],
    }
    assert space_from_dict(base).distinct == _layer_count(2, 2, [1, 2])
    for change, named in [
        ({"fabric": {"widths": [64, 32]}}, "strictly increasing"),
        ({"fabric": {"widths": [32, 64], "ops": [["rc_k3"], ["ra_h9"]]}}, "'ra_h9'"),
        ({"fabric": {"widths": [32, 64], "ops": [["rc_k3"]]}}, "each of the 2 scales"),
        ({"fabric": {"widths": [32, 64], "scales": 2}}, "'scales'"),
        ({"blocks": [{"layers": 2, "cells": [2]}]}, r"\{layers: N\}"),
        ({"ops": {"type": "hytra", "heads": [3]}, "fabric": {"widths": [32, 64]}}, "h3"),
        ({"fabric": {"widths": [32, 64], "starts": [0, 1]}}, "need a `downsample` op"),
        ({"fabric": {"widths": [32, 64], "downsample": "down_k5"}}, "'down_k5' is not an op"),
        ({"fabric": {"widths": [32, 64], "ends": [2]}}, r"ends must be scales 0\.\.1"),
        ({"fabric": {"widths": [32, 64, 128], "ends": [2]}, "blocks": [{"layers": 1}]}, "reaches"),
    ]:
        with pytest.raises(BadInput, match=named):
            space_from_dict({**base, **change})


def test_sampling_is_uniform_over_the_routes():
    space = load_space(TINY)
    index = {tuple(r): i for i, r in enumerate(_routes(space))}
    rng = np.random.default_rng(1)
    counts = np.zeros(len(index))
    for _ in range(20 * len(index)):
        counts[index[tuple(space.sample(rng))]] += 1
    assert counts.min() > 0
    assert stats.chisquare(counts).pvalue > 1e-3


def test_score_lists_refuse_an_op_the_scale_does_not_allow():
    from dnatool.rate.score_lists import ScoreList, check_score_list

    space = load_space(TINY)
    cells, paths = all_paths(space, 0)
    assert len(cells) == space.blocks[0].paths
    check_score_list(ScoreList(cells, paths, np.zeros(len(cells))), space, 0, "block 0")
    bad = paths.copy()
    row = int(np.flatnonzero([space.blocks[0].cells[c].scales[0] == 0 for c in cells])[0])
    bad[row, 0] = 1  # ResAtt at 16 px
    with pytest.raises(BadInput, match=f"row {row}"):
        check_score_list(ScoreList(cells, bad, np.zeros(len(cells))), space, 0, "block 0")


def test_the_spos_supernet_runs_the_standalone_fabric_network():
    from dnatool.nn.spos import SposSupernet, extract_subnet

    space = load_space(TINY)
    torch.manual_seed(0)
    supernet = SposSupernet(space).eval()
    cell = supernet.blocks[1][0]
    assert list(cell.first) == [str(w) for w in space.cell_in_widths(1, 0)]
    rng = np.random.default_rng(3)
    x = torch.randn(2, 3, 32, 32)
    for _ in range(3):
        choices = space.sample(rng)
        model = extract_subnet(supernet, choices).eval()
        with torch.no_grad():
            assert torch.allclose(model(x), supernet(x, choices), atol=1e-5)


def _problem(space, names, budget, seed):
    from dnatool.rate.score_lists import ScoreList
    from dnatool.search.engine import build_problem, path_costs
    from dnatool.utils.events import quiet

    rng = np.random.default_rng(seed)
    lists = []
    for k in range(len(space.blocks)):
        cells, paths = all_paths(space, k)
        lists.append(ScoreList(cells, paths, rng.random(len(cells))))
    costs = path_costs(space, lists, None, quiet)
    return lists, build_problem(space, lists, costs, names, budget, [1.0] * len(lists))


def _oracle(space, lists, names, budget, top):
    """Every route scored and costed from the space itself: fixed + its layers' counts."""
    from dnatool.search import costs as C

    rows = [
        {
            (int(c), tuple(int(o) for o in p if o >= 0)): i
            for i, (c, p) in enumerate(zip(lst.cells, lst.paths))
        }
        for lst in lists
    ]
    found = []
    for route in _routes(space):
        widths = space.chain_widths(route)
        score, cost = 0.0, np.array(C.fixed_params_macs(space, widths[-1]), dtype=float)
        for k, choice in enumerate(route):
            cells, paths = np.array([choice[0]]), np.array([list(choice[1])])
            cost = (
                cost
                + C.path_params_macs(space, k, cells, paths)[space.in_widths(k).index(widths[k]), 0]
            )
            score += lists[k].scores[rows[k][choice]]
        picked = cost[[("params", "macs").index(n) for n in names]]
        if (picked <= [budget[n] for n in names]).all():
            found.append((score, tuple(rows[k][c] for k, c in enumerate(route))))
    return sorted(found)[:top]


@pytest.mark.parametrize(("names", "top"), [(["macs"], 1), (["params", "macs"], 4)])
def test_coupled_search_equals_brute_force_on_hytra_tiny(names, top):
    """The exact solvers on the fabric problem (impossible pairs cost +inf) give brute force's
    answers, and those are the best routes of the space itself."""
    from dnatool.search.coupled import coupled_brute_force, coupled_dfs, coupled_solve

    space = load_space(TINY)
    for seed in range(3):
        budget = {"params": 100_000.0, "macs": 3_000_000.0}
        lists, problem = _problem(space, names, budget, seed)
        assert problem.routes == space.distinct
        truth = coupled_brute_force(problem, top)
        assert coupled_solve(problem, top) == truth
        if top == 1:
            assert coupled_dfs(problem) == truth[0]
        oracle = _oracle(space, lists, names, budget, top)
        assert [s.indices for s in truth] == [idx for _, idx in oracle]
        assert [s.score for s in truth] == pytest.approx([sc for sc, _ in oracle])


def test_coupled_front_skips_impossible_pairs():
    from dnatool.search.coupled import coupled_brute_force, coupled_front

    space = load_space(TINY)
    _, problem = _problem(space, ["macs"], {}, 0)
    front = coupled_front(problem, 0)
    assert np.isfinite(front.cost).all()
    best = coupled_brute_force(problem, 1)[0]
    assert front.score.min() == pytest.approx(best.score)


def test_bossnas_samples_and_rates_cells_on_their_own_routes():
    """A step samples paths of the cells entered at one scale; rating runs each cell on the
    best route ending at its scale, prefix-shared BN refills equal per-path ones, and the routes
    feeding the next block are each width's best-scored path after its own route."""
    from dnatool.rate.bossnas import rate_block
    from dnatool.train.bossnas import block_routes, routes_after, sample_paths
    from dnatool.train.bossnas_loop import BossState
    from dnatool.train.recipe import load_train_recipe

    space = load_space(TINY)
    generator = torch.Generator().manual_seed(0)
    cells = [c for c in range(len(space.blocks[1].cells)) if space.cell_in_widths(1, c) == (64,)]
    for _ in range(20):
        paths = sample_paths(space, 1, 4, True, generator, cells)
        assert all(c in cells and space._check_choice(1, (c, p)) for c, p in paths)
    recipe = load_train_recipe(
        "bossnas-hytra-tiny",
        (
            "epochs=1",
            "max_steps_per_epoch=2",
            "rate_per_class=3",
            "batch_size=16",
            "rate_batch_size=7",
        ),
    )
    state = BossState(recipe, torch.device("cpu"))
    cpu, best, ends = torch.device("cpu"), [], []
    for k in range(len(space.blocks)):
        routes = block_routes(space, k, best, ends)
        assert sorted(routes) == sorted(space.in_widths(k))
        shared = rate_block(state.target, state.splits, k, best, recipe, cpu, routes=routes)
        alone = rate_block(
            state.target, state.splits, k, best, recipe, cpu, shared=False, routes=routes
        )
        assert shared.choices == alone.choices
        assert np.array_equal(shared.scores, alone.scores)
        block = space.blocks[k]
        assert alone.layer_evals == sum(
            len(o) * block.cell_paths(c)
            for c in range(len(block.cells))
            for o in [block.layer_options(c)]
        )
        ends.append(routes_after(space, k, routes, shared.choices, shared.scores))
        for width, route in ends[-1].items():
            assert space.chain_widths(route)[-1] == width
            ending = [
                s
                for (c, _), s in zip(shared.choices, shared.scores)
                if block.cells[c].width == width
            ]
            i = shared.choices.index(route[-1])
            assert shared.scores[i] == min(ending)
        best.append(shared.best)


def test_dna_refuses_a_fabric_space(cli, tmp_path):
    result = cli("train", "dna-tiny", "-o", "space=hytra-tiny", "--out", str(tmp_path / "r"))
    assert result.code == 2
    assert "resolution fabric" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_bossnas_hytra_tiny_trains_rates_searches_retrains_and_exports(cli, tmp_path):
    """The shipped bossnas-hytra-tiny recipe: projections of each block's best route stay spread
    (no collapse), and the chain runs on the CLI: rate, a latency table of the fabric, search
    under MACs and latency budgets, retrain, ONNX parity."""
    import json

    from dnatool.rate.bossnas import rating_batches
    from dnatool.train.bossnas import projection_std
    from dnatool.train.bossnas_loop import KIND, BossState, checkpoint_path, run_bossnas
    from dnatool.train.recipe import load_train_recipe
    from dnatool.utils import io

    recipe = load_train_recipe("bossnas-hytra-tiny")
    run = tmp_path / "run"
    run_bossnas(recipe, run)
    state = BossState(recipe, torch.device("cpu"))
    state.load(io.load_checkpoint(checkpoint_path(run), KIND))
    va, _, _ = rating_batches(state.splits, recipe, torch.device("cpu"))
    net, space = state.target.eval(), state.space
    spreads = []
    with torch.no_grad():
        for k, choice in enumerate(state.best):
            route = state.ends[k][space.blocks[k].cells[choice[0]].width]
            assert route[-1] == choice
            x = net.prefix(va, route, k)
            spreads.append(projection_std(net.project(x, k, choice, net.in_width(route, k))))
    assert min(spreads) > 0.3, spreads
    assert cli("rate", str(run)).code == 0
    searched = cli("search", str(run), "--macs", "3M", "--json")
    assert searched.code == 0, searched.stderr
    assert json.loads(searched.stdout)["macs"] <= 3_000_000
    lut = tmp_path / "lut.json"
    measured = cli(
        "profile", "measure", str(run), "--device", "ort-cpu", "--quick", "--out", str(lut)
    )
    assert lut.is_file(), measured.stderr  # tiny nets: its hold-out check may fail ("too fast")
    fast = cli("search", str(run), "--lut", str(lut), "--latency", "10ms", "--force", "--json")
    assert fast.code == 0, fast.stderr
    assert json.loads(fast.stdout)["latency_ms"] <= 10
    model = tmp_path / "model"
    retrained = cli("retrain", str(run / "search.json"), "--epochs", "1", "--out", str(model))
    assert retrained.code == 0, retrained.stderr
    exported = cli("export", str(model), "--onnx", str(tmp_path / "m.onnx"), "--json")
    assert exported.code == 0, exported.stderr
    assert json.loads(exported.stdout)["max_abs_diff"] <= 1e-4


def test_latency_table_keys_and_samples_follow_the_fabric():
    """The table's keys are exactly the layers of the fabric's routes (resolution and stride in
    the key); each block's measured samples on an input width use only the cells entered there,
    with each scale's ops, and cover every key of that width."""
    from dnatool.profile.lut import head_key, layer_keys, space_keys, stem_key
    from dnatool.profile.measure import Protocol, block_samples, samples_per_block

    space = load_space(TINY)
    routes = list(_routes(space))
    keys = {stem_key(space)} | {head_key(space, width=w) for w in space.in_widths(3)}
    for route in routes:
        widths = space.chain_widths(route)
        keys |= {
            key for k, c in enumerate(route) for key in layer_keys(space, k, c, in_width=widths[k])
        }
    assert set(space_keys(space)) == keys
    rng = np.random.default_rng(0)
    for k in range(len(space.blocks)):
        for width in space.in_widths(k):
            n = samples_per_block(space, k, Protocol(), width)
            samples = block_samples(space, k, n, rng, width)
            assert len(samples) == len(set(samples)) == n
            assert all(width in space.cell_in_widths(k, c) for c, _ in samples)
            wanted = {
                key
                for route in routes
                if space.chain_widths(route)[k] == width
                for key in layer_keys(space, k, route[k], in_width=width)
            }
            got = {
                key for choice in samples for key in layer_keys(space, k, choice, in_width=width)
            }
            assert got == wanted


def test_strata_and_latency_search_on_the_fabric(tmp_path):
    """Fastest and slowest routes by DP equal brute force; stratified validation networks are
    routes spanning that range; a latency-budget search equals brute force over the routes."""
    from dnatool.profile.lut import load_lut
    from dnatool.profile.samples import choices_text
    from dnatool.profile.strata import extremes, latency_costs, stratified
    from dnatool.rate.score_lists import ScoreList
    from dnatool.search.engine import search
    from dnatool.search.synthetic import write_synthetic_lut

    space = load_space(TINY)
    table = load_lut(write_synthetic_lut(tmp_path / "lut.json", space, seed=3))
    routes = list(_routes(space))
    every = np.array([table.predict_ms(space, r) for r in routes])
    costs = latency_costs(space, table)
    lo, hi = extremes(costs)
    assert costs.total(lo) == pytest.approx(every.min())
    assert costs.total(hi) == pytest.approx(every.max())
    nets = stratified(space, costs, 8, seed=0)
    predicted = [table.predict_ms(space, c) for c in nets]  # refused if not a route
    assert predicted[0] == pytest.approx(every.min()) and predicted[-1] == pytest.approx(
        every.max()
    )
    assert len({choices_text(c) for c in nets}) == 8

    rng = np.random.default_rng(5)
    lists = []
    for k in range(len(space.blocks)):
        cells, paths = all_paths(space, k)
        lists.append(ScoreList(cells, paths, rng.random(len(cells))))
    budget = float(np.median(every))
    result = search(space, lists, {"latency_ms": budget}, lut=table)
    rows = [
        {
            (int(c), tuple(int(o) for o in p if o >= 0)): i
            for i, (c, p) in enumerate(zip(lst.cells, lst.paths))
        }
        for lst in lists
    ]
    scores = [sum(lists[k].scores[rows[k][c]] for k, c in enumerate(r)) for r in routes]
    fits = [i for i in range(len(routes)) if every[i] <= budget]
    best = min(fits, key=lambda i: scores[i])
    won = [(int(c), tuple(int(o) for o in p)) for c, p in result.winner["choices"]]
    assert won == [(c, tuple(p)) for c, p in routes[best]]
    assert result.winner["score"] == pytest.approx(scores[best])


def test_a_route_is_an_mmseg_backbone_with_one_level_per_scale(tmp_path):
    """The levels of a searched route are the scales it visits, each with its last layer's width
    there; the mmseg backbone returns them at those strides."""
    import json

    from dnatool.backbones.levels import default_out_indices, feature_levels
    from dnatool.backbones.openmmlab import DNABackbone

    space = load_space(TINY)
    rng = np.random.default_rng(0)
    for i in range(3):
        choices = space.sample(rng)
        arch = space.to_arch(choices)
        widths = space.chain_widths(choices)
        last = {0: space.in_widths(0)[0]}  # scale -> width of the last layer there
        for k, c in enumerate(choices):
            scales = space.blocks[k].cells[c[0]].scales
            for scale, layer in zip(scales, space.path_layers(k, c, widths[k]), strict=True):
                last[scale] = layer.out_width
        # scale 0 runs at the stem's stride 2: its level ends there (or the fixed stage does)
        levels = feature_levels(arch)
        assert [lv.reduction for lv in levels] == [2 * 2**s for s in sorted(last)]
        assert [lv.channels for lv in levels] == [last[s] for s in sorted(last)]
        path = tmp_path / f"arch{i}.json"
        path.write_text(json.dumps(arch.to_dict()))
        out = default_out_indices(feature_levels(arch))
        backbone = DNABackbone(arch=str(path), out_indices=out).eval()
        with torch.no_grad():
            features = backbone(torch.randn(1, 3, 32, 32))
        assert [f.shape[-1] for f in features] == [32 // levels[i].reduction for i in out]


@pytest.mark.slow
def test_spos_trains_rates_and_evolves_on_the_fabric(cli, tmp_path):
    """SPOS on hytra-tiny: uniform and FLOPs-bin sampling draw routes, rating samples routes,
    and the evolutionary search returns a route within the budget (impossible pairs are never
    candidates)."""
    import json

    run = tmp_path / "run"
    for sampling in ("flops", "uniform"):
        trained = cli(
            "train", "spos-tiny", "-o", "space=hytra-tiny", "-o", "epochs=1",
            "-o", f"sampling={sampling}", "--out", str(tmp_path / sampling),
        )  # fmt: skip
        assert trained.code == 0, trained.stderr
    run = tmp_path / "uniform"
    rated = cli("rate", str(run), "--sample", "4", "--json")
    assert rated.code == 0, rated.stderr
    small = ["--population", "6", "--select", "3", "--mutations", "2", "--crossovers", "2"]
    out = tmp_path / "search.json"
    found = cli("search", str(run), "--macs", "3M", *small, "--generations", "2", "--out", str(out))
    assert found.code == 0, found.stderr
    from dnatool.arch.resolve import resolve_arch
    from dnatool.arch.space import load_space

    arch = resolve_arch(str(out))
    choices = [(c, tuple(p)) for c, p in arch.meta["choices"]]
    space = load_space(TINY)
    assert space.to_arch(choices).stages == arch.stages  # a route of the fabric
    assert json.loads(out.read_text())["winner"]["macs"] <= 3_000_000


def test_a_path_built_alone_strides_where_its_layers_say():
    """`build_layers` (supernet ops, profiled block paths) opens a timm stage at every later
    stride, as the network does: timm would otherwise run a stage's later layers at stride 1 and
    a profiled path would not be the layers its table keys name."""
    from dnatool.nn.timm_adapter import build_layers
    from dnatool.profile.measure import block_net

    space = load_space(TINY)
    for k, block in enumerate(space.blocks):
        for c, cell in enumerate(block.cells):
            if all(b == a for a, b in zip((cell.in_scale, *cell.scales), cell.scales)):
                continue  # no layer halves
            choice = (c, tuple(o[-1] for o in block.layer_options(c)))
            layers = space.path_layers(k, choice)
            module = build_layers(layers[0].in_width, [x.spec for x in layers], space.act).eval()
            with torch.no_grad():
                out = module(torch.randn(1, layers[0].in_width, layers[0].in_res, layers[0].in_res))
            assert tuple(out.shape[1:]) == (
                layers[-1].out_width,
                layers[-1].out_res,
                layers[-1].out_res,
            )
            net, shape = block_net(space, k, choice, 1)
            assert shape == (1, layers[0].in_width, layers[0].in_res, layers[0].in_res)
    # `hytra`'s routes from 1/32 open with three downsampling convs (timm's own `cn` blocks)
    specs = [parse_block(t) for t in ["cn_r1_k3_s2_e1_c16"] * 3 + ["rc_r1_k3_s1_e0.25_c64"]]
    with torch.no_grad():
        out = build_layers(16, specs, "relu").eval()(torch.randn(1, 16, 32, 32))
    assert tuple(out.shape) == (1, 64, 4, 4)

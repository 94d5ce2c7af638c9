"""Per-path costs, score lists and the search engine on the `tiny` space (SYNTHETIC data)."""

from __future__ import annotations

import numpy as np
import pytest

from dnatool.arch.space import load_space
from dnatool.errors import BadInput
from dnatool.nn.timm_adapter import build_model, count_macs, count_params
from dnatool.rate.score_lists import ScoreList, check_score_list, load_score_lists, run_space
from dnatool.search import costs as C
from dnatool.search.bnb import branch_and_bound
from dnatool.search.brute import brute_force
from dnatool.search.engine import build_problem, path_costs, search
from dnatool.search.synthetic import (
    SyntheticLatencyTable,
    all_paths,
    synthetic_score_lists,
    write_synthetic_lut,
    write_synthetic_run,
)


def quiet(event, **fields):
    pass


def choice_costs(space, choices):
    """Fixed part after the chosen last width + each path's cost on the width it receives."""
    widths = space.chain_widths(choices)
    fixed = np.array(C.fixed_params_macs(space, widths[-1]))
    return fixed + sum(
        C.path_params_macs(space, k, np.array([c]), np.array([list(p)]))[
            space.in_widths(k).index(widths[k]), 0
        ]
        for k, (c, p) in enumerate(choices)
    )


@pytest.mark.parametrize(
    "name,samples", [("tiny", 2), ("dna-mbconv", 1), ("tiny-w", 4), ("dna-mbconv-w", 1)]
)
def test_fixed_plus_path_costs_equal_the_built_network(name, samples):
    space = load_space(name)
    rng = np.random.default_rng(3)
    for _ in range(samples):
        choices = space.sample(rng)
        model = build_model(space.to_arch(choices))
        expected = [
            count_params(model),
            count_macs(model, (1, 3, space.resolution, space.resolution)),
        ]
        assert choice_costs(space, choices).tolist() == expected


def test_latency_table_protocol_and_path_latency():
    space = load_space("tiny")
    table = SyntheticLatencyTable()
    assert isinstance(table, C.LatencyTable)
    cells, paths = all_paths(space, 1)
    lat = C.path_latency_ms(table, space, 1, cells, paths)
    i = 7
    assert lat[0, i] == table.path_latency_ms(
        space, 1, (int(cells[i]), tuple(int(p) for p in paths[i] if p >= 0))
    )
    assert lat.shape == (1, space.blocks[1].paths)


def per_path_latency(table, space, k, cells, paths, width=None):
    return [
        table.path_latency_ms(space, k, (int(c), tuple(int(op) for op in row if op >= 0)), width)
        for c, row in zip(cells, paths, strict=True)
    ]


@pytest.mark.parametrize(
    "name,per_block", [("tiny", None), ("dna-mbconv-small", 300), ("tiny-w", None)]
)
def test_vectorised_path_latency_equals_the_table_path_by_path(name, per_block, tmp_path):
    """Per-layer arrays summed along the paths give exactly the table's own per-path figure."""
    from dnatool.profile.lut import load_lut

    space = load_space(name)
    lut = load_lut(write_synthetic_lut(tmp_path / "lut.json", space, seed=5))
    lut.header["calibration"] = {"a": 0.87, "b": 0.3}  # a slope scales every layer
    rng = np.random.default_rng(0)
    for table in (SyntheticLatencyTable(seed=5), lut):
        assert callable(getattr(table, "layer_latency_ms", None))
        for k in range(len(space.blocks)):
            cells, paths = all_paths(space, k)
            if per_block and len(cells) > per_block:
                rows = rng.choice(len(cells), per_block, replace=False)
                cells, paths = cells[rows], paths[rows]
            got = C.path_latency_ms(table, space, k, cells, paths)
            assert got.shape == (len(space.in_widths(k)), len(cells))
            for state, width in enumerate(space.in_widths(k)):
                assert got[state].tolist() == per_path_latency(table, space, k, cells, paths, width)


def test_vectorised_path_latency_names_a_missing_entry(tmp_path):
    from dnatool.profile.lut import layer_keys, load_lut

    space = load_space("tiny")
    lut = load_lut(write_synthetic_lut(tmp_path / "lut.json", space))
    key = layer_keys(space, 1, (0, (0, 2)))[1]
    del lut.entries[key]
    cells, paths = all_paths(space, 1)
    with pytest.raises(BadInput, match="has no entry"):
        C.path_latency_ms(lut, space, 1, cells, paths)


def counted_lut(path, space):
    """A SYNTHETIC table whose entries carry params / MACs, as `dnatool profile` writes them."""
    import json

    from dnatool.profile.lut import load_lut
    from dnatool.profile.run import entry_costs

    data = json.loads(write_synthetic_lut(path, space, seed=2).read_text())
    for key, cost in entry_costs(space, 1, "fp32").items():
        data["entries"][key].update(params=cost["params"], macs=cost["macs"])
    path.write_text(json.dumps(data))
    return load_lut(path)


@pytest.mark.parametrize("name", ["tiny", "dna-mbconv-small", "tiny-w"])
def test_table_params_macs_equal_the_counted_ones(name, tmp_path):
    """A latency search reads params / MACs from the table (no torch): they must be the counts."""
    space = load_space(name)
    lut = counted_lut(tmp_path / "lut.json", space)
    for width in space.in_widths(len(space.blocks)):
        assert lut.fixed_costs(space, width) == C.fixed_params_macs(space, width)
    for k in range(len(space.blocks)):
        for got, counted in zip(lut.layer_costs(space, k), C.layer_table(space, k), strict=True):
            np.testing.assert_array_equal(got, counted)


def test_search_with_table_counts_equals_search_with_counted_costs(tmp_path):
    from dnatool.profile.lut import load_lut

    space = load_space("tiny")
    lists = synthetic_score_lists(space, seed=4)
    counted = counted_lut(tmp_path / "counted.json", space)
    plain = load_lut(write_synthetic_lut(tmp_path / "plain.json", space, seed=2))
    assert plain.layer_costs(space, 0) is None and plain.fixed_costs(space) is None
    budget = {
        "latency_ms": float(
            np.median(
                [
                    r["latency_ms"]
                    for r in search(
                        space, lists, {"latency_ms": 1e9}, lut=plain, top=1, report=quiet
                    ).front
                ]
            )
        )
    }
    budget["params"] = 1e12
    a = search(space, lists, budget, lut=counted, top=5, report=quiet)
    b = search(space, lists, budget, lut=plain, top=5, report=quiet)
    assert a.winner == b.winner and a.top == b.top and a.front == b.front


def tiny_setup():
    space = load_space("tiny")
    return space, synthetic_score_lists(space, seed=1), SyntheticLatencyTable(seed=1)


def test_search_matches_brute_force_over_the_whole_tiny_space():
    space, lists, table = tiny_setup()
    costs = path_costs(space, lists, table, quiet)
    names = ["latency_ms", "params", "macs"]
    full = build_problem(space, lists, costs, names, {}, [1.0] * 3)
    lo = full.fixed + sum(c.min(axis=0) for c in full.costs)
    hi = full.fixed + sum(c.max(axis=0) for c in full.costs)
    budgets = dict(zip(names, lo + 0.4 * (hi - lo), strict=True))
    result = search(space, lists, budgets, lut=table, weights=[1.0, 2.0, 0.5], top=4)
    truth = brute_force(build_problem(space, lists, costs, names, budgets, [1.0, 2.0, 0.5]), 4)
    assert [t["score"] for t in result.top] == [s.score for s in truth]
    assert result.winner["choices"] == [
        [lists[k].choice(i)[0], list(lists[k].choice(i)[1])] for k, i in enumerate(truth[0].indices)
    ]
    model = build_model(space.to_arch([(c, tuple(p)) for c, p in result.winner["choices"]]))
    assert result.winner["params"] == count_params(model) <= budgets["params"]
    assert result.winner["latency_ms"] <= budgets["latency_ms"]
    assert result.evaluated_space_size == space.size


def test_margin_tightens_the_budget_and_weights_change_the_objective():
    space, lists, table = tiny_setup()
    loose = search(space, lists, {"latency_ms": 1e9}, lut=table)
    tight = search(
        space, lists, {"latency_ms": loose.front[-1]["latency_ms"]}, lut=table, margin=0.02
    )
    assert tight.winner["latency_ms"] <= tight.budget["latency_ms"] < tight.requested["latency_ms"]
    weighted = search(space, lists, {"latency_ms": 1e9}, lut=table, weights=[0, 0, 1])
    assert weighted.winner["block_scores"][2] == min(lists[2].scores)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"budgets": {}}, "at least one budget"),
        ({"budgets": {"latency_ms": 5.0}, "lut": None}, "needs a latency table"),
        ({"weights": [1.0, 1.0]}, "3 non-negative numbers"),
        ({"margin": 1.0}, "margin"),
        ({"budgets": {"params": 10.0}}, "smallest achievable params is"),
    ],
)
def test_bad_requests_are_one_line_errors(kwargs, message):
    space, lists, table = tiny_setup()
    args = {"budgets": {"params": 1e9}, "lut": table, **kwargs}
    with pytest.raises(BadInput, match=message):
        search(space, lists, args.pop("budgets"), **args)


class InverseTable(SyntheticLatencyTable):
    """An in-memory table where small ops are slow: latency and params pull apart."""

    def _layer_ms(self, layer):
        return 10.0 / (layer.spec.kernel * layer.spec.exp)

    def stem_latency_ms(self, space):
        return 0.5

    def head_latency_ms(self, space, width=None):
        return 0.5


def test_budgets_feasible_alone_but_not_together():
    space, lists, _ = tiny_setup()
    table = InverseTable()
    costs = path_costs(space, lists, table, quiet)
    names = ["latency_ms", "params"]
    lo = build_problem(space, lists, costs, names, {}, [1.0] * 3)
    lowest = lo.fixed + sum(c.min(axis=0) for c in lo.costs)
    budgets = dict(zip(names, lowest, strict=True))
    assert not brute_force(build_problem(space, lists, costs, names, budgets, [1.0] * 3))
    with pytest.raises(BadInput, match="all budgets together"):
        search(space, lists, budgets, lut=table)


def test_score_lists_round_trip_and_validation(tmp_path):
    space = load_space("tiny")
    write_synthetic_run(tmp_path / "run", space, seed=2)
    assert run_space(tmp_path / "run").name == "tiny"
    lists = load_score_lists(tmp_path / "run", space)
    assert [len(lst.scores) for lst in lists] == [b.paths for b in space.blocks]
    good = lists[1]
    bad_paths = good.paths.copy()
    bad_paths[0, 0] = 9
    with pytest.raises(BadInput, match="row 0"):
        check_score_list(ScoreList(good.cells, bad_paths, good.scores), space, 1, "x")
    twice = ScoreList(
        np.concatenate([good.cells, good.cells[:1]]),
        np.concatenate([good.paths, good.paths[:1]]),
        np.concatenate([good.scores, good.scores[:1]]),
    )
    with pytest.raises(BadInput, match="twice"):
        check_score_list(twice, space, 1, "x")
    (tmp_path / "run" / "scores" / "block_2.npz").unlink()
    with pytest.raises(BadInput, match="block_2.npz not found"):
        load_score_lists(tmp_path / "run", space)


def test_paper_space_latency_budgets_are_answered_exactly():
    """dna-mbconv (1.8e17 architectures), SYNTHETIC score lists and latency table; the time it
    takes is reported by `dnatool bench search`, not asserted here."""
    from dnatool.search.bench import latency_problems, time_exact

    size, problems = latency_problems("dna-mbconv", [0.3, 0.6])
    assert size == 184_509_051_277_344_768
    for problem in problems:
        _, best = time_exact(problem)
        assert best is not None and best.costs[0] <= problem.budget[0]
    top = branch_and_bound(problems[0], 5)
    assert top[0].key == time_exact(problems[0])[1].key
    assert [s.key for s in top] == sorted(s.key for s in top) and len(top) == 5


def test_latency_search_on_a_counted_table_imports_neither_torch_nor_timm(tmp_path):
    """What keeps `dnatool search --lut` fast: the table's counts replace timm's modules."""
    import subprocess
    import sys

    space = load_space("tiny")
    counted_lut(tmp_path / "lut.json", space)
    write_synthetic_run(tmp_path / "run", space, seed=1)
    code = (
        "import sys; from dnatool.search.run import search_run; "
        f"search_run({str(tmp_path / 'run')!r}, {{'latency_ms': 1e9}}, "
        f"lut={str(tmp_path / 'lut.json')!r}); "
        "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_search_over_the_whole_coupled_tiny_w_space_equals_brute_force():
    """tiny-w: block 1, block 2 and the head take the previous block's width. The exact search
    (DP over the interface widths, and top-K / several budgets) equals brute force over all
    110,592 architectures, and the winner's params are those of the built network."""
    from dnatool.search.coupled import CoupledProblem, coupled_brute_force

    space = load_space("tiny-w")
    lists = synthetic_score_lists(space, seed=3)
    table = SyntheticLatencyTable(seed=3)
    costs = path_costs(space, lists, table, quiet)
    names = ["latency_ms", "params", "macs"]
    full = build_problem(space, lists, costs, names, {}, [1.0] * 3)
    assert isinstance(full, CoupledProblem) and full.size == space.distinct
    lo = full.fixed + sum(c.min(axis=(0, 1)) for c in full.costs)
    hi = full.fixed + sum(c.max(axis=(0, 1)) for c in full.costs)
    for fraction in (0.35, 0.5, 0.8):
        budget = float(lo[0] + fraction * (hi[0] - lo[0]))
        single = search(space, lists, {"latency_ms": budget}, lut=table)
        truth = coupled_brute_force(
            build_problem(space, lists, costs, ["latency_ms"], {"latency_ms": budget}, [1.0] * 3)
        )[0]
        assert single.winner["score"] == truth.score
        assert single.winner["latency_ms"] == truth.costs[0] <= budget
        chosen = [(c, tuple(p)) for c, p in single.winner["choices"]]
        assert table.fixed_latency_ms(space, space.chain_widths(chosen)[-1]) + sum(
            table.path_latency_ms(space, k, c, space.chain_widths(chosen)[k])
            for k, c in enumerate(chosen)
        ) == pytest.approx(truth.costs[0], rel=1e-12)
    budgets = dict(zip(names, lo + 0.5 * (hi - lo), strict=True))
    result = search(space, lists, budgets, lut=table, weights=[1.0, 2.0, 0.5], top=4)
    truth = coupled_brute_force(
        build_problem(space, lists, costs, names, budgets, [1.0, 2.0, 0.5]), 4
    )
    assert [t["score"] for t in result.top] == [s.score for s in truth]
    model = build_model(space.to_arch([(c, tuple(p)) for c, p in result.winner["choices"]]))
    assert result.winner["params"] == count_params(model) <= budgets["params"]
    assert result.extra["coupled"] and result.evaluated_space_size == 110_592


def test_a_table_for_another_space_is_refused_in_one_line(tmp_path, cli):
    space = load_space("tiny-w")
    write_synthetic_run(tmp_path / "run", space, seed=1)
    other = write_synthetic_lut(tmp_path / "tiny.json", load_space("tiny"))
    result = cli("search", str(tmp_path / "run"), "--latency", "10ms", "--lut", str(other))
    assert result.code == 2
    assert "measured for space 'tiny'" in result.stderr and "not for 'tiny-w'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bench_search_on_the_coupled_paper_space_matches_the_walk():
    """dna-mbconv-w (2.4e16 architectures, widths coupled between blocks 3, 4, 5 and the head):
    the exact DP agrees with the paper's walk extended to coupled costs (times: bench search)."""
    from dnatool.search.bench import bench_search

    result = bench_search("dna-mbconv-w", fractions=(0.6, 0.8), dfs_timeout=60)
    assert result["space_size"] == 23_776_314_300_039_168
    assert result["dfs_finished"] == 2 and result["same_optimum"] is True


def test_a_coupled_latency_search_imports_only_numpy_and_arch(tmp_path):
    """The search itself (engine.search on a counted table, coupled tiny-w) needs no torch, timm,
    matplotlib or scipy, and of dnatool only arch/, search/, the score-list and table owners."""
    import subprocess
    import sys

    space = load_space("tiny-w")
    counted_lut(tmp_path / "lut.json", space)
    write_synthetic_run(tmp_path / "run", space, seed=1)
    code = (
        "import sys\n"
        "from dnatool.profile.lut import load_lut\n"
        "from dnatool.rate.score_lists import load_score_lists, run_space\n"
        "from dnatool.search.engine import search\n"
        f"space = run_space({str(tmp_path / 'run')!r})\n"
        f"lists = load_score_lists({str(tmp_path / 'run')!r}, space)\n"
        f"result = search(space, lists, {{'latency_ms': 1e9}}, lut=load_lut({str(tmp_path / 'lut.json')!r}))\n"
        "assert result.extra['coupled'] and result.winner['params'] > 0\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'matplotlib', 'scipy') if m in sys.modules)\n"
        "ours = sorted({m.split('.')[1] for m in sys.modules if m.startswith('dnatool.')})\n"
        "print(heavy, ours)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, ours = out.stdout.strip().splitlines()[-1].split("] [")
    assert heavy == "["
    assert set(ours.strip("]").replace("'", "").split(", ")) <= {
        "arch",
        "errors",
        "profile",
        "rate",
        "search",
        "utils",
        "config",
    }

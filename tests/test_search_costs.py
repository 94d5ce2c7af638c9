"""Per-path costs, score lists and the search engine on the `tiny` space (SYNTHETIC data)."""

from __future__ import annotations

import numpy as np
import pytest

from dnatool.arch.space import load_space
from dnatool.errors import BadInput
from dnatool.nn.timm_adapter import build_model, count_macs, count_params
from dnatool.search import costs as C
from dnatool.search.bnb import branch_and_bound
from dnatool.search.brute import brute_force
from dnatool.search.engine import build_problem, path_costs, search
from dnatool.search.inputs import ScoreList, check_score_list, load_score_lists, run_space
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
    fixed = np.array(C.fixed_params_macs(space))
    return fixed + sum(
        C.path_params_macs(space, k, np.array([list(p)]))[0] for k, (_, p) in enumerate(choices)
    )


@pytest.mark.parametrize("name,samples", [("tiny", 2), ("dna-mbconv", 1)])
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
    assert lat[i] == table.path_latency_ms(
        space, 1, (int(cells[i]), tuple(int(p) for p in paths[i] if p >= 0))
    )
    assert len(lat) == space.blocks[1].size


def per_path_latency(table, space, k, cells, paths):
    return [
        table.path_latency_ms(space, k, (int(c), tuple(int(op) for op in row if op >= 0)))
        for c, row in zip(cells, paths, strict=True)
    ]


@pytest.mark.parametrize("name,per_block", [("tiny", None), ("dna-mbconv-small", 300)])
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
            assert got.tolist() == per_path_latency(table, space, k, cells, paths)


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


@pytest.mark.parametrize("name", ["tiny", "dna-mbconv-small"])
def test_table_params_macs_equal_the_counted_ones(name, tmp_path):
    """A latency search reads params / MACs from the table (no torch): they must be the counts."""
    space = load_space(name)
    lut = counted_lut(tmp_path / "lut.json", space)
    assert lut.fixed_costs(space) == C.fixed_params_macs(space)
    for k in range(len(space.blocks)):
        rows = 2 if max(cell.layers for cell in space.blocks[k].cells) > 1 else 1
        np.testing.assert_array_equal(
            lut.layer_costs(space, k)[:rows], C.layer_table(space, k)[:rows]
        )


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
    full = build_problem(lists, costs, names, {}, [1.0] * 3)
    lo = full.fixed + sum(c.min(axis=0) for c in full.costs)
    hi = full.fixed + sum(c.max(axis=0) for c in full.costs)
    budgets = dict(zip(names, lo + 0.4 * (hi - lo), strict=True))
    result = search(space, lists, budgets, lut=table, weights=[1.0, 2.0, 0.5], top=4)
    truth = brute_force(build_problem(lists, costs, names, budgets, [1.0, 2.0, 0.5]), 4)
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


class InverseTable:
    """A tiny in-memory table where small ops are slow: latency and params pull apart."""

    def path_latency_ms(self, space, k, choice):
        return sum(
            10.0 / (space.blocks[k].ops[op].kernel * space.blocks[k].ops[op].exp)
            for op in choice[1]
        )

    def fixed_latency_ms(self, space):
        return 1.0


def test_budgets_feasible_alone_but_not_together():
    space, lists, _ = tiny_setup()
    table = InverseTable()
    costs = path_costs(space, lists, table, quiet)
    names = ["latency_ms", "params"]
    lo = build_problem(lists, costs, names, {}, [1.0] * 3)
    lowest = lo.fixed + sum(c.min(axis=0) for c in lo.costs)
    budgets = dict(zip(names, lowest, strict=True))
    assert not brute_force(build_problem(lists, costs, names, budgets, [1.0] * 3))
    with pytest.raises(BadInput, match="all budgets together"):
        search(space, lists, budgets, lut=table)


def test_score_lists_round_trip_and_validation(tmp_path):
    space = load_space("tiny")
    write_synthetic_run(tmp_path / "run", space, seed=2)
    assert run_space(tmp_path / "run").name == "tiny"
    lists = load_score_lists(tmp_path / "run", space)
    assert [len(lst.scores) for lst in lists] == [b.size for b in space.blocks]
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

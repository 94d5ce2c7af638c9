"""DNA+ (`dnatool cascade`): scaling to the teacher's size, recipe checks, and the whole cascade."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dnatool.arch.resolve import resolve_arch
from dnatool.cascade import CascadeRecipe, scale_to_size
from dnatool.errors import BadInput
from dnatool.nn.summary import summarize

SMALL = [["ds_r1_k3_s1_e1_c8"], ["ir_r1_k3_s2_e3_c16"], ["ir_r2_k3_s2_e3_c24"]]


def test_scaling_picks_the_smallest_phi_that_reaches_the_teacher():
    from dnatool.arch.scale import scale_phi

    arch = resolve_arch({"arch_def": SMALL, "num_classes": 10, "head": 64, "resolution": 32})
    base = summarize(arch)["params"]
    scaled, phi, size = scale_to_size(arch, 3 * base)
    assert phi > 0 and size >= 3 * base and size == summarize(scaled)["params"]
    assert summarize(scale_phi(arch, round(phi - 0.01, 2)))["params"] < 3 * base
    same, zero, _ = scale_to_size(arch, base // 2)
    assert zero == 0.0 and same == arch
    with pytest.raises(BadInput, match="cannot be scaled"):
        scale_to_size(arch, base * 10**6)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"params": None}, "needs a search budget"),
        ({"match": "latency"}, "'match' must be one of"),
        ({"generations": 0}, "'generations' must be >= 1"),
        ({"latency_ms": 5.0}, "needs 'lut'"),
    ],
)
def test_bad_cascade_recipes_are_refused(overrides, message):
    with pytest.raises(BadInput, match=message):
        CascadeRecipe(**{"params": 80000.0, **overrides})


def test_cascade_cli_refuses_a_bad_recipe_in_one_line(cli):
    result = cli("cascade", "dnaplus-tiny", "-o", "generations=0")
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "'generations' must be >= 1" in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_two_generations_run_resume_after_a_kill_and_report(tmp_path):
    """The cascade on CPU: killed once generation 0's search is written, then resumed; the rerun
    reuses every finished stage and the report holds both generations."""
    out = tmp_path / "cascade"
    args = [
        sys.executable,
        "-m",
        "dnatool",
        "cascade",
        "dnaplus-tiny",
        "--generations",
        "2",
        "--out",
        str(out),
        "-o",
        f"teacher={tmp_path / 'teacher'}",
        "-o",
        "min_gain=-100",
        "-o",  # short stages: the test is about the pipeline, kill and resume, not accuracy
        "teacher_overrides=[epochs=2]",
        "-o",
        "train_overrides=[epochs=1, max_steps_per_epoch=6, rate_per_class=4]",
        "-o",
        "retrain_overrides=[epochs=2]",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while not (out / "gen_0" / "search.json").exists():
        assert proc.poll() is None and time.time() < deadline, "cascade ended before its search"
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    supernet = out / "gen_0" / "supernet" / "supernet" / "block_0.pt"
    before = supernet.stat().st_mtime_ns
    done = subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    assert supernet.stat().st_mtime_ns == before  # generation 0's supernet was reused
    result = json.loads(done.stdout)
    assert result == json.loads((out / "cascade.json").read_text())
    rows = result["generations"]
    assert [r["generation"] for r in rows] == [0, 1] and result["finished"]
    assert rows[1]["teacher"] == rows[0]["retrain_run"]
    for row in rows:
        assert 0 < row["top1"] <= 100 and row["phi"] >= 0
        assert row["scaled_size"]["params"] >= row["teacher_size"]["params"] or row["phi"] == 0
    assert (out / "cascade.png").stat().st_size > 0


def _truth(tmp_path, space, accuracy_of):
    from dnatool.bench.truth import TRUTH_FORMAT
    from dnatool.utils import io

    rng = __import__("numpy").random.default_rng(0)
    archs = []
    for i in range(12):
        choices = space.sample(rng)
        top1 = accuracy_of(choices)
        archs.append(
            {
                "index": i,
                "choices": [[c, list(p)] for c, p in choices],
                "top1": [top1, top1 + 0.1],
                "mean_top1": top1 + 0.05,
            }
        )
    truth = {
        "format": TRUTH_FORMAT,
        "seeds": 2,
        "space": {"ref": space.name, "digest": space.digest},
        "archs": archs,
    }
    return io.write_json(tmp_path / "truth.json", truth)


def test_ranking_tau_per_generation_and_a_truth_of_another_space_refused(tmp_path):
    """With a truth (`bench ranking`), each generation reports Kendall / Spearman / Pearson of its
    ratings against the truth's trained top-1; a truth of another space is refused up front."""
    from dnatool.arch.space import load_space
    from dnatool.bench.truth import load_truth
    from dnatool.cascade import generation_ranking, load_cascade_truth
    from dnatool.rate.ranking import arch_score
    from dnatool.rate.score_lists import load_score_lists
    from dnatool.search.synthetic import write_synthetic_run

    space = load_space("tiny-w")
    run = write_synthetic_run(tmp_path / "run", space)
    lists = load_score_lists(run, space)
    path = _truth(tmp_path, space, lambda choices: 100 - 10 * arch_score(lists, choices))
    ranking = generation_ranking(run, load_truth(path))
    assert ranking["n"] == 12
    assert ranking["kendall_tau"]["value"] == pytest.approx(1.0)
    assert ranking["spearman"]["value"] == pytest.approx(1.0)
    assert "vs_generation_0" not in ranking  # generation 0 itself
    # a later generation is compared with generation 0 on the same architectures, paired
    backwards = [-s for s in ranking["scores"]]
    gain = generation_ranking(run, load_truth(path), first=backwards)["vs_generation_0"]
    assert gain["value"] == pytest.approx(2.0) and gain["low"] > 0 and gain["share_ahead"] == 1.0
    same = generation_ranking(run, load_truth(path), first=ranking["scores"])["vs_generation_0"]
    assert same["value"] == pytest.approx(0.0) and same["share_ahead"] == 0.0
    reverse = _truth(tmp_path, space, lambda choices: 10 * arch_score(lists, choices))
    assert generation_ranking(run, load_truth(reverse))["kendall_tau"]["value"] == pytest.approx(-1)
    recipe = CascadeRecipe(params=80_000, truth=str(path), train_overrides=("space=tiny",))
    with pytest.raises(BadInput, match="ranks architectures of 'tiny-w', not of the cascade's"):
        load_cascade_truth(recipe)
    assert load_cascade_truth(CascadeRecipe(params=80_000, truth=str(path))) is not None


def test_the_shipped_benchmark_cascade_recipe_matches_its_truth(monkeypatch):
    """`dnaplus-ranking` rates the kept `ranking-narrow` truth: its supernets train on that
    truth's space, it searches a MACs budget and scales to the teacher's MACs."""
    from dnatool.cascade import load_cascade_recipe, load_cascade_truth
    from dnatool.config import RECIPES_DIR

    monkeypatch.chdir(RECIPES_DIR.parent)
    recipe = load_cascade_recipe("dnaplus-ranking")
    assert recipe.match == "macs" and set(recipe.budgets) == {"macs"}
    truth = load_cascade_truth(recipe)
    assert truth["space"]["ref"] == "ranking-narrow" and len(truth["archs"]) == 24


def test_the_cascade_plot_draws_tau_with_its_interval(tmp_path):
    """The per-generation plot from a real report (the benchmark run kept in docs/figures): tau
    is drawn with its interval on its own axis, and a report without a truth plots top-1 only."""
    from matplotlib.image import imread

    from dnatool.cascade import _plot
    from dnatool.config import RECIPES_DIR

    report = RECIPES_DIR.parent / "docs/figures/dnaplus-ranking-2026-12-05.json"
    rows = json.loads(report.read_text())["generations"]
    _plot(tmp_path / "with.png", rows)
    _plot(tmp_path / "without.png", [{k: v for k, v in r.items() if k != "ranking"} for r in rows])
    with_tau, without = imread(tmp_path / "with.png"), imread(tmp_path / "without.png")
    assert with_tau.shape == without.shape and not np.array_equal(with_tau, without)

"""The ranking benchmark: its data generator, statistics, truth plumbing and (slow) end to end."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from dnatool.arch.space import load_space
from dnatool.bench import truth as truth_mod
from dnatool.bench.methods import METHODS, select_methods
from dnatool.bench.stats import (
    bootstrap_correlations,
    finite_or_none,
    method_correlations,
    noise_ceiling,
    true_accuracies,
)
from dnatool.data import cluttered
from dnatool.data.cluttered import ClutterSpec, generate, source_split, spec_from_options
from dnatool.errors import BadInput, RunFailure
from dnatool.utils import io

SMALL = ClutterSpec(train_per_class=3, val_per_class=2)


def _tree_digest(root: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        sha.update(str(path.relative_to(root)).encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()


# --- data -----------------------------------------------------------------------------------


def test_generation_is_deterministic_and_an_imagefolder(tmp_path):
    first = generate(tmp_path / "a", SMALL)
    second = generate(tmp_path / "b", SMALL)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert first["digest"] == second["digest"] == SMALL.digest
    for split, per_class in (("train", 3), ("val", 2)):
        folders = sorted(p.name for p in (tmp_path / "a" / split).iterdir())
        assert folders == [str(c) for c in range(10)]
        assert all(
            len(list((tmp_path / "a" / split / c).glob("*.png"))) == per_class for c in folders
        )
    meta = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert meta["format"] == "dnatool.dataset" and meta["counts"] == {"train": 30, "val": 20}
    assert meta["augment"]["hflip"] == 0.0 and meta["preprocess"]["crop_pct"] == 1.0
    # a canvas is a pure function of (spec, split, class, index), whatever else was generated
    from PIL import Image

    alone = cluttered.canvas(SMALL, "val", 7, 1)
    assert np.array_equal(alone, np.asarray(Image.open(tmp_path / "a" / "val" / "7" / "00001.png")))
    assert alone.shape == (32, 32, 3) and alone.dtype == np.uint8
    # another seed, other images
    assert not np.array_equal(alone, cluttered.canvas(ClutterSpec(seed=1), "val", 7, 1))


def test_elastic_makes_new_handwriting_and_keeps_earlier_digests():
    """`elastic` warps every glyph with its own smooth field (a class's ~130 source digits become
    new handwriting on each canvas); datasets made before the knob existed keep their digest, so
    the truths kept in docs/figures still regenerate their data bit for bit."""
    assert ClutterSpec().digest == "30e7c234a675a536"  # the kept truths' data
    assert ClutterSpec(elastic=0.04).digest != ClutterSpec().digest
    images, _ = cluttered.load_sources()
    plain = cluttered._glyph(images[5], 24, 0.0, np.random.default_rng(0))
    warped = [cluttered._glyph(images[5], 24, 0.0, np.random.default_rng(i), 0.04) for i in (1, 2)]
    assert not np.allclose(warped[0], warped[1])
    for glyph in warped:  # the strokes move, the digit stays
        assert not np.allclose(glyph, plain) and 0.8 < glyph.sum() / plain.sum() < 1.2
        assert np.corrcoef(glyph.ravel(), plain.ravel())[0, 1] > 0.6
    with pytest.raises(BadInput, match="elastic must be in"):
        spec_from_options({"elastic": 0.9})


def test_train_and_val_come_from_disjoint_source_images(monkeypatch):
    _, targets = cluttered.load_sources()
    split = source_split(targets, 0.3, seed=0)
    train, val = set(split["train"].tolist()), set(split["val"].tolist())
    assert not train & val and len(train | val) == len(targets)
    for c in range(10):  # every class on both sides, about 30% of it in validation
        members = np.flatnonzero(targets == c)
        share = len(set(members.tolist()) & val) / len(members)
        assert 0.25 < share < 0.35
    assert source_split(targets, 0.3, seed=0)["val"].tolist() == sorted(val)
    # the images of each split only paste digits (targets and fragments) of its own sources
    spec = ClutterSpec(train_per_class=1, val_per_class=1, fragments=3)
    calls = []
    original = cluttered._glyph
    monkeypatch.setattr(
        cluttered, "_glyph", lambda image, *a: calls.append(image) or original(image, *a)
    )
    images, _ = cluttered.load_sources()
    for label in range(10):
        cluttered.render(spec, images, targets, split["val"], label, np.random.default_rng(label))
    assert len(calls) == 40  # 3 fragments and the digit per canvas
    val_images = images[split["val"]].reshape(len(split["val"]), -1)
    for image in calls:
        assert (np.abs(val_images - image.reshape(1, -1)).sum(axis=1) == 0).any()


def test_generate_reuses_the_same_spec_and_refuses_another(tmp_path):
    generate(tmp_path / "d", SMALL)
    before = _tree_digest(tmp_path / "d")
    assert generate(tmp_path / "d", SMALL)["digest"] == SMALL.digest
    assert _tree_digest(tmp_path / "d") == before
    with pytest.raises(BadInput, match="another generated dataset"):
        generate(tmp_path / "d", ClutterSpec(train_per_class=3, val_per_class=2, noise=0.3))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(BadInput, match="not a generated dataset"):
        generate(tmp_path / "other", SMALL)


def test_spec_options_are_checked():
    assert spec_from_options({"fragments": 1, "noise": 0}).noise == 0.0
    with pytest.raises(BadInput, match="unknown cluttered-digits option 'fragmnets'"):
        spec_from_options({"fragmnets": 1})
    with pytest.raises(BadInput, match="digit_min"):
        ClutterSpec(digit_min=30, digit_max=20)


def test_the_normal_data_path_reads_it_without_flips(tmp_path):
    from dnatool.data import load_splits

    generate(tmp_path / "d", SMALL)
    splits = load_splits(str(tmp_path / "d"), 32, rate_per_class=1, augment=True)
    assert splits.num_classes == 10 and len(splits.val) == 20 and len(splits.rate) == 10
    assert splits.crop_pct == 1.0 and splits.train_augment["hflip"] == 0.0
    names = repr(splits.train.dataset.transform)
    assert "RandomHorizontalFlip" not in names and "scale=(0.75, 1.0)" in names
    image, label = splits.val[0]
    assert tuple(image.shape) == (3, 32, 32) and label == 0


# --- statistics -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_bootstrap_intervals_contain_the_point_estimate(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=15)
    y = 0.6 * x + rng.normal(size=15)
    result = bootstrap_correlations(x, y, resamples=500, seed=seed)
    assert result["n"] == 15
    for key in ("kendall_tau", "spearman", "pearson"):
        stat = result[key]
        assert stat["low"] <= stat["value"] <= stat["high"]
        assert -1 <= stat["low"] < stat["high"] <= 1
    again = bootstrap_correlations(x, y, resamples=500, seed=seed)
    assert again == result


def test_correlations_of_scores_negate_them():
    accuracy = [60.0, 65.0, 70.0, 75.0, 80.0]
    perfect = method_correlations([5.0, 4.0, 3.0, 2.0, 1.0], accuracy, resamples=200)
    assert perfect["kendall_tau"]["value"] == pytest.approx(1.0)
    assert perfect["kendall_tau"]["low"] == pytest.approx(1.0)  # every resample is ordered
    reverse = method_correlations([1.0, 2.0, 3.0, 4.0, 5.0], accuracy, resamples=200)
    assert reverse["spearman"]["value"] == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        method_correlations([1.0, 2.0], [1.0, 2.0])


def test_noise_ceiling_on_synthetic_truths():
    rng = np.random.default_rng(0)
    quality = np.linspace(60, 90, 20)
    reliable = quality[:, None] + rng.normal(scale=0.3, size=(20, 3))
    ceiling = noise_ceiling(reliable, resamples=300)
    assert ceiling["kendall_tau"]["value"] > 0.9 and ceiling["spread_ratio"] > 30
    assert len(ceiling["pairwise_kendall_tau"]) == 3
    noisy = 75 + rng.normal(scale=3.0, size=(20, 3))  # no architecture effect at all
    assert abs(noise_ceiling(noisy, resamples=300)["kendall_tau"]["value"]) < 0.3
    exact = noise_ceiling([[70.0, 72.0], [80.0, 80.0], [90.0, 89.0]], resamples=100)
    assert exact["mean_seed_difference"] == pytest.approx(1.0)
    assert exact["spread"] == pytest.approx(89.5 - 71.0)
    assert exact["spread_ratio"] == pytest.approx(18.5)
    assert exact["kendall_tau"]["value"] == pytest.approx(1.0)


# --- truth plumbing and methods -------------------------------------------------------------


def test_sampling_is_deterministic_distinct_and_spread():
    space = load_space("ranking")
    picks = truth_mod.sample_uniform(space, 12, seed=3)
    assert picks == truth_mod.sample_uniform(space, 12, seed=3)
    assert len({json.dumps(p) for p in picks}) == 12
    macs = truth_mod.macs_counter(space)
    spread = truth_mod.sample_spread(space, macs, 5, pool=200, seed=0)
    values = [macs(c) for c in spread]
    pool = [macs(c) for c in truth_mod.sample_uniform(space, 200, 0)]
    assert values == sorted(values) and values[0] == min(pool) and values[-1] == max(pool)
    from dnatool.nn.summary import summarize

    assert macs(spread[2]) == summarize(space.to_arch(spread[2]))["macs"]


def test_a_truth_grows_by_the_next_draws_or_the_widest_gaps():
    """More architectures for an existing truth: its own stay first (their jobs keep their
    meaning), uniform sampling adds the next draws, spread sampling fills the widest gaps."""
    space = load_space("ranking")
    five = truth_mod.sample_uniform(space, 5, seed=3)
    assert truth_mod.sample_uniform(space, 8, 3, keep=five) == truth_mod.sample_uniform(space, 8, 3)
    with pytest.raises(BadInput, match="not what this sampling draws"):
        truth_mod.sample_uniform(space, 8, 4, keep=five)
    macs = truth_mod.macs_counter(space)
    base = truth_mod.sample_spread(space, macs, 5, pool=200, seed=0)
    grown = truth_mod.sample_spread(space, macs, 9, pool=200, seed=0, keep=base)
    assert grown[:5] == base and len({json.dumps(c) for c in grown}) == 9
    assert truth_mod.sample_spread(space, macs, 9, pool=200, seed=0, keep=grown) == grown
    pool = sorted(truth_mod.sample_uniform(space, 200, 0), key=macs)
    ranks = sorted(pool.index(c) for c in grown)
    assert ranks[0] == 0 and ranks[-1] == 199  # the ends stay; the gaps halve
    assert max(np.diff(ranks)) <= 26 < max(np.diff(sorted(pool.index(c) for c in base)))
    with pytest.raises(BadInput, match="not what this sampling draws"):
        truth_mod.sample_spread(space, macs, 9, pool=200, seed=1, keep=base)


def test_log_macs_sampling_spaces_values_not_ranks_and_grows_into_the_widest_value_gap():
    """`sample: log-macs`: targets evenly spaced in log MACs over the pool's range, each taken
    by its nearest pool architecture (denser where the pool is sparse: the small networks);
    growth fills the widest log-MACs gap, so a MACs-ranked truth grows at the small end."""
    space = load_space("ranking")
    macs = truth_mod.macs_counter(space)
    log = lambda c: math.log(macs(c))  # noqa: E731
    pool = sorted(truth_mod.sample_uniform(space, 200, 0), key=log)
    values = np.asarray([log(c) for c in pool])
    picks = truth_mod.sample_spread(space, log, 6, pool=200, seed=0, by="value")
    targets = np.linspace(values[0], values[-1], 6)
    picked = np.asarray([log(c) for c in picks])
    assert picked[0] == values[0] and picked[-1] == values[-1]
    assert np.all(np.abs(picked - targets) == np.abs(values[:, None] - targets).min(axis=0))
    by_rank = truth_mod.sample_spread(space, macs, 6, pool=200, seed=0)
    assert sum(pool.index(c) < 100 for c in picks) > sum(pool.index(c) < 100 for c in by_rank)
    grown = truth_mod.sample_spread(space, log, 7, pool=200, seed=0, keep=by_rank, by="value")
    assert grown[:6] == by_rank
    ranked = sorted(log(c) for c in by_rank)
    widest = int(np.argmax(np.diff(ranked)))
    assert ranked[widest] < log(grown[6]) < ranked[widest + 1]
    with pytest.raises(BadInput, match="not what this sampling draws"):
        truth_mod.sample_spread(space, log, 7, pool=200, seed=1, keep=by_rank, by="value")


def test_truth_sampling_retrains_a_kept_truths_architectures_in_order():
    """`sample: truth` plans another truth's networks (the first `archs`, in its order), so a
    recipe is compared on the same architectures and methods only rescore; another space, more
    architectures than it has, or a truth planned from other networks are refused in one line."""
    from dnatool.bench.ranking import load_ranking_recipe, sample_truth_archs
    from dnatool.config import RECIPES_DIR

    kept = RECIPES_DIR.parent / "docs/figures/ranking-truth-narrow24-2026-12-05/truth.json"
    narrow = load_space("ranking-narrow")
    expected = truth_mod.truth_choices(truth_mod.load_truth(kept))
    recipe = load_ranking_recipe(
        None, ("space=ranking-narrow", "sample=truth", f"from_truth={kept}", "archs=10")
    )
    first = sample_truth_archs(recipe, narrow)
    assert first == expected[:10]
    grown = dataclasses.replace(recipe, archs=24)
    assert sample_truth_archs(grown, narrow, keep=first) == expected
    with pytest.raises(BadInput, match="has 24 architectures; archs=25 is more"):
        sample_truth_archs(dataclasses.replace(recipe, archs=25), narrow)
    with pytest.raises(BadInput, match="not what this sampling draws"):
        sample_truth_archs(grown, narrow, keep=expected[1:4])
    with pytest.raises(BadInput, match="ranks architectures of 'ranking-narrow', not of 'ranking'"):
        sample_truth_archs(recipe, load_space("ranking"))
    with pytest.raises(BadInput, match="sample=truth needs from_truth"):
        load_ranking_recipe(None, ("sample=truth",))


def test_accuracy_sampling_spreads_a_truth_over_a_pilots_top1_and_grows_into_its_gaps(tmp_path):
    """`sample: accuracy`: the truth's networks are a pilot truth's, picked at evenly spaced
    top-1 (each target's nearest, both ends in), not at its crowded middle; growth takes the
    middle of the widest accuracy gap; another pilot's networks, or one too small, are refused."""
    from dnatool.bench.ranking import load_ranking_recipe, sample_truth_archs

    narrow = load_space("ranking-narrow")
    pool = truth_mod.sample_uniform(narrow, 9, 0)
    top1 = [80.0, 88.0, 88.5, 89.0, 89.2, 89.5, 90.0, 90.4, 92.0]  # crowded at 88-90
    rng = np.random.default_rng(0)
    order = rng.permutation(9)  # the pilot's own order is not its accuracy order
    pilot = {
        "format": truth_mod.TRUTH_FORMAT,
        "space": {"ref": "ranking-narrow", "name": narrow.name, "digest": narrow.digest},
        "seeds": 1,
        "archs": [
            {"index": i, "choices": [[c, list(p)] for c, p in pool[k]], "top1": [top1[k]]}
            for i, k in enumerate(order)
        ],
    }
    path = tmp_path / "pilot.json"
    path.write_text(json.dumps(pilot))
    recipe = load_ranking_recipe(
        None, ("space=ranking-narrow", "sample=accuracy", f"from_truth={path}", "archs=4")
    )
    four = sample_truth_archs(recipe, narrow)
    # targets 80, 84, 88, 92: 84's nearest is 80's neighbour 88.0; 88's is then 88.5
    assert [top1[pool.index(c)] for c in four] == [80.0, 88.0, 88.5, 92.0]
    five = sample_truth_archs(dataclasses.replace(recipe, archs=5), narrow, keep=four)
    assert five[:4] == four and top1[pool.index(five[4])] == 90.4  # farthest from every pick
    by_macs = truth_mod.sample_spread(narrow, truth_mod.macs_counter(narrow), 4, pool=50, seed=1)
    with pytest.raises(BadInput, match="not what this sampling draws"):
        sample_truth_archs(dataclasses.replace(recipe, archs=5), narrow, keep=by_macs)
    with pytest.raises(BadInput, match="has 9 architectures; archs=10 is more"):
        sample_truth_archs(dataclasses.replace(recipe, archs=10), narrow)
    with pytest.raises(BadInput, match="sample=accuracy needs from_truth"):
        load_ranking_recipe(None, ("sample=accuracy",))
    # the plan says which pilot chose them (its sha256), and keeps one entry per growth
    from dnatool.bench.ranking import sampling_record

    def plan(archs, sampling, seeds=2):
        return truth_mod.make_plan(
            narrow, "ranking-narrow", archs, seeds, {"seed": 0}, {}, sampling
        )

    record = sampling_record(recipe)
    assert record == {
        "sample": "accuracy",
        "from_truth": str(path.resolve()),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    truth_mod.write_plan(tmp_path, plan(four, record))
    truth_mod.write_plan(tmp_path, plan(four, record, seeds=3))  # more seeds: no new entry
    grown = truth_mod.write_plan(tmp_path, plan(five, sampling_record(recipe)))
    assert grown["sampling"] == [{"archs": 4, **record}, {"archs": 5, **record}]
    assert io.read_json(tmp_path / truth_mod.PLAN_FILE, "plan")["sampling"] == grown["sampling"]


def _fake_plan(space, archs=4, seeds=2):
    return {
        "format": truth_mod.PLAN_FORMAT,
        "space": {"ref": "ranking", "name": space.name, "digest": space.digest},
        "data": {"root": "/nowhere"},
        "recipe": {"seed": 0},
        "seeds": seeds,
        "archs": [
            {
                "index": i,
                "choices": [[c, list(p)] for c, p in choices],
                "arch": {},
                "params": 1,
                "macs": 1,
            }
            for i, choices in enumerate(truth_mod.sample_uniform(space, archs, 0))
        ],
        "sampling": [{"archs": archs, "sample": "uniform", "seed": 0}],
    }


def _fake_job(truth_dir, plan, job, report=None):
    row = {
        "job": job.name,
        "arch": job.arch,
        "seed": job.seed,
        "top1": 50.0 + 10 * job.arch + job.seed,
        "cpu_seconds": 1.0,
        "epoch_seconds": 1.0,
        "device": "cpu",
    }
    io.write_json(truth_mod.result_path(truth_dir, job), row)
    return row


def test_torchrun_ranks_take_their_share_and_rank0_writes_the_truth(tmp_path, monkeypatch):
    space = load_space("ranking")
    plan = _fake_plan(space)
    trained = []
    monkeypatch.setattr(
        truth_mod, "run_job", lambda d, p, j, r=None: trained.append(j.name) or _fake_job(d, p, j)
    )
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert truth_mod.run_truth(tmp_path / "truth", plan) is None
    jobs = truth_mod.all_jobs(4, 2)
    assert trained == [j.name for j in jobs[1::2]]
    assert [j.seed for j in jobs] == [0, 0, 0, 0, 1, 1, 1, 1]  # seed-major
    monkeypatch.setenv("RANK", "0")
    truth = truth_mod.run_truth(tmp_path / "truth", plan)
    assert trained[4:] == [j.name for j in jobs[0::2]]
    assert truth["archs"][2]["top1"] == [70.0, 71.0] and truth["jobs"] == 8
    assert truth["sampling"] == [{"archs": 4, "sample": "uniform", "seed": 0}]
    assert truth["noise_ceiling"]["kendall_tau"]["value"] == pytest.approx(1.0)
    assert truth_mod.load_truth(tmp_path / "truth" / "truth.json")["seeds"] == 2
    # a resumed truth with other architectures is refused; a complete one trains nothing more;
    # one more seed trains only that seed's jobs
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(BadInput, match="plans another truth"):
        truth_mod.run_truth(tmp_path / "truth", {**plan, "archs": plan["archs"][:3]})
    truth_mod.run_truth(tmp_path / "truth", plan)
    assert len(trained) == 8
    more = truth_mod.run_truth(tmp_path / "truth", {**plan, "seeds": 3})
    assert trained[8:] == ["a000-s2", "a001-s2", "a002-s2", "a003-s2"]
    assert more["seeds"] == 3 and len(more["noise_ceiling"]["pairwise_kendall_tau"]) == 3
    # two more architectures: only their jobs train, seed-major; the truth ranks all six
    wider = _fake_plan(space, archs=6, seeds=3)
    assert wider["archs"][:4] == plan["archs"]
    assert truth_mod.planned_archs(tmp_path / "truth") == truth_mod.sample_uniform(space, 4, 0)
    six = truth_mod.run_truth(tmp_path / "truth", wider)
    assert trained[12:] == ["a004-s0", "a005-s0", "a004-s1", "a005-s1", "a004-s2", "a005-s2"]
    assert len(six["archs"]) == 6 and six["jobs"] == 18
    assert [step["archs"] for step in six["sampling"]] == [4, 6]


def test_a_plan_older_than_a_recipe_key_still_resumes_but_a_changed_key_is_named(tmp_path):
    """The kept truths' plans predate `stop_after` and `init_seed`: with the keys at their
    defaults the plan is the same truth (grown, resumed, rescored); set, it is another truth,
    refused naming the key."""
    import shutil

    from dnatool.config import RECIPES_DIR, to_dict
    from dnatool.retrain.recipe import load_retrain_recipe

    kept = RECIPES_DIR.parent / "docs/figures/ranking-truth-narrow24-2026-12-05/plan.json"
    old = json.loads(kept.read_text())
    now = to_dict(load_retrain_recipe("retrain-ranking", ("epochs=24",)))
    assert set(now) - set(old["recipe"]) == {"stop_after", "init_seed"}
    assert now["stop_after"] is None and now["init_seed"] is None
    shutil.copy(kept, tmp_path)
    same = {**old, "recipe": {**old["recipe"], "stop_after": None, "init_seed": None}}
    assert truth_mod.write_plan(tmp_path, same) == old  # the same truth; its file left as it was
    pilot = {**old, "recipe": {**old["recipe"], "stop_after": 8}}
    with pytest.raises(BadInput, match="recipe key stop_after was None, now 8"):
        truth_mod.write_plan(tmp_path, pilot)
    from dnatool.bench.ranking import truth_label

    pilot_truth = {"archs": 72, "seeds": 1, "space": "ranking-narrow", "recipe": pilot["recipe"]}
    assert truth_label(pilot_truth).endswith("1 seeds of ranking-narrow, 8 of 24 epochs")


def test_a_truth_copied_elsewhere_resumes_reading_the_new_data_folder(tmp_path, monkeypatch):
    """The data is identified by its digest, not its path: a truth copied into another --out
    (docs/figures keeps one) is complete there, and grows with jobs that read the new folder."""
    import shutil

    space = load_space("ranking")
    plan = _fake_plan(space)
    plan["recipe"] = {"seed": 0, "data": str(tmp_path / "a" / "data")}
    monkeypatch.setattr(truth_mod, "run_job", _fake_job)
    truth_mod.run_truth(tmp_path / "a" / "truth", plan)
    shutil.copytree(tmp_path / "a" / "truth", tmp_path / "b" / "truth")
    moved = {**plan, "recipe": {"seed": 0, "data": str(tmp_path / "b" / "data")}}
    trained = []
    monkeypatch.setattr(
        truth_mod, "run_job", lambda d, p, j, r=None: trained.append(p) or _fake_job(d, p, j)
    )
    assert truth_mod.run_truth(tmp_path / "b" / "truth", moved)["jobs"] == 8 and not trained
    assert truth_mod.run_truth(tmp_path / "b" / "truth", {**moved, "seeds": 3})["jobs"] == 12
    assert {p["recipe"]["data"] for p in trained} == {str(tmp_path / "b" / "data")}
    written = io.read_json(tmp_path / "b" / "truth" / truth_mod.PLAN_FILE, "plan")
    assert written["recipe"]["data"] == str(tmp_path / "b" / "data")
    with pytest.raises(BadInput, match="recipe key seed was 0, now 1"):
        truth_mod.run_truth(tmp_path / "b" / "truth", {**moved, "recipe": {"seed": 1, "data": "x"}})


def test_methods_read_their_own_out_data_whichever_truth_they_score(tmp_path):
    """`--truth` of another folder: the methods keep reading OUT/data (their runs record that
    path, and a resumed teacher refuses another), the truth's folder serves only when OUT has
    none, and nothing is regenerated while either holds the same digest."""
    from dnatool.bench.ranking import data_for_truth

    spec = dataclasses.asdict(SMALL)
    truth = {
        "data": {"builtin": "cluttered", "digest": SMALL.digest, "spec": spec},
        "_path": str(tmp_path / "t" / "truth" / "truth.json"),
    }
    generate(tmp_path / "t" / "data", SMALL)
    generate(tmp_path / "out" / "data", SMALL)
    assert data_for_truth(truth, tmp_path / "out") == str((tmp_path / "out" / "data").resolve())
    assert data_for_truth(truth, tmp_path / "new") == str((tmp_path / "t" / "data").resolve())
    assert not (tmp_path / "new").exists()


def test_an_incomplete_truth_is_refused(tmp_path):
    plan = _fake_plan(load_space("ranking"))
    truth_mod.write_plan(tmp_path, plan)
    _fake_job(tmp_path, plan, truth_mod.Job(0, 0))
    with pytest.raises(RunFailure, match="7 job"):
        truth_mod.assemble_truth(tmp_path, plan)


def test_methods_are_pluggable_and_unavailable_ones_refused(monkeypatch):
    from dnatool.bench import methods

    assert set(METHODS) == {"dna", "dna++", "bossnas", "spos"}
    assert [m.name for m in select_methods(list(METHODS))] == list(METHODS)
    with pytest.raises(BadInput, match="unknown method 'dnaa'"):
        select_methods(["dnaa"])
    gone = methods.Method("gpu-only", "needs a GPU", lambda: "method 'gpu-only' needs CUDA", None)
    monkeypatch.setitem(methods.METHODS, "gpu-only", gone)
    with pytest.raises(BadInput, match="needs CUDA"):
        select_methods(["dna", "gpu-only"])
    assert "gpu-only" not in methods.available_methods()
    variant = select_methods(["dna@own"])[
        0
    ]  # a variant: its own name (folder, options), DNA's code
    assert variant.name == "dna@own" and variant.rate is METHODS["dna"].rate
    with pytest.raises(BadInput, match="unknown method 'boss'"):
        select_methods(["boss@own"])
    with pytest.raises(BadInput, match="write METHOD@NAME"):
        select_methods(["dna@own/x"])


def test_a_method_variant_needs_its_options(cli, tmp_path):
    result = cli("bench", "ranking", "--methods", "dna,dna@own", "--out", str(tmp_path / "b"))
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "method variant 'dna@own' has no options" in result.stderr
    assert not (tmp_path / "b").exists()


def test_cli_refuses_an_unknown_method_in_one_line(cli, tmp_path):
    result = cli("bench", "ranking", "--methods", "dna,boss", "--out", str(tmp_path / "b"))
    assert result.code == 2
    assert "unknown method 'boss'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.slow
def test_bench_ranking_small_configuration_end_to_end(cli, tmp_path):
    """Plumbing and statistics on a tiny configuration (not the targets): truth of 4 archs x 2
    seeds trained 1 epoch, DNA trained 1 epoch, rated; then the same truth reused."""
    out = tmp_path / "bench"
    args = [
        "bench",
        "ranking",
        "-o", "archs=4",
        "-o", "seeds=2",
        "-o", "data_options={train_per_class: 12, val_per_class: 6}",
        "-o", "truth_overrides=[epochs=1, batch_size=32]",
        "-o", "bootstrap=200",
        "-o", "methods={dna: {teacher_overrides: [epochs=1, batch_size=32], "
              "overrides: [epochs=1, rate_per_class=2, batch_size=32, rate_batch_size=20]}, "
              "dna@own: {teacher_overrides: [epochs=1, batch_size=32], "
              "overrides: [epochs=1, rate_per_class=2, batch_size=32, rate_batch_size=20, "
              "cell_output=own]}, "
              "dna@many: {space: ranking-narrow-many, teacher_overrides: [epochs=1, batch_size=32], "
              "overrides: [epochs=1, rate_per_class=2, batch_size=32, rate_batch_size=20]}, "
              "dna++: {teacher_overrides: [epochs=1, batch_size=32], "
              "overrides: [epochs=1, rate_per_class=2, batch_size=32, rate_batch_size=20]}, "
              "bossnas: {overrides: [epochs=1, rate_per_class=2, batch_size=32, "
              "max_steps_per_epoch=4]}, "
              "spos: {overrides: [epochs=1, rate_per_class=2, bn_batches=1], seeds: 2}}",
        "--out", str(out),
        "--json",
    ]  # fmt: skip
    result = cli(*args, "--workers", "2")
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["format"] == "dnatool.ranking"
    assert summary["truth"]["archs"] == 4 and summary["truth"]["seeds"] == 2
    assert "noise_ceiling" in summary["truth"]
    assert set(summary["methods"]) == {
        "dna", "dna@own", "dna@many", "dna++", "bossnas", "spos", "spos@seed1"
    }  # fmt: skip
    assert summary["methods"]["dna@many"]["space"] == "ranking-narrow-many"
    many = json.loads((out / "methods" / "dna@many" / "supernet" / "manifest.json").read_text())
    assert many["recipe"]["space"] == "ranking-narrow-many"  # trained on the larger space
    seeded = json.loads((out / "methods" / "spos@seed1" / "supernet" / "manifest.json").read_text())
    assert seeded["recipe"]["seed"] == 1  # the second supernet seed of spos
    assert summary["supernet_seeds"]["spos"]["runs"] == ["spos", "spos@seed1"]
    pairs = {(c["first"], c["second"]) for c in summary["comparisons"]}
    assert {("dna", "spos"), ("dna", "macs"), ("bossnas", "spos")} <= pairs
    assert summary["methods"]["dna++"]["n"] == 4
    assert len(list((out / "methods" / "teachers").iterdir())) == 1  # dna, its variants, dna++
    own = json.loads((out / "methods" / "dna@own" / "supernet" / "manifest.json").read_text())
    assert own["recipe"]["cell_output"] == "own"
    for method in summary["methods"].values():
        assert method["n"] == 4
        for key in ("kendall_tau", "spearman", "pearson"):
            stat = method[key]
            assert stat["value"] is None or stat["low"] <= stat["value"] <= stat["high"]
    dna = summary["methods"]["dna"]
    assert summary["truth"]["path"] == "truth/truth.json"  # relative to OUT: the summary moves
    assert dna["run"] == "methods/dna/supernet"
    assert set(summary["met"]) >= {"noise_ceiling", "spread_ratio", "dna_kendall_tau"}
    for path in (
        "ranking.json",
        "ranking.png",
        "methods/dna/scatter.png",
        "methods/spos/scatter.png",
        "methods/dna++/scatter.png",
        "methods/bossnas/scatter.png",
        "truth/truth.json",
    ):
        assert (out / path).is_file(), path
    assert len(list((out / "truth" / "results").glob("*.json"))) == 8
    ratings = json.loads((out / "methods" / "dna" / "ratings.json").read_text())
    assert len(ratings["scores"]) == 4 and set(ratings["stages"]) == {"teacher", "train", "rate"}
    # reuse the truth: nothing is retrained, the same figures come back
    truth = str(out / "truth" / "truth.json")
    again = cli(*args[:-3], "--out", str(out), "--truth", truth, "--methods", "dna", "--json")
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["methods"]["dna"]["kendall_tau"] == dna["kendall_tau"]
    assert len(list((out / "truth" / "runs").iterdir())) == 8
    # a result lost after its run finished (or a run copied in): the run is taken, not retrained
    lost = json.loads((out / "truth" / "results" / "a001-s1.json").read_text())
    (out / "truth" / "results" / "a001-s1.json").unlink()
    again = cli(*args[:-3], "--out", str(out), "--methods", "dna", "--json")
    assert again.code == 0, again.stderr
    row = json.loads((out / "truth" / "results" / "a001-s1.json").read_text())
    assert row["top1"] == lost["top1"] and row["reused_from"]["run"].endswith("a001-s1")
    assert json.loads((out / "truth" / "truth.json").read_text())["reused_jobs"] == 1
    # grow the truth by one architecture: only its two jobs train; it cannot shrink
    wider = [a if a != "archs=4" else "archs=5" for a in args[:-3]]
    grown = cli(*wider, "--out", str(out), "--methods", "dna", "--json")
    assert grown.code == 0, grown.stderr
    assert json.loads(grown.stdout)["methods"]["dna"]["n"] == 5
    assert len(list((out / "truth" / "results").glob("*.json"))) == 10
    again = cli(*wider, "--out", str(out), "--methods", "dna", "--json")  # the grown truth resumes
    assert again.code == 0, again.stderr
    narrower = [a if a != "archs=4" else "archs=3" for a in args[:-3]]
    shrunk = cli(*narrower, "--out", str(out), "--methods", "dna")
    assert shrunk.code == 2 and "would drop" in shrunk.stderr
    # benchmarks/val_sampling.py rereads the runs: the same top-1 as recorded, 5 networks
    import runpy

    from dnatool.config import RECIPES_DIR

    script = runpy.run_path(str(RECIPES_DIR.parent / "benchmarks/val_sampling.py"))
    correct = script["correctness"](out / "truth" / "runs", str(out / "data"))
    assert len(correct) == 10 and {len(c) for c in correct.values()} == {60}
    script["check_recorded"](out / "truth", correct)  # raises BadInput on any mismatch
    assert script["analyse"](correct)["archs"] == 5


def test_summary_reports_targets_and_prints_undefined_figures(tmp_path):
    from dnatool.bench.plots import summary_plot
    from dnatool.bench.ranking import RankingRecipe, summarize, summary_lines

    top1 = [[50.0, 51.0], [60.0, 59.0], [70.0, 70.5], [80.0, 79.0]]
    macs, params = [1e6, 2e6, 3e6, 4e6], [9e5, 5e5, 7e5, 3e5]  # MACs rank them, params do not
    truth = {
        "space": {"name": "ranking"},
        "seeds": 2,
        "archs": [
            {"mean_top1": float(np.mean(t)), "top1": t, "macs": m, "params": p}
            for t, m, p in zip(top1, macs, params)
        ],
        "noise_ceiling": finite_or_none(noise_ceiling(top1, resamples=100)),
        "cpu_seconds": 10.0,
        "recipe": {"epochs": 24, "lr": 0.003},
    }
    accuracy = [a["mean_top1"] for a in truth["archs"]]
    rated = {"dna": [4.0, 3.0, 2.0, 1.0], "spos": [1.0, 1.0, 1.0, 1.0]}
    results = {
        name: {**method_correlations(s, accuracy, resamples=100), "scores": s}
        for name, s in rated.items()
    }
    summary = finite_or_none(summarize(truth, "t.json", results, RankingRecipe()))
    assert summary["met"] == {
        "noise_ceiling": True,
        "spread_ratio": True,
        "dna_kendall_tau": True,
        "dna_over_spos": None,  # SPOS rated every architecture alike: its tau is undefined
    }
    lines = summary_lines(summary)
    assert lines[0].startswith("truth: 4 archs x 2 seeds of ranking, 24 epochs, top-1 50.50-")
    # a kept truth's own training recipe, not the benchmark recipe's (12 epochs by default)
    assert summary["truth"]["recipe"] == {"epochs": 24, "lr": 0.003}
    assert "noise ceiling: tau between seeds 1.000" in lines[1]
    assert lines[2].startswith("the 2-seed mean methods are scored against: reliability")
    assert lines[3].startswith("a perfect rating (the true accuracies) against the 2-seed")
    assert lines[4].startswith("room to a perfect rating") and "spos" not in lines[4]
    assert lines[5].startswith("dna: kendall_tau 1.000") and "spos: kendall_tau n/a" in lines[6]
    baselines = summary["baselines"]  # size alone, what a rating must beat
    assert baselines["macs"]["kendall_tau"]["value"] == pytest.approx(1.0)
    assert baselines["params"]["kendall_tau"]["value"] == pytest.approx(-4 / 6)
    assert lines[7].startswith("baseline, size only (macs): kendall_tau 1.000")
    assert lines[8].startswith("baseline, size only (params): kendall_tau -0.667")
    assert lines[9].startswith("dna - spos: kendall_tau n/a")
    assert lines[10].startswith("dna - macs: kendall_tau +0.000")  # both rank perfectly
    assert lines[12] == (
        "targets: noise_ceiling met, spread_ratio met, dna_kendall_tau met, dna_over_spos n/a"
    )
    json.dumps(summary, allow_nan=False)  # strict JSON
    assert summary_plot(summary, tmp_path / "ranking.png").stat().st_size > 0


def test_seed_means_and_paired_differences_of_ratings():
    from dnatool.bench.stats import paired_difference, seed_mean_correlation

    rng = np.random.default_rng(0)
    accuracy = np.linspace(80, 90, 12)
    perfect = -accuracy  # losses: lower is better
    noisy = [perfect + rng.normal(0, 3, 12) for _ in range(3)]
    one = seed_mean_correlation([noisy[0]], accuracy, resamples=300)
    alone = bootstrap_correlations(-noisy[0], accuracy, resamples=300)
    assert one["value"] == pytest.approx(alone["kendall_tau"]["value"]) and one["sd"] is None
    assert (one["low"], one["high"]) == pytest.approx(
        (alone["kendall_tau"]["low"], alone["kendall_tau"]["high"])  # the same resamples
    )
    three = seed_mean_correlation(noisy, accuracy, "spearman", resamples=300)
    per_run = [bootstrap_correlations(-n, accuracy, resamples=100)["spearman"] for n in noisy]
    assert three["values"] == pytest.approx([r["value"] for r in per_run])
    assert three["value"] == pytest.approx(np.mean(three["values"]))
    assert three["low"] <= three["value"] <= three["high"] and three["sd"] > 0

    same = paired_difference(noisy, noisy, accuracy, resamples=300)
    assert (same["value"], same["low"], same["high"], same["share_ahead"]) == (0, 0, 0, 0)
    ahead = paired_difference([perfect], noisy, accuracy, resamples=300)
    taus = [bootstrap_correlations(-n, accuracy, resamples=100)["kendall_tau"] for n in noisy]
    assert ahead["value"] == pytest.approx(1 - np.mean([t["value"] for t in taus]))
    assert 0 <= ahead["low"] <= ahead["value"] <= ahead["high"] and ahead["share_ahead"] > 0.9
    behind = paired_difference(noisy, [perfect], accuracy, resamples=300)
    assert behind["value"] == pytest.approx(-ahead["value"])
    with pytest.raises(ValueError, match="score lists of 12 architectures"):
        paired_difference([perfect[:5]], noisy, accuracy)


def test_method_seeds_are_runs_with_the_seed_appended(tmp_path):
    from dnatool.bench.methods import method_runs

    dna, own = select_methods(["dna", "dna@own"])
    runs = method_runs(dna, {"overrides": ["epochs=4"], "seeds": 3})
    assert [r.name for r, _ in runs] == ["dna", "dna@seed1", "dna@seed2"]
    assert [o["overrides"] for _, o in runs] == [
        ["epochs=4"],
        ["epochs=4", "seed=1"],
        ["epochs=4", "seed=2"],
    ]
    assert all("seeds" not in o for _, o in runs)  # not a method option: refused there
    assert [r.name for r, _ in method_runs(own, {"seeds": 2})] == ["dna@own", "dna@own-seed1"]
    assert method_runs(dna, {}) == [(dna, {})]
    for bad in (0, "2", 1.5, True):
        with pytest.raises(BadInput, match="seeds must be an integer >= 1"):
            method_runs(dna, {"seeds": bad})
    with pytest.raises(BadInput, match="drop seed= from its overrides"):
        method_runs(dna, {"seeds": 2, "overrides": ["seed=3"]})


def _five_archs(rated: dict[str, list[float]]) -> tuple[dict, dict]:
    """A truth of 5 architectures (more MACs, more accurate) and each rating's correlations."""
    accuracy = [50.0, 60.0, 70.0, 80.0, 85.0]
    truth = {
        "space": {"name": "ranking"},
        "seeds": 2,
        "archs": [{"mean_top1": a, "macs": m, "params": m} for a, m in zip(accuracy, range(5))],
    }
    results = {
        name: {**method_correlations(s, accuracy, resamples=100), "scores": s}
        for name, s in rated.items()
    }
    return truth, results


def test_summary_judges_a_method_on_its_seed_mean(tmp_path):
    from dnatool.bench.ranking import RankingRecipe, summarize, summary_lines

    truth, results = _five_archs(
        {
            "dna": [5.0, 4.0, 3.0, 2.0, 1.0],  # perfect
            "dna@seed1": [4.0, 5.0, 2.0, 3.0, 1.0],  # two swaps: tau 0.6
            "spos": [5.0, 3.0, 4.0, 1.0, 2.0],  # two swaps
        }
    )
    groups = {"dna": ["dna", "dna@seed1"], "spos": ["spos"]}
    recipe = RankingRecipe(bootstrap=200)
    summary = summarize(truth, "t.json", results, recipe, groups)
    seeded = summary["supernet_seeds"]
    assert list(seeded) == ["dna"] and seeded["dna"]["runs"] == ["dna", "dna@seed1"]
    assert seeded["dna"]["kendall_tau"]["value"] == pytest.approx(0.8)
    assert seeded["dna"]["kendall_tau"]["values"] == pytest.approx([1.0, 0.6])
    pairs = {(c["first"], c["second"]): c for c in summary["comparisons"]}
    assert set(pairs) == {("dna", "spos"), ("dna", "macs"), ("spos", "macs")}
    assert pairs["dna", "spos"]["value"] == pytest.approx(0.2)  # the seed mean, not seed 0's 0.4
    assert pairs["dna", "macs"]["value"] == pytest.approx(-0.2)
    assert summary["met"]["dna_kendall_tau"] is True and summary["met"]["dna_over_spos"] is False
    lines = summary_lines(finite_or_none(summary))
    assert any(
        line.startswith("dna, mean of 2 supernet seeds: kendall_tau 0.800")
        and "per seed 1.000 0.600" in line
        for line in lines
    )
    assert any(line.startswith("dna - spos: kendall_tau +0.200 [") for line in lines)
    from dnatool.bench.plots import _method_entries, summary_plot

    summary = finite_or_none(summary)
    entries = _method_entries(summary)
    assert list(entries) == ["dna x2", "spos"]  # the plot shows the seed mean, dots per seed
    assert entries["dna x2"]["kendall_tau"]["value"] == pytest.approx(0.8)
    assert summary_plot(summary, tmp_path / "ranking.png").stat().st_size > 0
    # one run per method when no groups are given (a summary from an older caller)
    assert summarize(truth, "t.json", results, recipe)["supernet_seeds"] == {}


def test_methods_overrides_merge_into_the_shipped_options():
    from dnatool.bench.ranking import load_ranking_recipe

    shipped = load_ranking_recipe("bench-ranking").methods
    assert "cell_output=own" in shipped["dna"]["overrides"]
    recipe = load_ranking_recipe(
        "bench-ranking",
        ("methods={dna: {seeds: 3}, dna@x: {overrides: [seed=7]}}", "methods={spos: {seeds: 2}}"),
    )
    # a variant beside dna, or dna's seeds, leaves dna's overrides and the other methods alone
    assert recipe.methods["dna"] == {**shipped["dna"], "seeds": 3}
    assert recipe.methods["dna@x"] == {"overrides": ["seed=7"]}
    assert recipe.methods["spos"] == {**shipped["spos"], "seeds": 2}
    assert recipe.methods["bossnas"] == shipped["bossnas"]
    replaced = load_ranking_recipe("bench-ranking", ("methods={dna: {overrides: [epochs=1]}}",))
    assert replaced.methods["dna"]["overrides"] == ["epochs=1"]  # a given list replaces whole
    assert replaced.methods["dna"]["recipe"] == shipped["dna"]["recipe"]
    for bad in ("methods=[dna]", "methods={dna: 3}", "methods={dna: [1"):
        with pytest.raises(BadInput, match="methods must"):
            load_ranking_recipe("bench-ranking", (bad,))


def test_a_method_seed_named_like_a_variant_is_refused(cli, tmp_path):
    methods = "methods={dna: {seeds: 2}, dna@seed1: {overrides: [seed=5]}}"
    out = tmp_path / "o"
    result = cli("bench", "ranking", "--methods", "dna,dna@seed1", "-o", methods, "--out", out)
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "method run 'dna@seed1' is named twice" in result.stderr
    assert not out.exists()  # refused before any training


def test_a_truth_sharing_one_initialisation_is_refused(cli, tmp_path):
    out = tmp_path / "o"
    overrides = "truth_overrides=[epochs=1, init_seed=3]"
    result = cli("bench", "ranking", "--methods", "none", "-o", overrides, "--out", out)
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "init_seed 3 would leave initialisation noise out of the noise ceiling" in result.stderr
    assert not out.exists()  # refused before OUT is touched


def test_method_options_are_checked(tmp_path):
    from dnatool.bench.methods import MethodContext, rate_dna

    ctx = MethodContext(tmp_path, load_space("ranking"), "ranking", "/x", [], {"epochz": 3})
    with pytest.raises(BadInput, match="unknown dna option 'epochz'"):
        rate_dna(ctx)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-o", "methods={dna: {overrides: [epochz=3]}}"], "method dna: unknown recipe key"),
        (["-o", "truth_overrides=[epochz=3]"], "truth recipe: unknown recipe key 'epochz'"),
        (["-o", "methods={dna: {teacher_overrides: [lr=fast]}}"], "lr"),
        (["-o", "methods={spos: {recipe: dna-tiny}}"], "spos recipe 'dna-tiny' trains method"),
        (["-o", "methods={dna++: {bogus: 1}}"], "unknown dna++ option 'bogus'"),
        (["-o", "methods={bogus: {}}"], "methods names unknown method 'bogus'"),
        (["-o", "truth_overrides=[epochs=4"], "is not valid YAML"),
        (["--methods", ","], "--methods names no method"),
    ],
)
def test_a_typo_in_the_methods_is_refused_before_the_truth_trains(cli, tmp_path, args, says):
    """A method's options, recipe and overrides are loaded as its rating will load them before
    anything is trained: a typo costs a second, not the truth's hours."""
    out = tmp_path / "o"
    methods = [] if "--methods" in args else ["--methods", "dna,dna++,spos"]
    result = cli("bench", "ranking", *methods, *args, "--out", out)
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert says in result.stderr
    assert not out.exists()


def test_an_out_that_is_a_file_is_refused_and_kept(cli, tmp_path):
    afile = io.write_text(tmp_path / "afile", "mine")
    for out in (afile, afile / "sub"):
        result = cli("bench", "ranking", "--methods", "none", "--out", out)
        assert result.code == 2 and "exists and is not a directory" in result.stderr
    assert afile.read_text() == "mine"


def test_a_damaged_truth_is_refused_in_one_line_and_a_folder_names_its_truth(tmp_path, monkeypatch):
    """`--truth` takes the file or the folder holding it; a truth whose space, choices or
    accuracies are damaged is refused before anything reads it, and a one-seed truth (a pilot's)
    carries no noise ceiling whatever the file claims."""
    space = load_space("ranking")
    plan = _fake_plan(space, archs=4, seeds=2)
    monkeypatch.setattr(truth_mod, "run_job", _fake_job)
    truth_mod.run_truth(tmp_path / "truth", plan)
    good = io.read_json(tmp_path / "truth" / "truth.json")
    assert truth_mod.load_truth(tmp_path / "truth")["archs"] == good["archs"]
    assert truth_mod.truth_file(tmp_path) == tmp_path / "truth" / "truth.json"  # an OUT's truth/
    damaged = {
        "space": ({**good, "space": None}, "'space' must name the space"),
        "choices": (
            {**good, "archs": [{**a, "choices": [1, 2]} for a in good["archs"]]},
            "arch 0 needs 'choices' as [cell, [op, ...]] pairs",
        ),
        "top1": (
            {**good, "archs": [{**a, "top1": [50.0, "x"]} for a in good["archs"]]},
            "arch 0 needs one finite top-1 per seed",
        ),
        "format": ({**good, "format": "other"}, "(format tag 'other')"),
    }
    for name, (data, says) in damaged.items():
        path = io.write_json(tmp_path / f"{name}.json", data)
        with pytest.raises(BadInput, match=re.escape(says)):
            truth_mod.load_truth(path)
    one = {**good, "seeds": 1, "archs": [{**a, "top1": a["top1"][:1]} for a in good["archs"]]}
    loaded = truth_mod.load_truth(io.write_json(tmp_path / "one.json", one))
    assert good["noise_ceiling"] is not None and loaded["noise_ceiling"] is None
    with pytest.raises(BadInput, match="holds no truth.json"):
        truth_mod.load_truth(tmp_path / "truth" / "results")


def test_status_reads_a_truth_folder_and_refuses_a_damaged_plan_or_result(cli, tmp_path):
    plan = _fake_plan(load_space("ranking"), archs=4, seeds=2)
    truth_mod.write_plan(tmp_path / "truth", plan)
    for job in truth_mod.all_jobs(4, 2):
        _fake_job(tmp_path / "truth", plan, job)
    for out in (tmp_path, tmp_path / "truth"):  # the bench's OUT, or its truth folder
        result = cli("bench", "ranking", "--status", "--out", out)
        assert result.code == 0 and "8/8 jobs" in result.stdout, result.stderr
    io.write_json(truth_mod.result_path(tmp_path / "truth", truth_mod.Job(1, 1)), {"top": 1})
    result = cli("bench", "ranking", "--status", "--out", tmp_path)
    assert result.code == 2 and "a001-s1.json is not a truth job result" in result.stderr
    io.write_json(tmp_path / "truth" / "plan.json", [1])
    result = cli("bench", "ranking", "--status", "--out", tmp_path)
    assert result.code == 2 and "plan.json is not a truth plan" in result.stderr


def test_the_benchmark_scripts_answer_bad_input_in_one_line(tmp_path):
    """The scripts in benchmarks/ keep the CLI's contract: one line and exit 2, no traceback."""
    import subprocess
    import sys

    from dnatool.config import RECIPES_DIR

    scripts = RECIPES_DIR.parent / "benchmarks"
    io.write_text(tmp_path / "runs" / "a000-s0.csv", "epoch,top1\n")
    for argv in (
        ["truth_compare.py", str(tmp_path / "nope.json"), str(tmp_path / "nope.json")],
        ["ceiling_model.py", "--sizes", "abc", str(tmp_path)],
        ["truth_noise.py", str(tmp_path / "runs")],
    ):
        done = subprocess.run(
            [sys.executable, str(scripts / argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(RECIPES_DIR.parent)},
        )
        assert done.returncode == 2, (argv, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("Error: ")


def test_status_of_a_truth_under_way(tmp_path):
    plan = _fake_plan(load_space("ranking"), archs=4, seeds=2)
    truth_mod.write_plan(tmp_path, plan)
    for job in truth_mod.all_jobs(4, 2)[:7]:  # every seed 0, three of the seeds 1
        _fake_job(tmp_path, plan, job)
    state = truth_mod.truth_status(tmp_path)
    assert state["jobs_done"] == 7 and state["jobs"] == 8 and state["seeds_complete"] == 1
    assert state["top1"]["3"] == [80.0]
    assert state["noise_ceiling_so_far"]["archs"] == 3
    assert state["noise_ceiling_so_far"]["kendall_tau"]["value"] == pytest.approx(1.0)


def test_status_names_the_network_that_carries_the_seed_noise(cli, tmp_path):
    """A truth under way whose first architecture has no second seed yet: the tail names the
    noisy network by its own index (a006), not by its row among those done, in the JSON and in
    the status line."""
    truth_dir = tmp_path / "truth"
    plan = _fake_plan(load_space("ranking"), archs=12, seeds=2)
    truth_mod.write_plan(truth_dir, plan)
    wobble = [0.2, -0.3, 0.1, -0.2, 0.3, -0.1]
    for job in truth_mod.all_jobs(12, 2):
        if job.arch == 0 and job.seed == 1:
            continue
        gap = (6.0 if job.arch == 6 else wobble[job.arch % 6]) * job.seed
        io.write_json(
            truth_mod.result_path(truth_dir, job),
            {"top1": 50.0 + 2 * job.arch + gap, "cpu_seconds": 1.0},
        )
    tail = truth_mod.truth_status(truth_dir)["noise_ceiling_so_far"]["tail"]
    assert tail["most_scattered"][0] == 5 and tail["most_scattered_archs"][0] == "a006"
    result = cli("bench", "ranking", "--status", "--out", str(tmp_path))
    assert result.code == 0, result.stderr
    assert "seed noise carried by 1 of 11 networks (a006)" in result.stdout


def test_the_seed_mean_is_more_reliable_than_one_seed():
    """Spearman-Brown: with true effects plus seed noise at pair correlation r, the mean of S
    seeds has reliability S r / (1 + (S - 1) r); one seed against the mean of the others agrees
    better than seed against seed."""
    rng = np.random.default_rng(1)
    quality = rng.normal(size=400)
    top1 = 70 + quality[:, None] + rng.normal(size=(400, 4))  # pair r = 0.5 in expectation
    ceiling = noise_ceiling(top1, resamples=20)
    assert ceiling["pearson"] == pytest.approx(0.5, abs=0.06)
    assert ceiling["seed_mean_reliability"] == pytest.approx(0.8, abs=0.04)  # 4 * .5 / 2.5
    assert ceiling["held_out_seed_tau"] > ceiling["kendall_tau"]["value"] + 0.05
    assert noise_ceiling(top1[:, :2], resamples=20)["held_out_seed_tau"] is None


def test_truth_noise_tells_a_carried_gap_from_a_noisy_end(tmp_path):
    """`benchmarks/truth_noise.py` on curves where seed 1 fell behind early and stayed behind
    (its train loss higher): the final gap follows the train-loss gap, and averaging the last
    epochs leaves it as it was; the kept truth's curves give the figures docs/ranking.md cites."""
    import runpy

    from dnatool.config import RECIPES_DIR

    root = RECIPES_DIR.parent
    script = runpy.run_path(str(root / "benchmarks/truth_noise.py"))
    rng = np.random.default_rng(0)
    for arch in range(6):
        lag = rng.uniform(0, 3)
        for seed in (0, 1):
            behind = lag * seed
            epochs = np.arange(1, 13)
            top1 = 90 - 40 * np.exp(-epochs / 3) - behind
            loss = 0.6 + 2 * np.exp(-epochs / 3) + 0.05 * behind
            lines = ["epoch,lr,train_loss,val_loss,top1,top5,ema_top1,seconds"]
            lines += [
                f"{e},0.001,{lo:.4f},0.5,{t:.3f},99,,1" for e, lo, t in zip(epochs, loss, top1)
            ]
            (tmp_path / f"a{arch:03d}-s{seed}.csv").write_text("\n".join(lines) + "\n")
    found = script["analyse"](script["read_curves"](tmp_path))
    assert found["archs"] == 6 and found["epochs"] == 12 and found["unfinished"] == []
    # a run still training (a truth under way) is not an end: its architecture is left out
    cut = (tmp_path / "a005-s1.csv").read_text().splitlines()[:8]
    (tmp_path / "a005-s1.csv").write_text("\n".join(cut) + "\n")
    partial = script["analyse"](script["read_curves"](tmp_path))
    assert partial["archs"] == 5 and partial["epochs"] == 12
    assert partial["unfinished"] == ["a005-s1"]
    assert "a005" not in partial["final_gap_by_arch"]
    for arch in (2, 3, 4):
        (tmp_path / f"a{arch:03d}-s0.csv").write_text("\n".join(cut) + "\n")
    with pytest.raises(BadInput, match="each run 12 epochs .4 runs unfinished"):
        script["analyse"](script["read_curves"](tmp_path))
    assert found["pearson_final_gap_vs_train_loss_gap"] == pytest.approx(-1.0)
    averaged = found["last_epochs_averaged"]
    assert averaged["last_3"]["mean_seed_difference"] == pytest.approx(
        found["mean_seed_difference"], abs=0.01
    )
    kept = script["analyse"](
        script["read_curves"](root / "docs/figures/ranking-truth-narrow24-2026-12-05/curves")
    )
    assert kept["archs"] == 24 and kept["mean_seed_difference"] == pytest.approx(1.09)
    assert kept["pearson_final_gap_vs_train_loss_gap"] < -0.8


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper (containers may have none)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _workers_started(logs: Path, proc, count: int = 2, timeout: float = 240) -> list[int]:
    """The pids of the truth workers once `count` have started a job (their logs are named so)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        started = [p for p in logs.glob("worker-*.log") if "start" in p.read_text()]
        if len(started) >= count:
            return [int(p.stem.split("-")[1]) for p in started]
        time.sleep(0.5)
    raise AssertionError("the truth workers did not start")


def _gone(pids: list[int], timeout: float) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.5)
    return not any(_alive(p) for p in pids)


def test_a_killed_bench_takes_its_truth_workers_with_it(tmp_path):
    """`kill` (SIGTERM) of `bench ranking --workers 2` stops its workers as Ctrl-C does; after a
    SIGKILL, which nothing can catch, the orphaned workers exit by themselves within a poll. No
    worker trains on beside the next run, which resumes the same jobs."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "bench"
    args = [
        sys.executable, "-m", "dnatool", "bench", "ranking",
        "-o", "archs=3", "-o", "seeds=1",
        "-o", "data_options={train_per_class: 12, val_per_class: 6}",
        "-o", "truth_overrides=[epochs=400, batch_size=32]",
        "--methods", "none", "--workers", "2", "--out", str(out),
    ]  # fmt: skip
    logs = out / "truth" / truth_mod.LOGS_DIR
    for sig, within in ((signal.SIGTERM, 60), (signal.SIGKILL, 3 * truth_mod.POLL_SECONDS + 30)):
        for log in logs.glob("*.log"):
            log.unlink()
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        workers = []
        try:
            workers = _workers_started(logs, proc)
            proc.send_signal(sig)
            assert proc.wait(timeout=60) != 0
            assert _gone(workers, within), f"workers {workers} outlived their bench ({sig.name})"
        finally:
            proc.kill()
            proc.wait()
            for pid in filter(_alive, workers):  # a failed check leaves no orphan behind
                os.kill(pid, signal.SIGKILL)
    assert not (out / "truth" / truth_mod.RESULTS_DIR).exists() or not any(
        (out / "truth" / truth_mod.RESULTS_DIR).iterdir()
    )


def test_a_second_bench_on_a_truth_under_way_is_refused_in_one_line(cli, tmp_path):
    """Two benches training one OUT's truth would run into each other's jobs hours in; the second
    is refused before it generates or trains anything, naming the holder."""
    from dnatool.utils.locks import artifact_lock

    out = tmp_path / "bench"
    with artifact_lock(out / "truth"):
        result = cli("bench", "ranking", "-o", "archs=3", "--methods", "none", "--out", str(out))
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "is being written by another dnatool process" in result.stderr
    assert not (out / "data").exists() and not (out / "truth" / truth_mod.PLAN_FILE).exists()


def test_truth_compare_matches_networks_and_sees_smaller_seed_gaps(tmp_path):
    """`benchmarks/truth_compare.py`: a second truth of 7 of the kept truth's networks (in another
    order) whose seed gaps are halved around the same means is matched network for network, its
    gaps are smaller everywhere, its ranking of the means has not moved, and its ceiling is up."""
    import copy
    import runpy

    from dnatool.config import RECIPES_DIR

    root = RECIPES_DIR.parent
    script = runpy.run_path(str(root / "benchmarks/truth_compare.py"))
    kept = truth_mod.load_truth(root / "docs/figures/ranking-truth-narrow24-2026-12-05/truth.json")
    second = copy.deepcopy(kept)
    second["archs"] = second["archs"][6::-1]
    for arch in second["archs"]:
        mean, half = np.mean(arch["top1"]), np.subtract(*arch["top1"]) / 4
        arch["top1"] = [mean + half, mean - half]
    path = tmp_path / "truth.json"
    path.write_text(json.dumps(second))
    found = script["compare"](kept, truth_mod.load_truth(path))
    assert found["archs"] == 7 and list(found["seed_gap_by_arch"]) == [
        f"a{i:03d}" for i in range(7)
    ]
    for before, after in found["seed_gap_by_arch"].values():
        assert after == pytest.approx(before / 2, abs=0.01)
    assert found["seed_gap_smaller_in_second"] == 7
    assert found["kendall_tau_between_means"] == pytest.approx(1.0)
    assert found["mean_top1_gain"] == pytest.approx(0.0, abs=1e-9)
    assert found["second"]["mean_seed_difference"] == pytest.approx(
        found["first"]["mean_seed_difference"] / 2
    )
    assert found["second"]["seed_tau"]["value"] >= found["first"]["seed_tau"]["value"]
    with pytest.raises(BadInput, match="share 2 architectures"):
        script["compare"](kept, {**second, "archs": second["archs"][:2]})


def test_val_sampling_tells_coin_flips_from_training_noise(tmp_path):
    """`benchmarks/val_sampling.py`: seed pairs that disagree only by coin flips on the validation
    images are all sampling noise; pairs whose second seed is truly worse are mostly training
    noise, and one network with a large gap is named as the heavy tail it is. A recomputed top-1
    that is not the truth's record is refused (other data)."""
    import runpy

    from dnatool.config import RECIPES_DIR

    script = runpy.run_path(str(RECIPES_DIR.parent / "benchmarks/val_sampling.py"))
    rng = np.random.default_rng(0)
    n = 4000

    def pair(flip: float, worse: float) -> tuple[np.ndarray, np.ndarray]:
        first = rng.random(n) < 0.85
        second = first.copy()
        flips, coin = rng.random(n) < flip, rng.random(n) < 0.5
        first[flips], second[flips] = coin[flips], ~coin[flips]  # disagreements with no side
        lost = first & (rng.random(n) < worse)  # seed 1 really worse on the distribution
        second[lost] = False
        return first, second

    flips = {}
    for arch in range(200):
        flips[arch, 0], flips[arch, 1] = pair(0.12, 0.0)
    found = script["analyse"](flips)
    assert found["archs"] == 200 and found["val_images"] == n
    assert found["sampling_share_of_variance"] == pytest.approx(1.0, abs=0.2)
    assert found["training_sigma"] < 0.5 * found["run_sigma"]
    trained = {}
    for arch in range(40):
        trained[arch, 0], trained[arch, 1] = pair(0.05, 0.06 if arch == 7 else 0.02)
    found = script["analyse"](trained)
    assert found["sampling_share_of_variance"] < 0.3
    assert found["gaps_beyond_2_sampling_se"] >= 35
    assert max(found["by_arch"], key=lambda a: found["by_arch"][a]["gap"]) == "a007"
    assert found["tail"]["most_scattered_archs"][0] == "a007"
    assert found["tail"]["by_k"][0]["sigma_without"] < found["run_sigma"]
    script["plot"](found, tmp_path / "gaps.png")
    assert (tmp_path / "gaps.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(BadInput, match="at least 3 architectures"):
        script["analyse"]({k: v for k, v in trained.items() if k[0] < 2})
    (tmp_path / "results").mkdir()
    recorded = 100 * trained[3, 0].mean()
    (tmp_path / "results" / "a003-s0.json").write_text(json.dumps({"top1": round(recorded, 2)}))
    script["check_recorded"](tmp_path, {(3, 0): trained[3, 0]})
    (tmp_path / "results" / "a003-s0.json").write_text(json.dumps({"top1": recorded + 0.5}))
    with pytest.raises(BadInput, match="a003-s0: top-1 .* not the data it was validated on"):
        script["check_recorded"](tmp_path, {(3, 0): trained[3, 0]})


def test_ceiling_model_recovers_the_noise_and_orders_the_designs():
    """`benchmarks/ceiling_model.py` on a truth made with known noise: it recovers the per-run
    noise, spacing networks evenly beats drawing them, a perfect pilot spaces as well as the
    truth itself and a useless one no better than a draw, and the noise it says reaches the
    target does reach it."""
    import runpy

    from dnatool.config import RECIPES_DIR

    model = runpy.run_path(str(RECIPES_DIR.parent / "benchmarks/ceiling_model.py"))
    rng = np.random.default_rng(7)
    true = np.concatenate([rng.normal(89, 1.0, 30), rng.normal(80, 3.0, 10)])  # a crowded top
    top1 = true[:, None] + rng.normal(0, 1.0, (40, 2))
    sigma, shrunk = true_accuracies(top1)
    assert 0.75 < sigma < 1.25
    assert np.std(shrunk) < np.std(top1.mean(axis=1))
    found = model["project"](top1, [12], pool=60, pilot_r=0.999, reps=200)
    useless = model["pilot_design"](shrunk, sigma, 12, 60, 0.05, 200, 0)
    assert found["even_12"] > found["random_12"] + 0.1
    assert found["pilot_12"] == pytest.approx(found["even_12"], abs=0.06)
    assert useless == pytest.approx(found["random_12"], abs=0.08)
    low, high = found["same_networks_95"]
    assert low < found["same_networks"] < high
    assert found["same_networks"] == pytest.approx(found["measured_ceiling"], abs=0.1)
    reached = model["expected_tau"](shrunk, found["sigma_for_target"], 400)
    assert reached == pytest.approx(0.8, abs=0.03)
    # one seed and the noise known (a truth under way): the forecast is the two-seed projection
    ahead = model["project"](top1[:, :1], [12], pool=60, reps=200, sigma=sigma)
    assert ahead["measured_ceiling"] is None and ahead["sigma"] == sigma
    assert ahead["same_networks"] == pytest.approx(found["same_networks"], abs=0.06)
    assert ahead["tail"] is None and found["tail"]["by_k"]  # one seed: no scatter to check


def test_scatter_tail_tells_a_few_noisy_networks_from_one_sigma():
    """`scatter_tail` (part of every noise ceiling): with one noise for every network the share
    of the scatter the most scattered carry is what Gaussian noise gives; with two networks
    eight times noisier it is flagged (chance < 1%), they are named, and the others' noise is
    found."""
    from dnatool.bench.stats import scatter_tail

    rng = np.random.default_rng(3)
    true = np.linspace(80, 92, 30)[:, None]
    even = scatter_tail(true + rng.normal(0, 1.0, (30, 3)))
    assert [t["k"] for t in even["by_k"]] == [1, 2, 3, 4]
    assert even["sigma"] == pytest.approx(1.0, abs=0.2)
    assert all(t["gaussian_p"] > 0.05 for t in even["by_k"])
    noise = np.ones((30, 1))
    noise[[17, 4]] = 8.0
    tailed = scatter_tail(true + rng.normal(0, 1.0, (30, 3)) * noise)
    two = tailed["by_k"][1]
    assert sorted(tailed["most_scattered"][:2]) == [4, 17]
    assert two["gaussian_p"] < 0.01 and two["share"] > 0.8
    assert two["sigma_without"] == pytest.approx(1.0, abs=0.2)
    assert two["gaussian_sigma_without"] > 2 * two["sigma_without"]
    assert len(scatter_tail(true[:3] + rng.normal(0, 1.0, (3, 2)))["by_k"]) == 2  # k < archs
    same = scatter_tail(np.repeat(true, 2, axis=1))  # every seed equal: nothing to judge
    assert all(np.isnan(t["gaussian_p"]) for t in same["by_k"]) and same["sigma"] == 0.0


def test_the_summary_names_the_networks_that_carry_the_seed_noise():
    """The kept spread truth (written before the check) gets its tail computed and printed with
    the networks' names; the kept MACs-sampled truth, whose scatter is one sigma's, gets none."""
    from dnatool.bench.ranking import load_ranking_recipe, summarize, summary_lines
    from dnatool.config import RECIPES_DIR

    recipe = load_ranking_recipe("bench-ranking", ())
    figures = RECIPES_DIR.parent / "docs/figures"
    spread = truth_mod.load_truth(figures / "ranking-truth-spread24-2026-12-05/truth.json")
    assert "tail" not in spread["noise_ceiling"]
    summary = summarize(spread, "truth.json", {}, recipe)
    tail = summary["truth"]["noise_ceiling"]["tail"]
    assert tail["most_scattered_archs"] == ["a009", "a007", "a013", "a014"]
    lines = [line for line in summary_lines(summary) if line.startswith("seed noise carried")]
    assert lines == [
        "seed noise carried by 4 of 24 networks (a009, a007, a013, a014): 78% of the seed "
        "scatter where one Gaussian sigma for all gives 57% (chance 0.5%); the others' run "
        "noise 0.56 points against 1.10"
    ]
    kept = truth_mod.load_truth(figures / "ranking-truth-narrow24-2026-12-05/truth.json")
    lines = summary_lines(summarize(kept, "truth.json", {}, recipe))
    assert not any(line.startswith("seed noise carried") for line in lines)


def test_a_method_trained_on_a_larger_space_scores_the_same_networks(tmp_path, monkeypatch):
    """`methods: {M: {space: S}}` trains M's supernet on S and hands it the truth's networks as
    choices of S (the same layers); a space that cannot build them is refused before any method
    trains, naming the block."""
    from dnatool.bench import methods
    from dnatool.bench import ranking as ranking_mod
    from dnatool.config import RECIPES_DIR

    calls = []

    def rate(ctx):
        calls.append(ctx)
        return {"scores": [-float(sum(sum(p) for _, p in c)) for c in ctx.archs]}

    monkeypatch.setitem(methods.METHODS, "fake", methods.Method("fake", "test", lambda: None, rate))
    monkeypatch.setattr(ranking_mod, "data_for_truth", lambda truth, out, report=None: "/nowhere")
    kept = RECIPES_DIR.parent / "docs/figures/ranking-truth-narrow24-2026-12-05/truth.json"
    recipe = ranking_mod.RankingRecipe(
        bootstrap=100, methods={"fake@many": {"space": "ranking-narrow-many"}, "fake@bad": {}}
    )
    summary = ranking_mod.run_ranking(recipe, tmp_path, ["fake", "fake@many"], truth_path=kept)
    narrow, many = calls
    assert (narrow.space.name, narrow.space_ref) == ("ranking-narrow", "ranking-narrow")
    assert (many.space.name, many.space_ref) == ("ranking-narrow-many", "ranking-narrow-many")
    assert "space" not in many.options
    truth = truth_mod.load_truth(kept)
    assert narrow.archs == truth_mod.truth_choices(truth)
    assert many.archs != narrow.archs and len(many.archs) == 24
    for small, large in zip(narrow.archs, many.archs, strict=True):
        assert many.space.to_arch(large).stages == narrow.space.to_arch(small).stages
    assert summary["methods"]["fake@many"]["space"] == "ranking-narrow-many"
    assert summary["methods"]["fake"]["space"] == "ranking-narrow"
    lines = ranking_mod.summary_lines(finite_or_none(summary))
    assert any(
        x.startswith("fake@many: ") and "supernet on ranking-narrow-many" in x for x in lines
    )
    assert not any(x.startswith("fake: ") and "supernet on" in x for x in lines)
    recipe.methods["fake@bad"] = {"space": "ranking"}
    with pytest.raises(BadInput, match="'ranking' has no path for block 0"):
        ranking_mod.run_ranking(recipe, tmp_path / "b", ["fake", "fake@bad"], truth_path=kept)
    assert len(calls) == 2  # refused before the first method ran


def test_size_matched_agreement_judges_only_networks_of_about_the_same_size():
    """The share of pairs within 1.25x of each other's MACs that a rating orders as training
    did: what a search under a budget needs from a rating and the size alone cannot give."""
    from dnatool.bench.ranking import RankingRecipe, summarize, summary_lines
    from dnatool.bench.stats import size_matched_agreement

    acc = [80.0, 70.0, 60.0, 90.0, 75.0]
    macs = [100.0, 110.0, 200.0, 210.0, 1000.0]  # pairs (0, 1) and (2, 3); 4 has no neighbour
    right = [1.0, 2.0, 2.0, 1.0, 0.0]  # losses: 0 before 1, 3 before 2
    found = size_matched_agreement([right], acc, macs, resamples=200)
    assert found["pairs"] == 2 and found["value"] == 1.0
    assert 0.0 <= found["low"] <= found["high"] <= 1.0
    wrong_first = [2.0, 1.0, 2.0, 1.0, 0.0]
    assert size_matched_agreement([right, wrong_first], acc, macs)["value"] == 0.75  # run mean
    assert size_matched_agreement([[1.0, 1.0, 2.0, 1.0, 9.0]], acc, macs)["value"] == 0.75  # tie
    by_size = [[-m for m in macs]]
    assert size_matched_agreement(by_size, acc, macs)["value"] == 0.5  # 110 > 100 but 70 < 80
    assert size_matched_agreement([right], acc, macs, ratio=2.5)["pairs"] == 6
    with pytest.raises(ValueError, match="positive size"):
        size_matched_agreement([right], acc, [0.0, *macs[1:]])
    truth = {
        "space": {"name": "ranking"},
        "seeds": 2,
        "archs": [{"mean_top1": a, "macs": m, "params": m} for a, m in zip(acc, macs)],
    }
    results = {
        name: {**method_correlations(s, acc, resamples=100), "scores": s}
        for name, s in {"dna": right, "spos": wrong_first}.items()
    }
    summary = summarize(truth, "t.json", results, RankingRecipe(bootstrap=200))
    assert {k: v["value"] for k, v in summary["size_matched"].items()} == {
        "dna": 1.0, "spos": 0.5, "macs": 0.5
    }  # fmt: skip
    assert any(
        line.startswith("networks within 1.25x of each other's MACs (2 pairs)")
        and "dna 1.000 [" in line
        for line in summary_lines(finite_or_none(summary))
    )
    apart = {**truth, "archs": [{**a, "macs": 10.0**i} for i, a in enumerate(truth["archs"])]}
    summary = finite_or_none(summarize(apart, "t.json", results, RankingRecipe(bootstrap=200)))
    assert summary["size_matched"]["dna"]["pairs"] == 0
    assert summary["size_matched"]["dna"]["value"] is None  # undefined, not 0 or 1
    assert not any("each other's MACs" in line for line in summary_lines(summary))


def test_a_variant_is_compared_with_its_method_and_with_spos_changed_alike():
    """`dna@many` against `dna` (what the variant changed) and against `spos@many` (SPOS changed
    the same way), besides SPOS and MACs; a variant without such relatives gets only those; a
    method against every SPOS variant."""
    from dnatool.bench.ranking import RankingRecipe, summarize

    truth, results = _five_archs(
        {
            "dna": [5.0, 4.0, 3.0, 2.0, 1.0],
            "dna@many": [4.0, 5.0, 3.0, 2.0, 1.0],
            "dna@own": [5.0, 4.0, 3.0, 1.0, 2.0],
            "spos": [5.0, 3.0, 4.0, 1.0, 2.0],
            "spos@many": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    summary = summarize(truth, "t.json", results, RankingRecipe(bootstrap=200))
    pairs = {(c["first"], c["second"]): c["value"] for c in summary["comparisons"]}
    assert {p for p in pairs if p[0] == "dna@many"} == {
        ("dna@many", "dna"), ("dna@many", "spos@many"), ("dna@many", "spos"), ("dna@many", "macs")
    }  # fmt: skip
    assert pairs["dna@many", "dna"] == pytest.approx(0.8 - 1.0)
    assert pairs["dna@many", "spos@many"] == pytest.approx(0.8 - (-1.0))
    assert {p for p in pairs if p[0] == "dna@own"} == {
        ("dna@own", "dna"), ("dna@own", "spos"), ("dna@own", "macs")
    }  # fmt: skip
    assert {p for p in pairs if p[0] == "spos@many"} == {
        ("spos@many", "spos"), ("spos@many", "macs")
    }  # fmt: skip
    # a method is also judged against every SPOS budget (e.g. SPOS at its own CPU)
    assert {p for p in pairs if p[0] == "dna"} == {
        ("dna", "spos"), ("dna", "spos@many"), ("dna", "macs")
    }  # fmt: skip
    assert pairs["dna", "spos@many"] == pytest.approx(1.0 - (-1.0))
    assert {p for p in pairs if p[0] == "spos"} == {("spos", "macs")}


def test_a_truth_reuses_the_jobs_another_truth_trained_exactly(tmp_path, monkeypatch):
    """A truth picked from a pilot shares networks with a kept truth: their jobs (same network,
    recipe, data and training seed) are copied with their provenance, the others train; a source
    that trained another truth is refused in one line."""
    space = load_space("ranking")
    monkeypatch.setattr(truth_mod, "run_job", _fake_job)
    kept = _fake_plan(space)
    truth_mod.run_truth(tmp_path / "kept", kept)
    io.write_text(tmp_path / "kept" / "runs" / "a002-s1" / "curves.csv", "epoch,top1\n1,70\n")
    plan = _fake_plan(space, archs=6, seeds=3)
    plan["archs"] = [plan["archs"][i] for i in (2, 4, 0)]  # kept's a002, a new one, kept's a000
    for i, entry in enumerate(plan["archs"]):
        entry["index"] = i
    trained = []
    monkeypatch.setattr(
        truth_mod, "run_job", lambda d, p, j, r=None: trained.append(j.name) or _fake_job(d, p, j)
    )
    truth = truth_mod.run_truth(tmp_path / "new", plan, reuse=[tmp_path / "kept" / "truth.json"])
    assert trained == ["a001-s0", "a001-s1", "a000-s2", "a001-s2", "a002-s2"]
    assert truth["reused_jobs"] == 4 and truth["jobs"] == 9
    assert truth["archs"][0]["top1"][:2] == [70.0, 71.0]  # kept's a002, seeds 0 and 1
    assert truth["archs"][2]["top1"][:2] == [50.0, 51.0]
    row = io.read_json(tmp_path / "new" / "results" / "a000-s1.json")
    assert (row["job"], row["arch"], row["seed"]) == ("a000-s1", 0, 1)
    assert row["reused_from"] == {"truth": str((tmp_path / "kept").resolve()), "job": "a002-s1"}
    assert (tmp_path / "new" / "runs" / "a000-s1" / "curves.csv").read_text().startswith("epoch")
    # training seeds, not seed indices, are matched: base seed 1 takes kept's seed-1 jobs as s0
    shifted = {**plan, "recipe": {"seed": 1}, "seeds": 1}
    truth_mod.run_truth(tmp_path / "shifted", shifted, reuse=[tmp_path / "kept"])
    assert io.read_json(tmp_path / "shifted" / "results" / "a000-s0.json")["top1"] == 71.0
    refused = (
        (
            {"recipe": {"seed": 0, "epochs": 48}},
            r"another recipe .recipe key epochs was \d+, now 48",
        ),
        ({"data": {"root": "/elsewhere"}}, "other data"),
        ({"space": {**plan["space"], "digest": "0"}}, "another space"),
    )
    for case, (changed, message) in enumerate(refused):
        with pytest.raises(BadInput, match=f"reuse .*kept: (trained on )?{message}"):
            truth_mod.run_truth(
                tmp_path / f"x{case}", {**plan, **changed}, reuse=[tmp_path / "kept"]
            )
    with pytest.raises(BadInput, match="no truth there"):
        truth_mod.run_truth(tmp_path / "y", plan, reuse=[tmp_path / "nothing"])


def test_the_kept_truth_lends_its_jobs_to_a_truth_of_the_shipped_recipe(tmp_path):
    """The kept 24 x 2 copy in docs/figures (plan + results, predating `stop_after`) is a source
    for a truth planned with today's recipe: its networks' jobs are taken, not retrained."""
    from dnatool.config import RECIPES_DIR, to_dict
    from dnatool.retrain.recipe import load_retrain_recipe

    kept = RECIPES_DIR.parent / "docs/figures/ranking-truth-narrow24-2026-12-05"
    old = io.read_json(kept / "plan.json")
    recipe = load_retrain_recipe("retrain-ranking", ("epochs=24", "compile=reduce-overhead"))
    plan = {**old, "recipe": {**to_dict(recipe), "data": "/new"}, "archs": old["archs"][5:8]}
    for i, entry in enumerate(plan["archs"]):
        entry["index"] = i
    io.write_json(tmp_path / "plan.json", plan)
    assert truth_mod.reuse_results(tmp_path, plan, [kept]) == 6
    truth = truth_mod.assemble_truth(tmp_path, plan)
    assert [a["top1"] for a in truth["archs"]] == [
        io.read_json(kept / "truth.json")["archs"][i]["top1"] for i in (5, 6, 7)
    ]


def test_ceiling_model_forecasts_a_truth_under_way_from_a_references_noise(tmp_path, capsys):
    """A truth folder with its first seed done: the forecast uses the reference truth's noise
    (the kept 24 x 2 one), and without a reference one seed is refused, not projected as
    noiseless."""
    import runpy

    from dnatool.config import RECIPES_DIR

    model = runpy.run_path(str(RECIPES_DIR.parent / "benchmarks/ceiling_model.py"))
    plan = _fake_plan(load_space("ranking"), archs=4, seeds=2)
    truth_mod.write_plan(tmp_path, plan)
    for job in truth_mod.all_jobs(4, 1):
        _fake_job(tmp_path, plan, job)
    kept = RECIPES_DIR.parent / "docs/figures/ranking-truth-narrow24-2026-12-05/truth.json"
    args = [str(tmp_path), "--sizes", "4", "--reps", "100", "--pool", "8"]
    assert model["main"]([*args, "--sigma-from", str(kept)]) == 0
    out = json.loads(capsys.readouterr().out)[str(tmp_path)]
    assert (out["archs"], out["seeds"], out["measured_ceiling"]) == (4, 1, None)
    assert out["sigma"] == pytest.approx(0.98, abs=0.01) and out["sigma_from"] == str(kept)
    assert out["same_networks"] > 0.9  # 10 points apart at a 1-point noise
    with pytest.raises(BadInput, match="one seed has no noise to measure"):
        model["main"](args)
    with pytest.raises(BadInput, match="fewer than 3 architectures have two seeds"):
        model["main"]([*args, "--sigma-from", str(tmp_path)])
    for job in truth_mod.all_jobs(4, 2)[4:7]:  # three second seeds: the truth's own noise so far
        _fake_job(tmp_path, plan, job)
    assert model["main"]([*args, "--sigma-from", str(tmp_path)]) == 0
    own = json.loads(capsys.readouterr().out)[str(tmp_path)]
    assert own["seeds"] == 1 and own["sigma"] == pytest.approx(np.sqrt(0.5))  # gaps of 1 point


def test_a_perfect_rating_bounds_what_any_rating_can_score_and_lead_by():
    """Methods are scored against S-seed means: a rating that knew the true accuracies scores
    above the seed-pair ceiling but below 1, and the room above a baseline bounds a lead over it."""
    from dnatool.bench.ranking import RankingRecipe, summarize, summary_lines
    from dnatool.bench.stats import perfect_rating

    rng = np.random.default_rng(3)
    true = np.linspace(80.0, 90.0, 24)
    top1 = true[:, None] + rng.normal(0, 1.0, (24, 2))
    found = perfect_rating(top1, resamples=500)
    measured = noise_ceiling(top1, resamples=50)["kendall_tau"]["value"]
    for model in ("pooled", "per_network"):
        m = found[model]
        assert m["low"] <= m["value"] <= m["high"] < 1.0
        assert m["value"] > m["seed_pair_tau"]  # a mean of two runs is steadier than one run
    assert found["pooled"]["seed_pair_tau"] == pytest.approx(measured, abs=0.1)
    assert perfect_rating(np.repeat(true[:, None], 2, axis=1), resamples=50)["pooled"]["value"] == 1
    assert perfect_rating(top1[:, :1]) is None
    assert perfect_rating([[80, 82], [82, 80], [79, 83], [83, 79]]) is None  # all noise, no order
    four = true[:, None] + rng.normal(0, 1.0, (24, 4))  # a mean of more seeds: steadier still
    assert perfect_rating(four, resamples=500)["pooled"]["value"] > found["pooled"]["value"]
    few = true[:, None] + np.where(np.arange(24)[:, None] < 3, rng.normal(0, 4.0, (24, 2)), 0.1)
    concentrated = perfect_rating(few, resamples=500)
    assert concentrated["per_network"]["value"] > concentrated["pooled"]["value"] + 0.05

    acc = top1.mean(axis=1)
    truth = {
        "space": {"name": "ranking"},
        "seeds": 2,
        "archs": [
            {
                "mean_top1": float(a),
                "top1": t.tolist(),
                "macs": 1e6 * (1 + i),
                "params": 1e5 * (24 - i),
            }
            for i, (a, t) in enumerate(zip(acc, top1))
        ],
    }
    scores = (-true + rng.normal(0, 2.0, 24)).tolist()  # losses: a good rating, not a perfect one
    results = {"dna": {**method_correlations(scores, acc, resamples=100), "scores": scores}}
    summary = finite_or_none(summarize(truth, "t.json", results, RankingRecipe(bootstrap=300)))
    perfect = summary["truth"]["perfect_rating"]
    dna = summary["methods"]["dna"]["kendall_tau"]["value"]
    assert perfect["room"]["dna"]["pooled"] == pytest.approx(perfect["pooled"]["value"] - dna)
    assert set(perfect["room"]) == {"dna", "macs", "params"}
    lines = summary_lines(summary)
    assert any(line.startswith("a perfect rating (the true accuracies)") for line in lines)
    assert any(line.startswith("room to a perfect rating") and "dna +" in line for line in lines)
    no_runs = {
        **truth,
        "archs": [{k: v for k, v in a.items() if k != "top1"} for a in truth["archs"]],
    }
    assert (
        summarize(no_runs, "t.json", results, RankingRecipe(bootstrap=100))["truth"][
            "perfect_rating"
        ]
        is None
    )


def test_dna_is_also_judged_against_the_spos_given_at_most_its_cpu():
    """The papers compare methods at equal search cost: besides the default SPOS, the summary
    judges DNA's lead over the SPOS variant given the most CPU that is still at most DNA's."""
    from dnatool.bench.ranking import RankingRecipe, summarize, summary_lines

    acc = [60.0, 70.0, 80.0, 90.0, 65.0, 75.0]
    truth = {"space": {"name": "ranking"}, "seeds": 1, "archs": [{"mean_top1": a} for a in acc]}
    runs = {  # losses; CPU seconds per supernet (DNA's first run carries the shared teacher)
        "dna": ([4.0, 3.0, 2.0, 1.0, 3.5, 2.5], 300.0),
        "dna@seed1": ([4.0, 3.0, 2.0, 1.0, 2.5, 3.5], 100.0),
        "spos": ([4.0, 3.0, 1.0, 2.0, 3.5, 2.5], 500.0),
        "spos@e8": ([1.0, 2.0, 3.0, 4.0, 2.5, 3.5], 190.0),
        "spos@e4": ([4.0, 3.0, 2.0, 1.0, 3.5, 2.5], 90.0),
    }
    results = {
        name: {**method_correlations(s, acc, resamples=100), "scores": s, "cpu_seconds": cpu}
        for name, (s, cpu) in runs.items()
    }
    groups = {"dna": ["dna", "dna@seed1"], "spos": ["spos"], "spos@e8": ["spos@e8"]}
    groups["spos@e4"] = ["spos@e4"]
    summary = summarize(truth, "t.json", results, RankingRecipe(bootstrap=100), groups)
    assert summary["spos_at_equal_cpu"] == "spos@e8"  # 190 <= DNA's 200; e4 is cheaper still
    assert summary["met"]["dna_over_spos_at_equal_cpu"] is True  # SPOS at 190 s ranks backwards
    assert summary["met"]["dna_over_spos"] is False
    assert summary_lines(finite_or_none(summary))[-1].endswith(
        "dna_over_spos not met, dna_over_spos_at_equal_cpu (spos@e8) met"
    )
    results["spos@e8"]["cpu_seconds"] = 210.0  # more than DNA had: spos@e4 is the fair one
    summary = summarize(truth, "t.json", results, RankingRecipe(bootstrap=100), groups)
    assert summary["spos_at_equal_cpu"] == "spos@e4"
    assert summary["met"]["dna_over_spos_at_equal_cpu"] is False
    del results["dna"]["cpu_seconds"]
    summary = summarize(truth, "t.json", results, RankingRecipe(bootstrap=100), groups)
    assert (
        summary["spos_at_equal_cpu"] is None and "dna_over_spos_at_equal_cpu" not in summary["met"]
    )


def test_a_kept_summary_is_rescored_against_another_truth_of_its_networks(tmp_path, cli):
    """A summary keeps each run's scores, so its methods can be judged against a truth of the
    same networks trained again (another recipe, more seeds) without their supernets; a truth
    of other networks, or a summary without scores, is refused in one line."""
    from dnatool.bench.ranking import RankingRecipe, summarize

    narrow = load_space("ranking-narrow")
    pool = truth_mod.sample_uniform(narrow, 6, 0)
    rng = np.random.default_rng(5)
    true = np.linspace(80.0, 90.0, 6)

    def truth_of(top1):
        return {
            "format": truth_mod.TRUTH_FORMAT,
            "space": {"ref": "ranking-narrow", "name": narrow.name, "digest": narrow.digest},
            "seeds": 2,
            "archs": [
                {"index": i, "choices": [[c, list(p)] for c, p in pool[i]], "top1": t.tolist()}
                for i, t in enumerate(top1)
            ],
        }

    old = tmp_path / "old.json"
    old.write_text(json.dumps(truth_of(true[:, None] + rng.normal(0, 3.0, (6, 2)))))
    new = tmp_path / "new.json"
    new.write_text(json.dumps(truth_of(true[:, None] + rng.normal(0, 0.2, (6, 2)))))
    scores = {"dna": (-true).tolist(), "dna@seed1": (-true).tolist(), "spos": true.tolist()}
    first = truth_mod.load_truth(old)
    accuracy = [a["mean_top1"] for a in first["archs"]]
    results = {
        name: {**method_correlations(s, accuracy, resamples=100), "scores": s, "n": 6}
        for name, s in scores.items()
    }
    groups = {"dna": ["dna", "dna@seed1"], "spos": ["spos"]}
    kept = finite_or_none(summarize(first, str(old), results, RankingRecipe(bootstrap=100), groups))
    summary_file = tmp_path / "ranking.json"
    summary_file.write_text(json.dumps(kept))

    done = cli(
        "bench", "ranking", "--rescore", str(summary_file), "--truth", str(new),
        "--out", str(tmp_path / "out"), "-o", "bootstrap=100", "--json",
    )  # fmt: skip
    assert done.code == 0, done.stderr
    again = json.loads(done.stdout)
    assert again["truth"]["path"] == str(new)
    assert again["methods"]["dna"]["kendall_tau"]["value"] == pytest.approx(1.0)  # true order
    assert again["supernet_seeds"]["dna"]["runs"] == ["dna", "dna@seed1"]
    assert again["methods"]["spos"]["kendall_tau"]["value"] == pytest.approx(-1.0)
    assert again["rescored_from"] == str(summary_file)
    assert (tmp_path / "out" / "ranking.json").is_file()
    assert (tmp_path / "out" / "ranking.png").stat().st_size > 0

    other = truth_of(true[:, None] + rng.normal(0, 0.2, (6, 2)))
    other["archs"] = other["archs"][::-1]
    (tmp_path / "other.json").write_text(json.dumps(other))
    refused = cli("bench", "ranking", "--rescore", str(summary_file), "--truth",
                  str(tmp_path / "other.json"), "--out", str(tmp_path / "o2"))  # fmt: skip
    assert refused.code == 2 and "scored other networks than" in refused.stderr
    assert "Traceback" not in refused.stderr
    for name in kept["methods"]:
        del kept["methods"][name]["scores"]
    summary_file.write_text(json.dumps(kept))
    refused = cli("bench", "ranking", "--rescore", str(summary_file), "--truth", str(new),
                  "--out", str(tmp_path / "o3"))  # fmt: skip
    assert refused.code == 2 and "keeps no scores for dna (written before" in refused.stderr
    refused = cli("bench", "ranking", "--rescore", str(summary_file), "--out", str(tmp_path))
    assert refused.code == 2 and "--rescore takes --truth" in refused.stderr

"""SPOS baseline: the whole-space supernet (same timm modules as the standalone network), its
training (uniform and FLOPs-bin sampling, checkpoints, resume, torchrun), rating by top-1 after BN
recalibration, and evolutionary search on the supernet, end to end on the built-in digits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dnatool.arch.space import load_space
from dnatool.errors import BadInput
from dnatool.nn.spos import SposSupernet, extract_subnet
from dnatool.nn.timm_adapter import build_model
from dnatool.utils import io

FAST = ["-o", "max_steps_per_epoch=3", "-o", "rate_per_class=4", "-o", "bn_batches=2"]


def _train(cli, out: Path, *extra: str):
    return cli("train", "spos-tiny", "--out", str(out), *FAST, *extra)


def _train_here(out: Path, *overrides: str, resume: bool = False) -> dict:
    """`dnatool train spos-tiny` in this process (no interpreter start-up)."""
    from dnatool.train.recipe import load_train_recipe
    from dnatool.train.spos import run_spos

    keys = tuple(FAST[1::2]) + overrides
    return run_spos(load_train_recipe("spos-tiny", keys), out, resume=resume)


@pytest.fixture(scope="module")
def spos_run(tmp_path_factory):
    """A 2-epoch, 3-steps-an-epoch SPOS run of spos-tiny on the coupled tiny-w space."""
    run = tmp_path_factory.mktemp("spos") / "run"
    return run, _train_here(run, "epochs=2", "space=tiny-w")


@pytest.mark.parametrize("name", ["tiny", "tiny-w", "hybrid-tiny"])
def test_a_supernet_path_is_the_standalone_network(name):
    """Same module types, and the extracted network computes exactly the supernet's path."""
    space = load_space(name)
    torch.manual_seed(0)
    supernet = SposSupernet(space).eval()
    rng = np.random.default_rng(0)
    images = torch.randn(3, 3, 32, 32)
    for _ in range(4):
        choices = space.sample(rng)
        model = extract_subnet(supernet, choices).eval()
        reference = build_model(space.to_arch(choices))
        assert [type(m) for m in model.modules()] == [type(m) for m in reference.modules()]
        with torch.no_grad():
            assert torch.equal(supernet(images, choices), model(images))
    if space.coupled:  # one first-layer module per input width, one head per last width
        assert set(supernet.blocks[1][0].first) == {str(w) for w in space.in_widths(1)}
        assert set(supernet.heads) == {str(w) for w in space.in_widths(len(space.blocks))}


def test_flops_bin_sampling_is_uniform_over_bins():
    from dnatool.train.spos import ChoiceCounts, flops_bin_sampler, flops_range

    space = load_space("tiny")
    counts = ChoiceCounts(space)
    low, high = flops_range(space, counts.macs, seed=0)
    sample = flops_bin_sampler(space, counts.macs, (low, high), bins=4, timeout=500)
    rng = np.random.default_rng(1)
    macs = [counts.macs(sample(rng)) for _ in range(400)]
    per_bin = np.histogram(macs, bins=np.linspace(low, high, 5))[0]
    assert per_bin.sum() >= 395 and per_bin.min() >= 70, per_bin  # uniform: 100 each
    uniform = [counts.macs(space.sample(rng)) for _ in range(400)]
    assert np.histogram(uniform, bins=np.linspace(low, high, 5))[0].min() < 70, "not uniform"
    arch = space.to_arch(space.sample(np.random.default_rng(2)))
    from dnatool.nn.timm_adapter import count_macs, count_params

    choices = space.sample(np.random.default_rng(2))
    model = build_model(space.to_arch(choices))
    assert counts(choices) == (count_params(model), count_macs(model, (1, 3, 32, 32)))
    assert arch.stages  # the arch of a sample is valid


def test_train_writes_checkpoint_curves_and_manifest(spos_run):
    run, result = spos_run
    assert result["epochs"] == 2 and result["final_loss"] > 0
    checkpoint = io.load_checkpoint(run / "supernet" / "spos.pt", "spos_supernet")
    assert checkpoint["epoch"] == 2 and len(checkpoint["history"]) == 2
    lrs = [row[3] for row in checkpoint["history"]]
    from dnatool.train.recipe import load_train_recipe

    lr = load_train_recipe("spos-tiny").lr  # linear decay to 0 over 2 epochs x 3 steps
    assert lrs[0] == pytest.approx(lr * (1 - 2 / 6)) and lrs[1] == pytest.approx(lr / 6)
    assert (run / "curves" / "loss.png").stat().st_size > 1000
    assert len((run / "curves" / "loss.csv").read_text().splitlines()) == 3
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["recipe"]["method"] == "spos" and manifest["finished"]
    assert manifest["space"]["name"] == "tiny-w"


def test_resume_continues_and_refuses_another_recipe(cli, tmp_path):
    run = tmp_path / "run"
    _train_here(run, "epochs=1", "sampling=flops")
    with pytest.raises(BadInput, match="--resume"):
        _train_here(run, "epochs=1", "sampling=flops")
    other = _train(cli, run, "-o", "epochs=2", "-o", "sampling=uniform", "--resume")
    assert other.code == 2 and "sampling was 'flops'" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    data = _train_here(run, "epochs=2", "sampling=flops", resume=True)
    assert data["start_epoch"] == 1 and data["epochs"] == 2 and len(data["flops_range"]) == 2
    checkpoint = io.load_checkpoint(run / "supernet" / "spos.pt", "spos_supernet")
    assert [row[0] for row in checkpoint["history"]] == [0, 1]


@pytest.mark.parametrize("data", ["digits", "folder"])
def test_the_same_recipe_trains_the_same_weights(tmp_path, data):
    """Also on an ImageFolder, whose timm transforms (random crops) once drew from Python's
    unseeded generator."""
    from PIL import Image

    options = ["epochs=1"]
    if data == "folder":
        rng = np.random.default_rng(0)
        for split, count in (("train", 10), ("val", 2)):
            for label in "ab":
                (tmp_path / "images" / split / label).mkdir(parents=True)
                for index in range(count):
                    pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(
                        tmp_path / "images" / split / label / f"{index}.png"
                    )
        options += [f"data={tmp_path / 'images'}", "rate_per_class=2", "batch_size=4"]
    for name in "ab":
        _train_here(tmp_path / name, *options)
    a, b = (io.load_checkpoint(tmp_path / n / "supernet" / "spos.pt") for n in "ab")
    assert a["history"] == b["history"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_bad_recipes_are_one_line_exit_2(cli, tmp_path):
    cases = [
        (["-o", "sampling=random"], "sampling"),
        (["-o", "bn_mode=mean"], "bn_mode"),
        (["-o", "teacher=x"], "unknown recipe key 'teacher'"),
        (["-o", "method=darts"], "darts"),
        (["-o", "flops_range=[5, 1]"], "flops_range"),
        (["-o", "lr=-1"], "lr"),
    ]
    for extra, needle in cases:
        result = cli("train", "spos-tiny", "--out", str(tmp_path / "x"), *extra)
        assert result.code == 2 and needle in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_rate_sample_and_archs_resume(cli, spos_run, tmp_path):
    from dnatool.rate.spos import run_rate_spos

    run, _ = spos_run
    rated = cli("rate", str(run), "--sample", "4", "--json")
    assert rated.code == 0, rated.stderr
    data = json.loads(rated.stdout)
    assert len(data["archs"]) == 4 and data["settings"]["bn_batches"] == 2
    top1 = [a["top1"] for a in data["archs"]]
    assert top1 == sorted(top1, reverse=True) and all(0 <= t <= 100 for t in top1)
    stored = json.loads((run / "scores" / "spos.json").read_text())
    assert stored["format"] == "dnatool.spos-ratings" and len(stored["archs"]) == 4
    logs = []
    again = run_rate_spos(run, sample=4, report=lambda e, **f: logs.append(f.get("message")))
    assert again["archs"] == data["archs"] and "4 architectures already rated" in logs[0]
    archs = tmp_path / "archs.json"
    space = load_space("tiny-w")
    choices = space.sample(np.random.default_rng(5))
    arch = space.to_arch(choices).to_dict()
    arch.pop("meta")  # matched by its stages
    archs.write_text(json.dumps([[[c, list(p)] for c, p in choices], arch]))
    entries = run_rate_spos(run, archs=archs)["archs"]
    assert len(entries) == 1, "the same architecture twice is rated once"
    assert entries[0]["choices"] == [[c, list(p)] for c, p in choices]
    ema = run_rate_spos(run, sample=2, bn_mode="ema")
    assert ema["settings"]["bn_mode"] == "ema"


def test_rate_refusals(cli, spos_run, tmp_path):
    run, _ = spos_run
    for extra, needle in [
        ([], "--sample N or --archs"),
        (["--norm", "var", "--sample", "2"], "norm"),
        (["--ssl-score", "loss", "--sample", "2"], "--ssl-score"),
    ]:
        result = cli("rate", str(run), *extra)
        assert result.code == 2 and needle in result.stderr and len(result.stderr.splitlines()) == 1
    from dnatool.rate.spos import run_rate_spos

    bad = tmp_path / "bad.json"
    for data, needle in [
        ([[[0, [0]], [0, [0, 0]]]], "3 blocks"),
        ([[0, [0]], [0, [0, 0]], [5, [0, 0]]], "cell 5 out of range"),
        ({"arch_def": [["ir_r1_k3_s2_e6_c24"]]}, "not an architecture of space"),
    ]:
        bad.write_text(json.dumps(data))
        with pytest.raises(BadInput, match=needle):
            run_rate_spos(run, archs=bad)


def test_bn_recalibration_modes():
    """exact: BN statistics are the equal-weight average of the batches; ema: momentum 0.1
    from the reset state; both leave the momentum as it was."""
    from dnatool.rate.spos import Evaluator

    space = load_space("tiny")
    torch.manual_seed(0)
    supernet = SposSupernet(space)
    batches = [
        (torch.randn(8, 3, 32, 32) * (i + 1), torch.zeros(8, dtype=torch.long)) for i in range(3)
    ]
    evaluator = Evaluator.__new__(Evaluator)
    evaluator.model, evaluator.device, evaluator.calibration = (
        supernet,
        torch.device("cpu"),
        batches,
    )
    evaluator.norms = [m for m in supernet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    choices = space.sample(np.random.default_rng(0))
    bn = supernet.bn1
    means = [images.mean(dim=(0, 2, 3)) for images, _ in batches]
    with torch.no_grad():
        for mode, expected in [
            ("exact", sum(supernet.conv_stem(x).mean(dim=(0, 2, 3)) for x, _ in batches) / 3),
            ("ema", None),
        ]:
            evaluator.bn_mode = mode
            evaluator._recalibrate(choices)
            assert bn.momentum == 0.1
            if expected is not None:
                assert torch.allclose(bn.running_mean, expected, atol=1e-5)
            else:
                stem = [supernet.conv_stem(x).mean(dim=(0, 2, 3)) for x, _ in batches]
                ema = torch.zeros_like(stem[0])
                for m in stem:
                    ema = 0.9 * ema + 0.1 * m
                assert torch.allclose(bn.running_mean, ema, atol=1e-5)
    assert len(means) == 3


def test_search_evolution_on_an_spos_run(cli, spos_run, tmp_path):
    from dnatool.arch.resolve import resolve_arch
    from dnatool.rate.spos import run_rate_spos
    from dnatool.search.evolution import EvolutionSettings
    from dnatool.search.spos import search_spos_run

    run, _ = spos_run
    out = tmp_path / "s" / "search.json"
    small = ["--population", "6", "--select", "3", "--mutations", "2", "--crossovers", "2"]
    args = ["search", str(run), "--params", "120k", *small, "--generations", "2", "--out", str(out)]
    result = cli(*args, "--json")  # SPOS runs default to --algorithm evolution
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["params"] <= 120_000 and summary["evaluations"] <= 18
    data = json.loads(out.read_text())
    assert data["method"] == "spos" and data["winner"]["top1"] == 100 - data["winner"]["score"]
    assert all(t["params"] <= 120_000 for t in data["top"])
    assert data["evolution"]["fitness"].startswith("top-1 error")
    assert (out.parent / "evolution.png").stat().st_size > 1000
    assert (out.parent / "pareto.png").stat().st_size > 1000
    assert resolve_arch(str(out)).meta["space"] == "tiny-w"
    rated = run_rate_spos(run, archs=out)  # search.json's top, rated again: the same top-1
    by_choices = {json.dumps(a["choices"]): a["top1"] for a in rated["archs"]}
    assert all(by_choices[json.dumps(t["choices"])] == t["top1"] for t in data["top"])
    settings = EvolutionSettings(population=6, select=3, mutations=2, crossovers=2)
    for kwargs, needle in [
        ({"algorithm": "exact"}, "use --algorithm evolution"),
        ({"budgets": {"params": 1000}}, "smallest achievable params"),
        ({"weights": [1, 1, 1]}, "weights"),
    ]:
        options = {"budgets": {"params": 120_000}, "evolution": settings, **kwargs}
        with pytest.raises(BadInput, match=needle):
            search_spos_run(run, options.pop("budgets"), out=tmp_path / "x.json", **options)


def test_killed_spos_search_resumes_to_the_same_result(spos_run, tmp_path, monkeypatch):
    """The SPOS fitness (a supernet evaluation) dies mid-search; the rerun resumes from the
    state file and ends where an uninterrupted search ends."""
    from dnatool.rate import spos as rate_spos
    from dnatool.search import evolution as E
    from dnatool.search.evolution import EvolutionSettings
    from dnatool.search.spos import search_spos_run

    monkeypatch.setattr(E, "SAVE_EVERY_S", 0.0)
    run, _ = spos_run
    settings = EvolutionSettings(population=5, select=2, mutations=2, crossovers=2, generations=2)
    budget = {"params": 150_000}
    whole, _, _ = search_spos_run(
        run, budget, out=tmp_path / "a" / "search.json", evolution=settings
    )
    calls = {"n": 0}
    real = rate_spos.Evaluator.__call__

    def dying(self, choices):
        calls["n"] += 1
        if calls["n"] > 7:
            raise KeyboardInterrupt
        return real(self, choices)

    monkeypatch.setattr(rate_spos.Evaluator, "__call__", dying)
    with pytest.raises(KeyboardInterrupt):
        search_spos_run(run, budget, out=tmp_path / "b" / "search.json", evolution=settings)
    monkeypatch.setattr(rate_spos.Evaluator, "__call__", real)
    resumed, _, _ = search_spos_run(
        run, budget, out=tmp_path / "b" / "search.json", evolution=settings
    )
    assert resumed.top == whole.top and resumed.winner == whole.winner
    states = [json.loads((tmp_path / d / "evolution.json").read_text()) for d in "ab"]
    for key in ("population", "visited", "history", "rng"):
        assert states[0][key] == states[1][key]


@pytest.mark.slow
def test_torchrun_two_processes_agree(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "dnatool", "train", "spos-tiny", "--out", str(run), *FAST, "-o", "epochs=1",
    ]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ranks = [json.loads((run / "ranks" / f"rank_{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["checksum"] == ranks[1]["checksum"], "both ranks hold the same weights"
    assert not set(ranks[0]["first_samples"]) & set(ranks[1]["first_samples"])
    assert io.load_checkpoint(run / "supernet" / "spos.pt", "spos_supernet")["epoch"] == 1


@pytest.mark.slow
def test_spos_tiny_trains_rates_and_searches_end_to_end(cli, tmp_path):
    """The README's commands with the shipped recipe: its training reaches what the recipe states
    and the rated paths are far above chance; evolution searches under a MACs budget."""
    run = tmp_path / "spos-tiny"
    trained = cli("train", "spos-tiny", "--out", str(run), "--json", timeout=1800)
    assert trained.code == 0, trained.stderr
    # 46-68% over seeds and CPU kernel sets (recipes/spos-tiny.yaml); chance is 10%
    assert json.loads(trained.stdout)["final_train_top1"] > 30
    rated = cli("rate", str(run), "--sample", "50", "--json", timeout=1800)
    assert rated.code == 0, rated.stderr
    top1 = [a["top1"] for a in json.loads(rated.stdout)["archs"]]
    assert max(top1) > 50 and len(top1) == 50
    # two generations instead of the default 20 (about 2 minutes here): the same code path
    searched = cli("search", str(run), "--macs", "1.2M", "--generations", "2", "--json")
    assert searched.code == 0, searched.stderr
    summary = json.loads(searched.stdout)
    assert summary["macs"] <= 1_200_000 and 100 < summary["evaluations"] <= 150


def test_badinput_for_a_dna_run_with_spos_options(cli, tmp_path):
    from dnatool.search.synthetic import write_synthetic_run

    run = write_synthetic_run(tmp_path / "run", load_space("tiny"), seed=1)
    result = cli("rate", str(run), "--sample", "3")
    assert result.code == 2 and "SPOS" in result.stderr
    with pytest.raises(BadInput):
        from dnatool.rate.spos import load_spos

        load_spos(run)

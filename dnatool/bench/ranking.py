"""`dnatool bench ranking`: do a method's ratings predict the accuracy of trained architectures?

The papers' measure (DNA: Kendall tau 0.62-0.64 on 23 ImageNet architectures; SPOS -0.18): train
N architectures of a space from scratch (the truth), rate the same architectures with each
method's supernet trained on the same data, and correlate. Here the data is the built-in
cluttered digits (`dnatool.data.cluttered`, non-saturated), read by every method as an
ImageFolder; each architecture is trained with S seeds so the truth's own reliability (the noise
ceiling) is known. `run_ranking` is the library call, the CLI only wires it.

Layout of OUT: `data/` (generated), `truth/` (plan, per-job runs and results, `truth.json`),
`methods/NAME/` (the method's runs, `ratings.json`, `scatter.png`), `ranking.json` and
`ranking.png` (the summary).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dnatool.bench import truth as truth_mod
from dnatool.bench.methods import (
    METHODS,
    MethodContext,
    available_methods,
    base_method,
    method_runs,
    select_methods,
    stage_times,
)
from dnatool.bench.stats import (
    STATISTICS,
    finite_or_none,
    method_correlations,
    paired_difference,
    perfect_rating,
    scatter_tail,
    seed_mean_correlation,
    size_matched_agreement,
)
from dnatool.errors import BadInput
from dnatool.utils import io
from dnatool.utils.events import Report, quiet
from dnatool.utils.locks import locked

RANKING_FORMAT = "dnatool.ranking"
BUILTIN_DATA = "cluttered"
SAMPLING = ("uniform", "macs", "log-macs", "spread", "truth", "accuracy")
TARGETS = {"noise_ceiling": 0.8, "spread_ratio": 3.0, "dna_kendall_tau": 0.6, "dna_over_spos": 0.3}
# what a summary keeps of each run: its figures, and its scores of the truth's networks (in the
# truth's order), so a kept summary can be judged again against another truth of the same
# networks without its supernets (`rescore`)
STORED_RESULT_KEYS = (
    "kendall_tau",
    "spearman",
    "pearson",
    "n",
    "cpu_seconds",
    "run",
    "space",
    "scores",
)
PERFECT_MODELS = ("pooled", "per_network")  # stats.perfect_rating's two noise models
SIZE_BASELINES = ("macs", "params")  # truth.json records both for every architecture


@dataclass(frozen=True)
class RankingRecipe:
    """Settings of one benchmark (`recipes/bench-ranking.yaml`, `-o key=value`)."""

    space: str = "ranking"
    data: str = BUILTIN_DATA  # the built-in cluttered digits, or an ImageFolder root
    data_options: dict[str, Any] = field(default_factory=dict)  # ClutterSpec knobs
    archs: int = 16
    seeds: int = 3
    sample: str = "uniform"  # uniform; macs / log-macs / spread: even over a pool's MACs ranking,
    # log-MACs values or rated scores; truth: from_truth's archs in order; accuracy: spread over
    # from_truth's top-1 (a pilot truth)
    spread_run: str | None = None
    from_truth: str | None = None  # sample=truth / accuracy: a truth.json
    pool: int = 2000
    truth_recipe: str = "retrain-ranking"
    truth_overrides: tuple[str, ...] = ()
    reuse: tuple[str, ...] = ()  # other truths whose identical jobs this truth takes, not retrains
    methods: dict[str, Any] = field(default_factory=dict)  # per-method options
    bootstrap: int = 2000
    confidence: float = 0.95
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.archs < 3 or self.seeds < 1:
            raise BadInput("bench ranking: archs must be >= 3 and seeds >= 1")
        if self.sample not in SAMPLING:
            raise BadInput(f"bench ranking: sample must be one of {', '.join(SAMPLING)}")
        if self.sample == "spread" and not self.spread_run:
            raise BadInput("bench ranking: sample=spread needs spread_run (a rated run)")
        if self.sample in ("truth", "accuracy") and not self.from_truth:
            raise BadInput(f"bench ranking: sample={self.sample} needs from_truth (a truth.json)")
        if self.bootstrap < 100 or not 0 < self.confidence < 1 or self.threads < 1:
            raise BadInput("bench ranking: bootstrap >= 100, confidence in (0, 1), threads >= 1")
        if not isinstance(self.methods, dict):
            raise BadInput("bench ranking: methods must map method names to their options")
        unknown = sorted(name for name in self.methods if base_method(str(name)) not in METHODS)
        if unknown:
            raise BadInput(
                f"bench ranking: methods names unknown method {unknown[0]!r} "
                f"(known: {', '.join(METHODS)}; a variant is METHOD@NAME)"
            )


def load_ranking_recipe(ref: str | None, overrides: tuple[str, ...] = ()) -> RankingRecipe:
    """The recipe with its `-o key=value` overrides. `methods=...` merges into the recipe's
    methods, option by option: `-o 'methods={dna: {seeds: 3}}'` keeps dna's other options and
    every other method's, and a new variant beside them leaves the shipped methods as they were
    (a plain replacement would silently drop their overrides)."""
    import yaml

    from dnatool.config import from_dict, recipe_data

    def is_methods(item: str) -> bool:
        return item.partition("=")[0].strip() == "methods"

    data = recipe_data(ref, tuple(item for item in overrides if not is_methods(item)))
    for item in filter(is_methods, overrides):
        try:
            given = yaml.safe_load(item.partition("=")[2])
        except yaml.YAMLError:
            raise BadInput(f"override {item!r}: methods must be a YAML mapping") from None
        data["methods"] = merge_method_options(data.get("methods") or {}, given)
    return from_dict(RankingRecipe, data)


def merge_method_options(recipe: dict[str, Any], given: Any) -> dict[str, Any]:
    """`given` (method -> options) over `recipe`'s: each named method's options replace the
    recipe's key by key (a given `overrides` list replaces the recipe's list whole)."""
    if not isinstance(given, dict) or not all(isinstance(v, dict | None) for v in given.values()):
        raise BadInput("bench ranking: methods must map method names to their options")
    merged = {name: dict(options or {}) for name, options in recipe.items()}
    for name, options in given.items():
        merged[name] = {**merged.get(name, {}), **(options or {})}
    return merged


def prepare_data(recipe: RankingRecipe, out: Path, report: Report = quiet) -> tuple[str, dict]:
    """The ImageFolder root every stage reads, and what identifies it (recorded in the truth)."""
    from dnatool.data.cluttered import generate, read_dataset_spec, spec_from_options

    if recipe.data == BUILTIN_DATA:
        spec = spec_from_options(recipe.data_options)
        root = out / "data"
        if int(os.environ.get("RANK", "0")) > 0:  # torchrun: rank 0 generates, the others wait
            while (read_dataset_spec(root) or {}).get("digest") != spec.digest:
                time.sleep(2.0)
        meta = generate(root, spec, report)
        return str(root.resolve()), {
            "builtin": BUILTIN_DATA,
            "digest": meta["digest"],
            "spec": meta["spec"],
        }
    root = Path(recipe.data)
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise BadInput(f"data {recipe.data!r} is neither {BUILTIN_DATA!r} nor an ImageFolder root")
    described = read_dataset_spec(root) or {}
    return str(root.resolve()), {"root": str(root.resolve()), "digest": described.get("digest")}


def data_for_truth(truth: dict[str, Any], out: Path, report: Report = quiet) -> str:
    """The truth's data: OUT/data when it holds the same dataset (so the methods trained in OUT
    read the path they recorded, whichever truth is scored), else the truth's own folder, else
    (built-in data) regenerated bit for bit from the recorded spec into OUT/data."""
    from dnatool.data.cluttered import generate, read_dataset_spec, spec_from_options

    data = truth.get("data")
    if not isinstance(data, dict):
        raise BadInput("the truth records no data: the methods have nothing to train on")
    root = Path(data.get("root") or out / "data")
    if data.get("builtin"):
        candidates = [out / "data", Path(truth.get("_path", ".")).parent.parent / "data"]
        for candidate in candidates:
            described = read_dataset_spec(candidate) if candidate.is_dir() else None
            if described and described.get("digest") == data["digest"]:
                return str(candidate.resolve())
        meta = generate(out / "data", spec_from_options(data["spec"]), report)
        if meta["digest"] != data["digest"]:
            raise BadInput("the regenerated data differs from the truth's (generator changed)")
        return str((out / "data").resolve())
    if not root.is_dir():
        raise BadInput(f"the truth's data folder {root} is gone")
    return str(root)


def _truth_recipe(recipe: RankingRecipe, data: str) -> dict[str, Any]:
    from dnatool.config import to_dict
    from dnatool.retrain.recipe import load_retrain_recipe

    try:
        loaded = load_retrain_recipe(
            recipe.truth_recipe,
            (*recipe.truth_overrides, f"data={data}", f"threads={recipe.threads}"),
        )
    except BadInput as exc:
        raise BadInput(f"truth recipe: {exc}") from None
    if loaded.init_seed is not None:
        raise BadInput(
            "the truth's seeds must each draw their own initialisation (init_seed "
            f"{loaded.init_seed} would leave initialisation noise out of the noise ceiling); "
            "train such runs with `dnatool retrain -o init_seed=K`"
        )
    return to_dict(loaded)


def sample_truth_archs(recipe: RankingRecipe, space: Any, keep: list | None = None) -> list:
    """The truth's architectures; `keep`: those of a truth that grows (they stay first)."""
    keep = keep or []
    if recipe.sample == "uniform":
        return truth_mod.sample_uniform(space, recipe.archs, recipe.seed, keep)
    if recipe.sample == "macs":  # method-neutral: small and large networks both represented
        return truth_mod.sample_spread(
            space, truth_mod.macs_counter(space), recipe.archs, recipe.pool, recipe.seed, keep
        )
    if recipe.sample == "log-macs":  # also method-neutral; denser where accuracy still climbs
        macs = truth_mod.macs_counter(space)
        return truth_mod.sample_spread(
            space,
            lambda c: math.log(macs(c)),
            recipe.archs,
            recipe.pool,
            recipe.seed,
            keep,
            by="value",
        )
    if recipe.sample == "truth":  # another recipe on the same networks: methods only rescore
        return truth_mod.sample_from_truth(space, recipe.from_truth, recipe.archs, keep)
    if recipe.sample == "accuracy":  # spread over a pilot's top-1: fewer pairs within the noise
        return truth_mod.sample_by_accuracy(space, recipe.from_truth, recipe.archs, keep)
    from dnatool.rate.ranking import arch_score
    from dnatool.rate.score_lists import load_score_lists, run_space

    rated = run_space(recipe.spread_run)
    if rated.digest != space.digest:
        raise BadInput(
            f"spread_run {recipe.spread_run} was trained on another space ({rated.name})"
        )
    lists = load_score_lists(recipe.spread_run, space)
    return truth_mod.sample_spread(
        space, lambda c: arch_score(lists, c), recipe.archs, recipe.pool, recipe.seed, keep
    )


@locked("out", "truth")  # one bench trains OUT's truth: a second is refused before it starts
def build_truth(
    recipe: RankingRecipe, out: str | Path, workers: int = 1, report: Report = quiet
) -> dict[str, Any] | None:
    """Data, plan and every (architecture, seed) job; `truth.json` (None on torchrun ranks > 0)."""
    from dnatool.arch.space import load_space

    out = Path(out)
    space = load_space(recipe.space)
    truth_recipe = _truth_recipe(recipe, recipe.data)  # refused, if bad, before data are made
    data, data_id = prepare_data(recipe, out, report)
    planned = truth_mod.planned_archs(out / "truth")
    if len(planned) > recipe.archs:
        raise BadInput(
            f"{out / 'truth'} already plans {len(planned)} architectures; archs={recipe.archs} "
            "would drop some (a truth only grows)"
        )
    keep = planned  # a resumed (or grown) truth keeps its own, first and in order
    plan = truth_mod.make_plan(
        space,
        recipe.space,
        sample_truth_archs(recipe, space, keep),
        recipe.seeds,
        {**truth_recipe, "data": data},
        data_id,
        sampling_record(recipe),
    )
    return truth_mod.run_truth(out / "truth", plan, workers, recipe.threads, report, recipe.reuse)


def sampling_record(recipe: RankingRecipe) -> dict[str, Any]:
    """How a truth's architectures were chosen, for its plan and `truth.json`: a truth spread
    over a pilot names the pilot (and its sha256), so its selection can be audited."""
    if recipe.sample in ("truth", "accuracy"):
        path = Path(recipe.from_truth).resolve()
        return {"sample": recipe.sample, "from_truth": str(path), "sha256": io.file_sha256(path)}
    if recipe.sample == "spread":
        return {"sample": "spread", "spread_run": str(Path(recipe.spread_run).resolve())}
    if recipe.sample == "uniform":
        return {"sample": "uniform", "seed": recipe.seed}
    return {"sample": recipe.sample, "pool": recipe.pool, "seed": recipe.seed}


def run_ranking(
    recipe: RankingRecipe,
    out: str | Path,
    methods: list[str] | None = None,
    truth_path: str | Path | None = None,
    workers: int = 1,
    report: Report = quiet,
) -> dict[str, Any] | None:
    """The whole benchmark: truth (or `truth_path`), then every selected method; returns the
    summary written to OUT/ranking.json (None on torchrun ranks > 0, which only train truth jobs)."""
    from dnatool.arch.space import load_space

    out = Path(out)
    for folder in (out, *out.parents):  # the first that exists must be a folder
        if folder.exists():
            if not folder.is_dir():
                raise BadInput(f"--out {out}: {folder} exists and is not a directory")
            break
    if methods is None:  # the recipe's methods that are available here; the others are named
        names = [m for m in recipe.methods or ["dna"] if base_method(m) in available_methods()]
        for skipped in sorted(set(recipe.methods) - set(names)):
            report(
                "log", message=f"skipping {METHODS[base_method(skipped)].missing()}", always=True
            )
    else:
        names = list(methods)
    chosen = select_methods(names)  # refuse unavailable methods before hours of truth training
    for method in chosen:
        if method.name != base_method(method.name) and method.name not in recipe.methods:
            raise BadInput(
                f"method variant {method.name!r} has no options in the recipe's methods "
                f"(e.g. -o 'methods={{{method.name}: {{overrides: [...]}}}}')"
            )
    groups, planned = {}, []
    for method in chosen:
        runs = method_runs(method, recipe.methods.get(method.name) or {})
        groups[method.name] = [run.name for run, _ in runs]
        planned += runs
    names = [run.name for run, _ in planned]
    clash = sorted({name for name in names if names.count(name) > 1})
    if clash:
        raise BadInput(f"method run {clash[0]!r} is named twice (a variant and a method's seed?)")
    for method, options in planned:  # a typo in a method's options: refused before the truth
        ref = _space_option(options) or recipe.space
        try:
            method.check({k: v for k, v in options.items() if k != "space"}, ref)
        except BadInput as exc:
            raise BadInput(f"method {method.name}: {exc}") from None
    if truth_path is None:
        load_space(recipe.space)  # the space and the truth's recipe, before OUT is touched
        _truth_recipe(recipe, recipe.data)
        truth = build_truth(recipe, out, workers, report)
        if truth is None:
            return None
        truth_path = out / "truth" / truth_mod.TRUTH_FILE
    else:
        truth_path = truth_mod.truth_file(truth_path)
        truth = truth_mod.load_truth(truth_path)
    truth = {**truth, "_path": str(truth_path)}
    results = {}
    if planned:
        space = load_space(truth["space"]["ref"])
        if space.digest != truth["space"]["digest"]:
            raise BadInput(f"space {truth['space']['ref']!r} changed since the truth was trained")
        # every method's space and its networks first: a bad `space:` is refused before hours
        spaces = {m.name: method_space(o, truth, space) for m, o in planned}
        data = data_for_truth(truth, out, report)
        import torch

        torch.set_num_threads(recipe.threads)
        with truth_mod.single_process():  # under torchrun only rank 0 gets here: no DDP
            for method, options in planned:
                results[method.name] = rate_method(
                    method, options, recipe, truth, spaces[method.name], data, out, report
                )
    summary = finite_or_none(
        summarize(truth, recorded_path(truth_path, out), results, recipe, groups)
    )
    io.write_json(out / "ranking.json", summary)
    if results:
        from dnatool.bench.plots import summary_plot

        summary_plot(summary, out / "ranking.png")
    return summary


def rescore(
    summary_path: str | Path, truth_path: str | Path, recipe: RankingRecipe, out: str | Path
) -> dict[str, Any]:
    """A kept summary's methods judged against another truth of the same networks (retrained
    with another recipe, or with more seeds), from the scores the summary keeps: no supernet is
    trained or loaded. Written to OUT (`ranking.json`, `ranking.png`) as a benchmark run's."""
    from dnatool.bench.plots import summary_plot

    kept = io.read_json(summary_path, "ranking summary")
    if not isinstance(kept, dict) or kept.get("format") != RANKING_FORMAT:
        raise BadInput(f"{summary_path} is not a {RANKING_FORMAT} summary")
    methods = kept.get("methods") or {}
    unscored = sorted(name for name, m in methods.items() if not m.get("scores"))
    if not methods or unscored:
        raise BadInput(
            f"{summary_path} keeps no scores{f' for {unscored[0]}' if unscored else ''} "
            "(written before summaries kept them): rescoring it needs its supernets, "
            "`--truth TRUTH --methods ... --out` on the bench folder that trained them"
        )
    truth_path = truth_mod.truth_file(truth_path)
    truth = truth_mod.load_truth(truth_path)
    kept_truth = kept.get("truth") or {}
    if kept_truth.get("space") != truth["space"]["name"] or kept_truth.get("choices") != [
        a["choices"] for a in truth["archs"]
    ]:
        raise BadInput(
            f"{summary_path} scored other networks than {truth_path} (a rescore needs the same "
            "networks in the same order)"
        )
    accuracy = [a["mean_top1"] for a in truth["archs"]]
    methods = {  # each run's figures against the new truth, its scores as kept
        name: {
            **m,
            **method_correlations(
                m["scores"], accuracy, recipe.bootstrap, recipe.confidence, recipe.seed
            ),
        }
        for name, m in methods.items()
    }
    grouped = {g: m["runs"] for g, m in (kept.get("supernet_seeds") or {}).items()}
    seeded = {run for runs in grouped.values() for run in runs}
    groups = {**{name: [name] for name in methods if name not in seeded}, **grouped}
    out = Path(out)
    summary = finite_or_none(
        summarize(truth, recorded_path(truth_path, out), methods, recipe, groups)
    )
    summary["rescored_from"] = recorded_path(Path(summary_path), out)
    io.write_json(out / "ranking.json", summary)
    summary_plot(summary, out / "ranking.png")
    return summary


def method_space(
    options: dict[str, Any], truth: dict[str, Any], truth_space: Any
) -> tuple[Any, str, list[list[Any]]]:
    """The space a method's supernet is trained on (its `space:` option, default the truth's)
    and the truth's networks as choices of it: a larger space that builds every truth network
    (same cells, more ops) asks whether weight sharing over more paths costs a method its
    ranking, on the same truth."""
    from dnatool.arch.space import load_space

    choices = truth_mod.truth_choices(truth)
    ref = _space_option(options)
    if ref is None:
        return truth_space, truth["space"]["ref"], choices
    space = load_space(ref)
    return space, ref, [space.express(truth_space, c) for c in choices]


def _space_option(options: dict[str, Any]) -> str | None:
    """A method's `space:` option (None: the truth's space), refused in one line if not a name."""
    ref = options.get("space")
    if ref is not None and not isinstance(ref, str):
        raise BadInput(f"a method's space must be a space name or file, got {ref!r}")
    return ref


def rate_method(
    method: Any,
    options: dict[str, Any],
    recipe: RankingRecipe,
    truth: dict[str, Any],
    space: tuple[Any, str, list[list[Any]]],
    data: str,
    out: Path,
    report: Report,
) -> dict[str, Any]:
    """One method: train (on `space`: the space, its name and the truth's networks in it, from
    `method_space`), rate, score the truth's architectures, correlate, scatter plot."""
    from dnatool.bench.plots import scatter_plot

    method_dir = out / "methods" / method.name
    options = {k: v for k, v in options.items() if k != "space"}
    ctx = MethodContext(method_dir, *space[:2], data, space[2], options, report)
    report("log", message=f"method {method.name}: {method.description}", always=True)
    rated = method.rate(ctx)
    scores = [float(s) for s in rated["scores"]]
    accuracy = [a["mean_top1"] for a in truth["archs"]]
    result: dict[str, Any] = {
        "method": method.name,
        **method_correlations(scores, accuracy, recipe.bootstrap, recipe.confidence, recipe.seed),
        "scores": scores,
        "space": space[0].name,
        "stages": stage_times(method_dir),
        **{k: v for k, v in rated.items() if k != "scores"},
    }
    result["cpu_seconds"] = float(sum(s["cpu_seconds"] for s in result["stages"].values()))
    if "run" in result:
        result["run"] = recorded_path(result["run"], out)
    result = finite_or_none(result)
    io.write_json(method_dir / "ratings.json", result)
    scatter_plot(truth, result, method_dir / "scatter.png")
    return result


def recorded_path(path: str | Path, out: Path) -> str:
    """A path as the summaries record it: relative to OUT when inside it, so a summary kept or
    copied elsewhere still names its parts; as given otherwise (a `--truth` from elsewhere)."""
    try:
        return Path(path).resolve().relative_to(Path(out).resolve()).as_posix()
    except ValueError:
        return str(path)


def size_baselines(truth: dict[str, Any], recipe: RankingRecipe) -> dict[str, Any]:
    """What a rating must beat to be worth its training: the architecture's size alone (more
    MACs / parameters predicted better), correlated with the truth like a method's scores."""
    archs = truth["archs"]
    accuracy = [a["mean_top1"] for a in archs]
    return {
        key: {
            "method": f"size: {key}",
            **method_correlations(
                [-float(a[key]) for a in archs],
                accuracy,
                recipe.bootstrap,
                recipe.confidence,
                recipe.seed,
            ),
        }
        for key in SIZE_BASELINES
        if all(a.get(key) is not None for a in archs)
    }


def _meets(value: float | None, target: str) -> bool | None:
    """Whether a figure reaches its target; None when the figure is undefined (NaN)."""
    if value is None or not np.isfinite(value):
        return None
    return bool(value >= TARGETS[target])


def summarize(
    truth: dict[str, Any],
    truth_path: str,
    results: dict[str, Any],
    recipe: RankingRecipe,
    groups: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """The summary: truth reliability, per-run tau / rho / r with intervals, each method's mean
    over its supernet seeds (`groups`: method -> its runs; one run each when None), each method's
    paired difference to SPOS and to MACs, targets judged on the seed means."""
    ceiling = truth.get("noise_ceiling")
    accuracy = np.array([a["mean_top1"] for a in truth["archs"]])
    if ceiling and "most_scattered_archs" not in (ceiling.get("tail") or {}):  # an older truth
        top1 = np.array([a["top1"] for a in truth["archs"]], dtype=np.float64)
        indices = [a.get("index", row) for row, a in enumerate(truth["archs"])]
        tail = finite_or_none(scatter_tail(top1))
        ceiling = {**ceiling, "tail": truth_mod.named_tail(tail, indices)}
    methods = {
        name: {key: r[key] for key in STORED_RESULT_KEYS if key in r} for name, r in results.items()
    }
    groups = {
        group: [run for run in runs if run in results]
        for group, runs in (groups or {name: [name] for name in results}).items()
    }
    groups = {group: runs for group, runs in groups.items() if runs}
    scores = {group: [results[run]["scores"] for run in runs] for group, runs in groups.items()}
    seeded = {
        group: {
            "runs": groups[group],
            **{
                name: seed_mean_correlation(sets, accuracy, name, **_kw(recipe))
                for name in STATISTICS
            },
        }
        for group, sets in scores.items()
        if len(sets) > 1
    }
    references = {"spos": scores.get("spos")}
    sizes = [a.get("macs") for a in truth["archs"]]
    if all(m is not None for m in sizes):
        references["macs"] = [[-float(m) for m in sizes]]
    comparisons = [
        {"first": group, "second": ref, **paired_difference(sets, other, accuracy, **_kw(recipe))}
        for group, sets in scores.items()
        for ref, other in {**references, **_variant_references(group, scores)}.items()
        if other is not None and ref != group
    ]
    size_matched = {}
    if "macs" in references and all(m > 0 for m in sizes):
        size_matched = {
            group: size_matched_agreement(sets, accuracy, sizes, **_kw(recipe))
            for group, sets in {**scores, "macs": references["macs"]}.items()
        }
    baselines = size_baselines(truth, recipe)
    group_tau = {  # a method's tau: the mean over its supernet seeds, or its one run's
        group: (seeded[group] if group in seeded else methods[runs[0]])["kendall_tau"]
        for group, runs in groups.items()
    }
    perfect = _perfect_rating(truth, recipe)
    if perfect:
        taus = {**group_tau, **{name: b["kendall_tau"] for name, b in baselines.items()}}
        perfect["room"] = {
            name: {model: perfect[model]["value"] - tau["value"] for model in PERFECT_MODELS}
            for name, tau in taus.items()
            if tau["value"] is not None and np.isfinite(tau["value"])
        }
    checks: dict[str, Any] = {}
    if ceiling:
        checks["noise_ceiling"] = _meets(ceiling["kendall_tau"]["value"], "noise_ceiling")
        checks["spread_ratio"] = _meets(ceiling["spread_ratio"], "spread_ratio")
    if "dna" in scores:
        checks["dna_kendall_tau"] = _meets(group_tau["dna"]["value"], "dna_kendall_tau")
        gap = [c for c in comparisons if (c["first"], c["second"]) == ("dna", "spos")]
        if gap:
            checks["dna_over_spos"] = _meets(gap[0]["value"], "dna_over_spos")
    equal_cpu = _spos_within_cpu(groups, results) if "dna" in scores else None
    gap = [c for c in comparisons if (c["first"], c["second"]) == ("dna", equal_cpu)]
    if gap:
        checks["dna_over_spos_at_equal_cpu"] = _meets(gap[0]["value"], "dna_over_spos")
    return {
        "format": RANKING_FORMAT,
        "version": 1,
        "truth": {
            "path": truth_path,
            "space": truth["space"]["name"],
            "archs": len(truth["archs"]),
            "seeds": truth["seeds"],
            "top1_range": [float(accuracy.min()), float(accuracy.max())],
            "choices": [a.get("choices") for a in truth["archs"]],  # the networks scored, in order
            "noise_ceiling": ceiling,
            "perfect_rating": perfect,  # the most a rating can score against these seed means
            "cpu_seconds": truth.get("cpu_seconds"),
            "recipe": truth.get("recipe"),  # how the truth trained (a kept truth's own)
        },
        "methods": methods,
        "supernet_seeds": seeded,
        "comparisons": comparisons,
        "size_matched": size_matched,  # ordering networks of about the same MACs
        "baselines": baselines,
        "targets": TARGETS,
        "met": checks,
        "spos_at_equal_cpu": equal_cpu,  # the SPOS of `dna_over_spos_at_equal_cpu`
        "recipe": {k: v for k, v in dataclasses.asdict(recipe).items()},  # the benchmark's
    }


def _spos_within_cpu(groups: dict[str, list[str]], results: dict[str, Any]) -> str | None:
    """The SPOS group given the most CPU per supernet that is still at most DNA's (means over
    their supernet seeds; DNA's teacher counted once, in its first run): the papers compare the
    methods at equal search cost. None when no SPOS is that cheap or a CPU time is unrecorded."""

    def cpu(group: str) -> float | None:
        values = [results[run].get("cpu_seconds") for run in groups[group]]
        return float(np.mean(values)) if all(v is not None for v in values) else None

    dna = cpu("dna")
    if dna is None:
        return None
    within = [(c, g) for g in groups if base_method(g) == "spos" and (c := cpu(g)) is not None]
    within = [(c, g) for c, g in within if c <= dna]
    return max(within)[1] if within else None


def _perfect_rating(truth: dict[str, Any], recipe: RankingRecipe) -> dict[str, Any] | None:
    """`stats.perfect_rating` of a truth whose every architecture has its S runs recorded."""
    runs = [a.get("top1") for a in truth["archs"]]
    if not all(isinstance(r, list) for r in runs) or len({len(r) for r in runs}) != 1:
        return None
    return perfect_rating(np.array(runs, dtype=np.float64), **_kw(recipe))


def _kw(recipe: RankingRecipe) -> dict[str, Any]:
    return {"resamples": recipe.bootstrap, "confidence": recipe.confidence, "seed": recipe.seed}


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def truth_label(truth: dict[str, Any]) -> str:
    """What a summary's truth is, as the printed summary and the plot name it."""
    recipe = truth.get("recipe") or {}
    epochs, stop = recipe.get("epochs"), recipe.get("stop_after")
    label = f"{truth['archs']} archs x {truth['seeds']} seeds of {truth['space']}"
    if stop:  # a pilot: the first epochs of a longer schedule
        return label + f", {stop} of {epochs} epochs"
    return label + (f", {epochs} epochs" if epochs else "")


def _variant_references(group: str, scores: dict[str, Any]) -> dict[str, Any]:
    """A variant `M@V` is also compared with its method `M` (what the variant changed) and with
    `spos@V` (the same change made to SPOS: e.g. both supernets on a larger space). A method
    other than SPOS is also compared with every SPOS variant (`spos@e24`: SPOS at another budget,
    e.g. at the method's own CPU, as the papers compare at equal search cost)."""
    base, at, variant = group.partition("@")
    if not at:
        if base == "spos":
            return {}
        return {name: sets for name, sets in scores.items() if base_method(name) == "spos" != name}
    names = [base, f"spos@{variant}"]
    return {name: scores[name] for name in names if name in scores and name != group}


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as the CLI prints it: the truth's reliability, then one line per method."""
    truth = summary["truth"]
    low, high = truth["top1_range"]
    lines = [f"truth: {truth_label(truth)}, top-1 {low:.2f}-{high:.2f}%"]
    ceiling = truth.get("noise_ceiling")
    if ceiling:
        tau = ceiling["kendall_tau"]
        lines.append(
            f"noise ceiling: tau between seeds {_fmt(tau['value'])} [{_fmt(tau['low'])}, "
            f"{_fmt(tau['high'])}]; spread {_fmt(ceiling['spread'], 2)}% = "
            f"{_fmt(ceiling['spread_ratio'], 1)}x the mean seed difference "
            f"{_fmt(ceiling['mean_seed_difference'], 2)}%"
        )
        if ceiling.get("seed_mean_reliability") is not None:
            held = ceiling.get("held_out_seed_tau")
            lines.append(
                f"the {truth['seeds']}-seed mean methods are scored against: reliability "
                f"{_fmt(ceiling['seed_mean_reliability'])} (Spearman-Brown from the seed-pair "
                f"Pearson r {_fmt(ceiling['pearson'])})"
                + (
                    f"; one seed against the others' mean: tau {_fmt(held)}"
                    if held is not None
                    else ""
                )
            )
        tail = tail_line(ceiling.get("tail"), truth["archs"])
        if tail:
            lines.append(tail)
    lines.extend(perfect_lines(truth.get("perfect_rating"), ceiling))
    for name, m in summary.get("methods", {}).items():
        where = m.get("space")
        where = f", supernet on {where}" if where and where != truth["space"] else ""
        lines.append(
            f"{name}: {_cells(m)} (n={m['n']}, {_fmt(m.get('cpu_seconds'), 0)} s CPU{where})"
        )
    for name, m in summary.get("supernet_seeds", {}).items():
        tau = m["kendall_tau"]
        lines.append(
            f"{name}, mean of {len(m['runs'])} supernet seeds: kendall_tau {_fmt(tau['value'])} "
            f"[{_fmt(tau['low'])}, {_fmt(tau['high'])}] (per seed "
            f"{' '.join(_fmt(v) for v in tau['values'])}; sd {_fmt(tau['sd'])})"
        )
    for name, m in summary.get("baselines", {}).items():
        lines.append(f"baseline, size only ({name}): {_cells(m)}")
    matched = summary.get("size_matched") or {}
    first = next(iter(matched.values()), {})
    if first.get("pairs"):  # a small truth may have no networks of about the same size
        lines.append(
            f"networks within {first['ratio']:g}x of each other's MACs ({first['pairs']} pairs), "
            "share ordered as trained: "
            + ", ".join(
                f"{name} {_fmt(m['value'])} [{_fmt(m['low'])}, {_fmt(m['high'])}]"
                for name, m in matched.items()
            )
        )
    for c in summary.get("comparisons", []):
        lines.append(
            f"{c['first']} - {c['second']}: kendall_tau {_signed(c['value'])} "
            f"[{_signed(c['low'])}, {_signed(c['high'])}] (paired bootstrap; {c['first']} ahead "
            f"in {_fmt(None if c['share_ahead'] is None else 100 * c['share_ahead'], 0)}% of "
            "resamples)"
        )
    met = summary.get("met") or {}
    if met:
        said = {True: "met", False: "not met", None: "n/a"}
        lines.append(
            "targets: "
            + ", ".join(
                name
                + (f" ({summary['spos_at_equal_cpu']})" if name.endswith("equal_cpu") else "")
                + f" {said[value]}"
                for name, value in met.items()
            )
        )
    return lines


def perfect_lines(perfect: dict[str, Any] | None, ceiling: dict[str, Any] | None) -> list[str]:
    """What a perfect rating would score under both noise models, and each rating's room to it."""
    if not perfect:
        return []
    pooled, own = perfect["pooled"], perfect["per_network"]
    measured = (ceiling or {}).get("kendall_tau", {}).get("value")
    lines = [
        f"a perfect rating (the true accuracies) against the {perfect['seeds']}-seed means: tau "
        f"{_fmt(pooled['value'])} [{_fmt(pooled['low'])}, {_fmt(pooled['high'])}] with one run "
        f"noise for all (its seed pairs {_fmt(pooled['seed_pair_tau'])}), {_fmt(own['value'])} "
        f"[{_fmt(own['low'])}, {_fmt(own['high'])}] with each network's own (seed pairs "
        f"{_fmt(own['seed_pair_tau'])}); measured seed pairs {_fmt(measured)}"
    ]
    room = perfect.get("room") or {}
    if room:
        lines.append(
            "room to a perfect rating (the most any lead over it can be): "
            + ", ".join(
                f"{name} {_signed(r['pooled'])} to {_signed(r['per_network'])}"
                for name, r in room.items()
            )
        )
    return lines


def tail_line(tail: dict[str, Any] | None, archs: int) -> str | None:
    """The few networks that carry the seed noise, when Gaussian noise would rarely put that
    much on so few (the k with the smallest chance, if under 5%); None when it is spread."""
    judged = [t for t in (tail or {}).get("by_k", []) if t.get("gaussian_p") is not None]
    if not judged:
        return None
    best = min(judged, key=lambda t: (t["gaussian_p"], t["k"]))
    if best["gaussian_p"] >= 0.05:
        return None
    k = best["k"]
    names = ", ".join(tail["most_scattered_archs"][:k])
    return (
        f"seed noise carried by {k} of {archs} networks ({names}): "
        f"{_fmt(100 * best['share'], 0)}% of the seed scatter where one Gaussian sigma for all "
        f"gives {_fmt(100 * best['gaussian_share'], 0)}% (chance "
        f"{_fmt(100 * best['gaussian_p'], 1)}%); the others' run noise "
        f"{_fmt(best['sigma_without'], 2)} points against {_fmt(tail['sigma'], 2)}"
    )


def _signed(value: Any) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def _cells(m: dict[str, Any]) -> str:
    return ", ".join(
        f"{key} {_fmt(m[key]['value'])} [{_fmt(m[key]['low'])}, {_fmt(m[key]['high'])}]"
        for key in ("kendall_tau", "spearman", "pearson")
    )

"""DNA+ (method.md section 5): a cascade of DNA generations, each searched under the last one's net.

Generation m trains a DNA supernet under teacher m, rates it, searches under the recipe's budget,
scales the winner up to the teacher's size with EfficientNet compound scaling (the smallest phi
whose params, or MACs, reach the teacher's, accepted within a tolerance), retrains the scaled
network from scratch (optionally distilled from teacher m) and makes it teacher m+1. The cascade
stops after `generations`, or as soon as a generation's top-1 does not beat the previous one by
more than `min_gain` points (the paper stopped when accuracy saturated, after 3 generations).

Every stage writes under `OUT/gen_<m>/` and is reused on a rerun, so a killed cascade resumes at
the stage it was in; `OUT/cascade.json` (atomic) holds the per-generation report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnatool.errors import BadInput
from dnatool.utils import io
from dnatool.utils.events import Report, quiet

CASCADE_FILE = "cascade.json"
MATCH = ("params", "macs")
PHI_MAX = 8.0


@dataclass(frozen=True)
class CascadeRecipe:
    """Everything `dnatool cascade` needs; YAML recipes and `-o key=value` fill it."""

    train: str = "dna-tiny-w"
    train_overrides: tuple[str, ...] = ()
    teacher: str = "runs/cascade/teacher"
    teacher_arch: str | None = None
    teacher_recipe: str = "retrain-tiny"
    teacher_overrides: tuple[str, ...] = ()
    retrain: str = "retrain-tiny"
    retrain_overrides: tuple[str, ...] = ()
    kd: bool = False
    params: float | None = None
    macs: float | None = None
    latency_ms: float | None = None
    lut: str | None = None
    match: str = "params"
    tolerance: float = 0.10
    generations: int = 3
    min_gain: float = 0.0
    truth: str | None = (
        None  # a `bench ranking` truth of the train recipe's space: tau per generation
    )

    def __post_init__(self) -> None:
        if self.match not in MATCH:
            raise BadInput(f"recipe key 'match' must be one of {', '.join(MATCH)}")
        if self.generations < 1:
            raise BadInput("recipe key 'generations' must be >= 1")
        if not 0 < self.tolerance < 1:
            raise BadInput("recipe key 'tolerance' must be in (0, 1)")
        if not self.budgets:
            raise BadInput("a cascade recipe needs a search budget: params, macs or latency_ms")
        if self.latency_ms is not None and not self.lut:
            raise BadInput("recipe key 'latency_ms' needs 'lut' (a table from `dnatool profile`)")

    @property
    def budgets(self) -> dict[str, float]:
        named = {"params": self.params, "macs": self.macs, "latency_ms": self.latency_ms}
        return {k: float(v) for k, v in named.items() if v is not None}


def load_cascade_recipe(ref: str, overrides: tuple[str, ...] = ()) -> CascadeRecipe:
    from dnatool.config import load_recipe

    return load_recipe(ref, CascadeRecipe, overrides)


def run_cascade(
    recipe: CascadeRecipe,
    out: str | Path,
    generations: int | None = None,
    report: Report = quiet,
) -> dict[str, Any]:
    """Run (or resume) the cascade; returns the report written to `OUT/cascade.json`."""
    out = Path(out)
    total = generations or recipe.generations
    if total < 1:
        raise BadInput(f"--generations must be >= 1, got {total}")
    truth = load_cascade_truth(recipe)  # refused in one line before any training
    teacher = first_teacher(recipe, report)
    rows: list[dict[str, Any]] = []
    stopped = f"reached {total} generation(s)"
    for m in range(total):
        report("log", message=f"cascade: generation {m} under teacher {teacher}", always=True)
        row = run_generation(recipe, m, teacher, out / f"gen_{m}", report)
        if truth is not None:
            first = rows[0]["ranking"]["scores"] if rows else None
            row["ranking"] = generation_ranking(out / f"gen_{m}" / "supernet", truth, first)
            tau = row["ranking"]["kendall_tau"]["value"]
            report("log", message=f"cascade: generation {m} ranking tau {tau}", always=True)
        rows.append(row)
        _write(out, recipe, rows, None)
        if m > 0 and _stalled(row, rows[-2], recipe.min_gain):
            stopped = (
                f"generation {m} reached {row['top1']:.2f}% top-1, not more than "
                f"{recipe.min_gain:g} points above generation {m - 1}'s {rows[-2]['top1']:.2f}%"
            )
            if truth is not None:
                stopped += ", and its ranking tau did not improve"
            break
        teacher = row["retrain_run"]
    result = _write(out, recipe, rows, stopped)
    _plot(out / "cascade.png", rows)
    return result


def _stalled(row: dict[str, Any], previous: dict[str, Any], min_gain: float) -> bool:
    """Accuracy stopped improving, and (with a truth) the ranking tau too."""
    if row["top1"] > previous["top1"] + min_gain:
        return False
    if "ranking" not in row:
        return True
    now, before = (r["ranking"]["kendall_tau"]["value"] for r in (row, previous))
    return now is None or before is not None and now <= before


def load_cascade_truth(recipe: CascadeRecipe) -> dict[str, Any] | None:
    """The recipe's truth, checked against the space its supernets train on."""
    if recipe.truth is None:
        return None
    from dnatool.arch.space import load_space
    from dnatool.bench.truth import load_truth_of
    from dnatool.config import load_recipe
    from dnatool.train.recipe import TrainRecipe

    space = load_space(load_recipe(recipe.train, TrainRecipe, recipe.train_overrides).space)
    return load_truth_of(recipe.truth, space, "truth", "the cascade's space ")


def generation_ranking(
    run: Path,
    truth: dict[str, Any],
    first: list[float] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Kendall / Spearman / Pearson (bootstrap 95% intervals) between one generation's ratings
    of the truth's architectures and their trained top-1, as `bench ranking` computes them, and
    the scores themselves. With generation 0's scores (`first`), also the paired-bootstrap
    difference of Kendall tau against generation 0 (`vs_generation_0`): whether a generation
    ranks better is a paired question, since both are scored on the same architectures."""
    from dnatool.arch.space import load_space
    from dnatool.bench.stats import finite_or_none, method_correlations, paired_difference
    from dnatool.bench.truth import truth_choices
    from dnatool.rate.ranking import arch_score
    from dnatool.rate.score_lists import load_score_lists

    lists = load_score_lists(run, load_space(truth["space"]["ref"]))
    scores = [float(arch_score(lists, choices)) for choices in truth_choices(truth)]
    accuracy = [a["mean_top1"] for a in truth["archs"]]
    result = method_correlations(scores, accuracy, 2000, 0.95, seed)
    ranking = {k: result[k] for k in ("kendall_tau", "spearman", "pearson", "n")}
    if first is not None:
        ranking["vs_generation_0"] = paired_difference([scores], [first], accuracy, seed=seed)
    return finite_or_none({**ranking, "scores": scores})


def first_teacher(recipe: CascadeRecipe, report: Report) -> str:
    """Generation 0's teacher: a model run or timm name; trained first from `teacher_arch`
    (with `teacher_recipe`) when the run does not exist yet (no pretrained weights offline)."""
    from dnatool.nn.model_run import is_model_run

    if is_model_run(recipe.teacher) or recipe.teacher_arch is None:
        return recipe.teacher
    from dnatool.arch.resolve import resolve_arch
    from dnatool.retrain.recipe import load_retrain_recipe
    from dnatool.retrain.train import run_retrain

    report("log", message=f"cascade: training the first teacher at {recipe.teacher}", always=True)
    run_retrain(
        resolve_arch(recipe.teacher_arch),
        load_retrain_recipe(recipe.teacher_recipe, recipe.teacher_overrides),
        recipe.teacher,
        report=report,
        resume=True,
    )
    return recipe.teacher


def run_generation(
    recipe: CascadeRecipe, m: int, teacher: str, out: Path, report: Report
) -> dict[str, Any]:
    """Train, rate, search, scale and retrain one generation; every stage reused when done."""
    from dnatool.config import load_recipe
    from dnatool.rate.scores import run_rate
    from dnatool.train.loop import run_train
    from dnatool.train.recipe import TrainRecipe

    train = load_recipe(recipe.train, TrainRecipe, (*recipe.train_overrides, f"teacher={teacher}"))
    run_train(train, out / "supernet", report, resume=True)
    run_rate(out / "supernet", report)
    winner = _search(recipe, out, report)
    target = teacher_size(teacher, train.resolution)
    scaled, phi, size = scale_to_size(winner, target[recipe.match], recipe.match)
    ratio = size / target[recipe.match]
    if ratio > 1 + recipe.tolerance:
        report(
            "log",
            message=f"cascade: the scaled winner's {recipe.match} is {ratio:.2f}x the teacher's "
            f"(outside {recipe.tolerance:.0%}: compound scaling steps are coarse here)",
            always=True,
        )
    io.write_text(out / "scaled.json", scaled.to_json())
    metrics = _retrain(recipe, scaled, teacher, out / "retrain", report)
    return {
        "generation": m,
        "teacher": teacher,
        "teacher_size": target,
        "winner": winner.to_dict(),
        "phi": phi,
        "scaled_size": {recipe.match: size},
        "size_ratio": round(ratio, 4),
        "scaled_arch": str(out / "scaled.json"),
        "retrain_run": str(out / "retrain"),
        "top1": float(metrics["top1"]),
        "top5": float(metrics.get("top5", 0.0)),
    }


def _search(recipe: CascadeRecipe, out: Path, report: Report) -> Any:
    from dnatool.arch.resolve import resolve_arch
    from dnatool.search.run import search_run

    path = out / "search.json"
    if not path.is_file():
        search_run(out / "supernet", recipe.budgets, lut=recipe.lut, out=path, report=report)
    return resolve_arch(str(path))


def _retrain(
    recipe: CascadeRecipe, arch: Any, teacher: str, out: Path, report: Report
) -> dict[str, Any]:
    from dnatool.retrain.recipe import load_retrain_recipe
    from dnatool.retrain.train import run_retrain

    overrides = (*recipe.retrain_overrides, *((f"teacher={teacher}",) if recipe.kd else ()))
    return run_retrain(
        arch, load_retrain_recipe(recipe.retrain, overrides), out, report=report, resume=True
    )


def teacher_size(teacher: str, resolution: int | None = None) -> dict[str, int]:
    """Params and MACs of the teacher: a dnatool model run, or a timm model name (meta device)."""
    from dnatool.nn.model_run import is_model_run, model_run_arch
    from dnatool.nn.summary import summarize

    if is_model_run(teacher):
        summary = summarize(model_run_arch(teacher))
        return {"params": int(summary["params"]), "macs": int(summary["macs"])}
    import timm

    from dnatool.nn.counts import meta_counts

    try:
        config = timm.get_pretrained_cfg(teacher)
    except RuntimeError:
        config = None
    size = resolution or (config.input_size[-1] if config else 224)
    params, macs = meta_counts(
        lambda: timm.create_model(teacher, pretrained=False), (1, 3, size, size)
    )
    return {"params": int(params), "macs": int(macs)}


def scale_to_size(arch: Any, target: int, what: str = "params") -> tuple[Any, float, int]:
    """The compound-scaled arch of the smallest phi (to 0.01) whose `what` reaches `target`
    (phi 0 when the winner is already as large); returns (arch, phi, its size)."""
    from dnatool.arch.scale import scale_phi
    from dnatool.nn.summary import summarize

    def size(phi: float) -> int:
        scaled = scale_phi(arch, phi) if phi > 0 else arch
        return int(summarize(scaled)[what])

    if size(0.0) >= target:
        return arch, 0.0, size(0.0)
    lo, hi = 0.0, 1.0
    while size(hi) < target:
        lo, hi = hi, hi * 2
        if hi > PHI_MAX:
            raise BadInput(
                f"the winner cannot be scaled to the teacher's {what} ({target:,}) with phi <= "
                f"{PHI_MAX:g}"
            )
    while hi - lo > 0.01:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if size(mid) < target else (lo, mid)
    phi = round(hi, 2)
    return scale_phi(arch, phi), phi, size(phi)


def _write(
    out: Path, recipe: CascadeRecipe, rows: list[dict[str, Any]], stopped: str | None
) -> dict[str, Any]:
    from dnatool.config import to_dict

    result = {
        "format": "dnatool.cascade",
        "recipe": to_dict(recipe),
        "generations": rows,
        "finished": stopped is not None,
        "stopped": stopped,
        "best": max(rows, key=lambda r: r["top1"])["generation"] if rows else None,
    }
    io.write_json(out / CASCADE_FILE, result)
    return result


def _plot(path: Path, rows: list[dict[str, Any]]) -> None:
    """Top-1 of every generation beside its ranking tau, the tau with its 95% interval (so a
    change inside the interval does not look like a fall)."""
    from dnatool.utils.plots import new_figure, save_png

    fig = new_figure(figsize=(6, 3.5), dpi=100)
    ax = fig.add_subplot()
    gens = [r["generation"] for r in rows]
    lines = ax.plot(gens, [r["top1"] for r in rows], "o-", label="retrained winner top-1")
    ax.set(xlabel="generation", ylabel="top-1 (%)", title="DNA+ cascade", xticks=gens)
    ax.grid(alpha=0.3)
    taus = [r.get("ranking", {}).get("kendall_tau", {}) for r in rows]
    if any(t.get("value") is not None for t in taus):
        value = [t["value"] if t.get("value") is not None else float("nan") for t in taus]
        low = [t.get("low") if t.get("low") is not None else v for t, v in zip(taus, value)]
        high = [t.get("high") if t.get("high") is not None else v for t, v in zip(taus, value)]
        twin = ax.twinx()
        errors = [[v - lo for v, lo in zip(value, low)], [h - v for v, h in zip(value, high)]]
        shown = twin.errorbar(
            [g + 0.05 for g in gens],
            value,
            yerr=errors,
            fmt="s--",
            color="C1",
            capsize=3,
            label="ranking Kendall tau (95% CI)",
        )
        twin.set_ylim(max(-1.0, min(low) - 0.1), min(1.0, max(high) + 0.1))
        twin.set_ylabel("ranking Kendall tau", color="C1")
        lines = [*lines, shown]
    ax.legend(handles=lines, fontsize=8, loc="lower left")
    save_png(fig, path)

"""The rating methods the ranking benchmark compares, behind one small interface.

A method trains its supernet on the benchmark's data (resumable), rates it, and returns one score
per truth architecture (lower is better, as score lists are). `METHODS` is the registry: a method
whose implementation has not landed is registered with the reason, so `--methods` refuses it in
one line and adding it later is one `Method(...)` entry. Stage CPU times are recorded in
`METHOD_DIR/stages.json` when a stage completes, so a resumed benchmark still reports them.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnatool.arch.space import Choice, SearchSpace
from dnatool.errors import BadInput
from dnatool.utils import io, runs
from dnatool.utils.events import Report, quiet

STAGES_FILE = "stages.json"


@dataclass(frozen=True)
class MethodContext:
    """What a method gets: where to work, the space and data, the truth's architectures."""

    out: Path
    space: SearchSpace
    space_ref: str
    data: str
    archs: list[list[Choice]]
    options: dict[str, Any]
    report: Report = quiet


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    missing: Callable[[], str | None]  # None when usable here, else why not (one line)
    rate: Callable[[MethodContext], dict[str, Any]]  # {"scores": [...], "run": str, ...}
    # its options and recipes as `rate` will load them (options, space ref), refused in one line
    # before the truth's hours rather than after (a method without one is checked by `rate`)
    check: Callable[[dict[str, Any], str], Any] = lambda options, space_ref: None


def stage(ctx: MethodContext, name: str, work: Callable[[], Any], done: bool = False) -> Any:
    """Run one stage of a method, recording its CPU and wall time when it completes; a stage
    already completed (`done`) keeps the figures of the run that completed it."""
    path = ctx.out / STAGES_FILE
    record = io.read_json(path, "stage record") if path.is_file() else {}
    cpu, wall = time.process_time(), time.time()
    value = work()
    if not (done and name in record):
        record[name] = {
            "cpu_seconds": time.process_time() - cpu,
            "wall_seconds": time.time() - wall,
        }
        io.write_json(path, record)
    return value


def stage_times(out: Path) -> dict[str, Any]:
    path = out / STAGES_FILE
    return io.read_json(path, "stage record") if path.is_file() else {}


# --- DNA ------------------------------------------------------------------------------------

DNA_DEFAULTS: dict[str, Any] = {
    "teacher_arch": "recipes/arch/ranking-teacher.json",
    "teacher_recipe": "retrain-ranking",
    "teacher_overrides": [],
    "recipe": "dna-tiny-w",
    "overrides": [],
}


def _options(method: str, options: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """A method's options from the benchmark recipe, unknown keys refused."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise BadInput(f"unknown {method} option {unknown[0]!r} (known: {', '.join(defaults)})")
    return {**defaults, **options}


def _resolve_file(ref: str) -> str:
    """Paths in shipped recipes are relative to the repository (`recipes/...`)."""
    from dnatool.config import RECIPES_DIR

    path = Path(ref)
    if not path.exists() and (RECIPES_DIR.parent / ref).exists():
        return str(RECIPES_DIR.parent / ref)
    return ref


def _teacher_setup(opts: dict[str, Any], data: str) -> tuple[Any, Any]:
    """The teacher's architecture and retrain recipe as the options name them."""
    from dnatool.arch.resolve import resolve_arch
    from dnatool.retrain.recipe import load_retrain_recipe

    recipe = load_retrain_recipe(
        opts["teacher_recipe"], (*opts["teacher_overrides"], f"data={data}")
    )
    return resolve_arch(_resolve_file(opts["teacher_arch"])), recipe


def _teacher(ctx: MethodContext, opts: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The teacher of the teacher-based methods (DNA, DNA++), trained on the benchmark data in
    `methods/teachers/DIGEST`: keyed by its arch, recipe and overrides, so methods asking for
    the same teacher share one training."""
    import hashlib
    import json

    from dnatool.retrain.train import run_retrain

    key = [opts["teacher_arch"], opts["teacher_recipe"], list(opts["teacher_overrides"])]
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]
    teacher_run = ctx.out.parent / "teachers" / digest
    teacher_arch, teacher_recipe = _teacher_setup(opts, ctx.data)
    teacher = stage(
        ctx,
        "teacher",
        lambda: run_retrain(teacher_arch, teacher_recipe, teacher_run, ctx.report, resume=True),
        done=runs.is_finished(teacher_run),
    )
    return teacher_run, teacher


def rate_dna(ctx: MethodContext) -> dict[str, Any]:
    """Teacher trained on the benchmark data, block-wise supernet, Algorithm 1 rating; an
    architecture's score is the sum of its blocks' rated scores (as `search` minimises)."""
    opts = _options("dna", ctx.options, DNA_DEFAULTS)
    teacher_run, teacher = _teacher(ctx, opts)
    recipe = _teacher_based_recipe("dna", opts, ctx.space_ref, ctx.data, str(teacher_run))
    return {**_train_and_score(ctx, recipe, "dna"), "teacher_top1": float(teacher["top1"])}


def _teacher_based_recipe(
    method: str, opts: dict[str, Any], space_ref: str, data: str, teacher: str
) -> Any:
    """The supernet recipe of DNA or DNA++ with its overrides and the benchmark's settings."""
    from dnatool.config import load_recipe
    from dnatool.train.dnapp import DnappRecipe
    from dnatool.train.recipe import TrainRecipe

    recipe = load_recipe(
        opts["recipe"],
        DnappRecipe if method == "dna++" else TrainRecipe,
        (*opts["overrides"], f"space={space_ref}", f"data={data}", f"teacher={teacher}"),
    )
    if recipe.method != method:
        raise BadInput(f"{method} recipe {opts['recipe']!r} trains method {recipe.method!r}")
    return recipe


def _check_teacher_based(method: str, defaults: dict[str, Any]) -> Callable[[dict, str], None]:
    def check(options: dict[str, Any], space_ref: str) -> None:
        opts = _options(method, options, defaults)
        _teacher_setup(opts, "cluttered")
        _teacher_based_recipe(method, opts, space_ref, "cluttered", "teacher")

    return check


def _train_and_score(ctx: MethodContext, recipe: Any, method: str) -> dict[str, Any]:
    """Train a supernet that `rate` scores path by path (DNA, DNA++, BossNAS), rate it, and
    score the truth architectures by the sum of their blocks' scores, as `search` minimises."""
    from dnatool.rate.ranking import arch_score
    from dnatool.rate.score_lists import load_score_lists

    if method == "bossnas":
        from dnatool.rate.bossnas import run_rate_bossnas as rate
        from dnatool.train.bossnas_loop import run_bossnas as train
    else:
        from dnatool.rate.scores import run_rate as rate

        if method == "dna++":
            from dnatool.train.dnapp_loop import run_dnapp as train
        else:
            from dnatool.train.loop import run_train as train
    supernet = ctx.out / "supernet"
    stage(
        ctx,
        "train",
        lambda: train(recipe, supernet, ctx.report, resume=True),
        done=runs.is_finished(supernet),
    )
    stage(
        ctx, "rate", lambda: rate(supernet, ctx.report), done=runs.is_finished(supernet / "scores")
    )
    lists = load_score_lists(supernet, ctx.space)
    return {
        "scores": [arch_score(lists, choices) for choices in ctx.archs],
        "run": str(supernet),
        "supernet_epochs": recipe.epochs,
    }


# --- DNA++ ----------------------------------------------------------------------------------

DNAPP_DEFAULTS: dict[str, Any] = {**DNA_DEFAULTS, "recipe": "dnapp-tiny"}


def rate_dnapp(ctx: MethodContext) -> dict[str, Any]:
    """The same teacher as DNA (trained on the benchmark's labels), a DNA++ supernet trained
    without labels (two views, VICReg-style loss, teacher trained jointly), rated by the SSL
    loss per path (`dnapp.ssl_score`); an architecture's score is the sum of its blocks' scores."""
    opts = _options("dna++", ctx.options, DNAPP_DEFAULTS)
    teacher_run, teacher = _teacher(ctx, opts)
    recipe = _teacher_based_recipe("dna++", opts, ctx.space_ref, ctx.data, str(teacher_run))
    return {**_train_and_score(ctx, recipe, "dna++"), "teacher_top1": float(teacher["top1"])}


# --- SPOS -----------------------------------------------------------------------------------


SPOS_DEFAULTS: dict[str, Any] = {"recipe": "spos-tiny", "overrides": [], "bn_batches": None}


def rate_spos(ctx: MethodContext) -> dict[str, Any]:
    """One weight-sharing supernet trained on the labels (`method: spos`), then every truth
    architecture rated by its top-1 on the rating split after BN recalibration (`dnatool rate
    RUN --archs FILE`); the score is SPOS's fitness, the top-1 error (lower is better)."""
    from dnatool.arch.choices import choices_key
    from dnatool.rate.spos import run_rate_spos
    from dnatool.train.spos import run_spos

    opts = _options("spos", ctx.options, SPOS_DEFAULTS)
    recipe = _supernet_recipe("spos", opts, ctx.space_ref, ctx.data)
    supernet = ctx.out / "supernet"
    stage(
        ctx,
        "train",
        lambda: run_spos(recipe, supernet, ctx.report, resume=True),
        done=runs.is_finished(supernet),
    )
    archs_file = io.write_json(
        ctx.out / "archs.json", [[[c, list(p)] for c, p in choices] for choices in ctx.archs]
    )
    rated = stage(
        ctx,
        "rate",
        lambda: run_rate_spos(
            supernet, archs=archs_file, bn_batches=opts["bn_batches"], report=ctx.report
        ),
        done=runs.is_finished(supernet / "scores"),
    )
    by_key = {choices_key([(c, tuple(p)) for c, p in e["choices"]]): e for e in rated["archs"]}
    entries = [by_key[choices_key(choices)] for choices in ctx.archs]
    return {
        "scores": [100.0 - e["top1"] for e in entries],
        "rating_top1": [e["top1"] for e in entries],
        "rating_loss": [e["loss"] for e in entries],
        "run": str(supernet),
        "supernet_epochs": recipe.epochs,
        "rating": rated["settings"],
    }


def _supernet_recipe(method: str, opts: dict[str, Any], space_ref: str, data: str) -> Any:
    """The supernet recipe of a teacherless method (SPOS, BossNAS) with its overrides."""
    from dnatool.train.recipe import load_train_recipe

    recipe = load_train_recipe(
        opts["recipe"], (*opts["overrides"], f"space={space_ref}", f"data={data}")
    )
    if recipe.method != method:
        raise BadInput(f"{method} recipe {opts['recipe']!r} trains method {recipe.method!r}")
    return recipe


def _check_teacherless(method: str, defaults: dict[str, Any]) -> Callable[[dict, str], None]:
    def check(options: dict[str, Any], space_ref: str) -> None:
        _supernet_recipe(method, _options(method, options, defaults), space_ref, "cluttered")

    return check


# --- BossNAS --------------------------------------------------------------------------------

BOSSNAS_DEFAULTS: dict[str, Any] = {"recipe": "bossnas-tiny", "overrides": []}


def rate_bossnas(ctx: MethodContext) -> dict[str, Any]:
    """No teacher and no labels: the supernet trained by ensemble bootstrapping block after block,
    every path rated against its block's population centre; an architecture's score is the sum
    of its blocks' (relative) distances, as `search` minimises."""
    opts = _options("bossnas", ctx.options, BOSSNAS_DEFAULTS)
    recipe = _supernet_recipe("bossnas", opts, ctx.space_ref, ctx.data)
    return _train_and_score(ctx, recipe, "bossnas")


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method(
            "dna",
            "DNA: block-wise distillation from a teacher, Algorithm 1 rating",
            lambda: None,
            rate_dna,
            _check_teacher_based("dna", DNA_DEFAULTS),
        ),
        Method(
            "spos",
            "SPOS: one weight-sharing supernet, top-1 after BN recalibration",
            lambda: None,
            rate_spos,
            _check_teacherless("spos", SPOS_DEFAULTS),
        ),
        Method(
            "dna++",
            "DNA++: self-supervised block-wise learning, rated by the SSL loss per path",
            lambda: None,
            rate_dnapp,
            _check_teacher_based("dna++", DNAPP_DEFAULTS),
        ),
        Method(
            "bossnas",
            "BossNAS: ensemble bootstrapping without a teacher, population-centre rating",
            lambda: None,
            rate_bossnas,
            _check_teacherless("bossnas", BOSSNAS_DEFAULTS),
        ),
    )
}


def base_method(name: str) -> str:
    """`METHOD@VARIANT` names a variant of a method: its own options and folder, the same code
    (e.g. `dna@own` beside `dna`, sharing the teacher), so one summary compares them."""
    return name.partition("@")[0]


def select_methods(names: list[str]) -> list[Method]:
    """The named methods (variants named after their method), refusing unknown or unavailable
    ones in one line (exit 2)."""
    chosen = []
    for name in names:
        base = base_method(name)
        if base not in METHODS:
            raise BadInput(f"unknown method {base!r} (known: {', '.join(METHODS)})")
        if name != base and not re.fullmatch(r"[A-Za-z0-9_.-]+", name.partition("@")[2]):
            raise BadInput(f"method variant {name!r}: write METHOD@NAME (letters, digits, _ . -)")
        reason = METHODS[base].missing()
        if reason:
            raise BadInput(reason)
        chosen.append(dataclasses.replace(METHODS[base], name=name))
    return chosen


def method_runs(method: Method, options: dict[str, Any]) -> list[tuple[Method, dict[str, Any]]]:
    """The supernets a method trains and its options for each: `seeds: N` (default 1) trains N,
    the method as configured and `METHOD@seedK` (a variant's `VARIANT-seedK`) with `seed=K`
    appended to its overrides (the supernet's seed and its rating split), so its ratings' own
    noise is measured beside the truth's."""
    options = dict(options)
    seeds = options.pop("seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise BadInput(f"method {method.name}: seeds must be an integer >= 1, got {seeds!r}")
    overrides = list(options.get("overrides", []))
    if seeds > 1 and any(str(o).partition("=")[0].strip() == "seed" for o in overrides):
        raise BadInput(
            f"method {method.name}: seeds={seeds} sets the supernet seeds; drop seed= from its "
            "overrides"
        )
    joiner = "-" if "@" in method.name else "@"
    planned = [(method, options)]
    for k in range(1, seeds):
        run = dataclasses.replace(method, name=f"{method.name}{joiner}seed{k}")
        planned.append((run, {**options, "overrides": [*overrides, f"seed={k}"]}))
    return planned


def available_methods() -> list[str]:
    return [name for name, method in METHODS.items() if method.missing() is None]

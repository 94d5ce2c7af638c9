"""The whole chain on the built-in data, on CPU, in minutes: what `dnatool demo` runs.

Each stage is a function of the shared context that writes under `ctx.out / <stage>` and returns
a small summary. Later stages read earlier results from `ctx.results`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dnatool.utils import io
from dnatool.utils.events import quiet

SPACE = "tiny-w"
SEED = 0


@dataclass
class DemoContext:
    out: Path
    report: Callable[..., None] = quiet
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


def stage_space(ctx: DemoContext) -> dict[str, Any]:
    """The demo's search space."""
    from dnatool.arch.space import load_space

    space = load_space(SPACE)
    return {
        "space": space.name,
        "size": space.size,
        "distinct": space.distinct,
        "coupled": space.coupled,
        "blocks": len(space.blocks),
    }


def stage_arch(ctx: DemoContext) -> dict[str, Any]:
    """One random architecture of the space, written as a dnatool arch file and measured."""
    import numpy as np

    from dnatool.arch.space import load_space
    from dnatool.nn.summary import summarize

    arch = load_space(SPACE).to_arch(
        load_space(SPACE).sample(np.random.default_rng(SEED)), name="random"
    )
    path = io.write_text(ctx.out / "arch" / "random.json", arch.to_json())
    summary = summarize(arch)
    return {"arch_file": str(path), "params": summary["params"], "macs": summary["macs"]}


def stage_teacher(ctx: DemoContext) -> dict[str, Any]:
    """No pretrained weights offline: train the demo's small teacher on digits first."""
    from dnatool.arch.resolve import resolve_arch
    from dnatool.config import RECIPES_DIR
    from dnatool.retrain.recipe import load_retrain_recipe
    from dnatool.retrain.train import run_retrain

    arch = resolve_arch(str(RECIPES_DIR / "arch" / "digits-teacher.json"))
    run = ctx.out / "teacher"
    metrics = run_retrain(
        arch, load_retrain_recipe("retrain-tiny"), run, report=ctx.report, resume=True
    )
    return {"run": str(run), "top1": metrics["top1"]}


def stage_train(ctx: DemoContext) -> dict[str, Any]:
    """DNA supernet of the tiny-w space (cells of different widths), distilled block by block from the teacher."""
    from dnatool.config import load_recipe
    from dnatool.train.loop import run_train
    from dnatool.train.recipe import TrainRecipe

    recipe = load_recipe("dna-tiny-w", TrainRecipe, (f"teacher={ctx.results['teacher']['run']}",))
    run = ctx.out / "supernet"
    results = run_train(recipe, run, ctx.report, resume=True)
    return {"run": str(run), "final_loss": results["final_loss"]}


def stage_rate(ctx: DemoContext) -> dict[str, Any]:
    """Every path of every cell scored with feature sharing (resumes per block)."""
    from dnatool.rate.scores import run_rate

    summary = run_rate(ctx.results["train"]["run"], ctx.report)
    return {
        "paths": {k: v["paths"] for k, v in summary.items()},
        "best": {k: v["best"][0]["ops"] for k, v in summary.items()},
    }


def stage_search(ctx: DemoContext) -> dict[str, Any]:
    """Exact search of the rated tiny supernet under a latency budget halfway between the fastest
    and the best-scoring architecture on the demo's table; the winner is written as an arch file."""
    from dnatool.errors import RunFailure
    from dnatool.search.run import demo_search

    missing = [
        s for s, key in (("train", "run"), ("profile", "lut")) if key not in ctx.results.get(s, {})
    ]
    if missing:
        raise RunFailure(
            f"demo search needs the results of stage(s) {', '.join(missing)} (a rated run and a LUT)"
        )
    return demo_search(
        ctx.results["train"]["run"],
        ctx.results["profile"]["lut"],
        ctx.out / "search",
        report=ctx.report,
    )


def stage_retrain(ctx: DemoContext) -> dict[str, Any]:
    """The search winner (else the random arch) trained from scratch with the tiny recipe; a rerun
    of the demo resumes or reuses the run."""
    import shutil

    from dnatool.arch.resolve import resolve_arch
    from dnatool.errors import BadInput
    from dnatool.retrain.recipe import load_retrain_recipe
    from dnatool.retrain.train import run_retrain

    source = ctx.results.get("search", {}).get("arch_file") or ctx.results["arch"]["arch_file"]
    run, arch, recipe = (
        ctx.out / "retrain",
        resolve_arch(source),
        load_retrain_recipe("retrain-tiny"),
    )
    try:
        metrics = run_retrain(arch, recipe, run, report=ctx.report, resume=True)
    except BadInput:  # an earlier demo's run of another arch or recipe: start over
        shutil.rmtree(run, ignore_errors=True)
        metrics = run_retrain(arch, recipe, run, report=ctx.report)
    return {
        "run": str(run),
        "arch_file": str(source),
        "top1": metrics["top1"],
        "top5": metrics["top5"],
        "teacher_top1": ctx.results.get("teacher", {}).get("top1"),
    }


def stage_export(ctx: DemoContext) -> dict[str, Any]:
    """ONNX of the retrained winner (else the random arch, marked untrained), parity-checked."""
    from dnatool.export.run import export_model

    source = ctx.results.get("retrain", {}).get("run") or ctx.results["arch"]["arch_file"]
    result = export_model(source, ctx.out / "export" / "model.onnx", report=ctx.report)
    return {
        key: result[key]
        for key in (
            "onnx",
            "max_abs_diff",
            "ort_latency_ms",
            "torch_latency_ms",
            "trained",
            "report",
        )
    }


def stage_profile(ctx: DemoContext) -> dict[str, Any]:
    """An ort-cpu latency table of the space (quick protocol, 1 thread, thread CPU time so a busy
    machine does not skew it) and its validation on a few networks across its latency range, with
    the verdict in words: `tiny-w` networks take about 0.1 ms, too fast for per-call overhead to
    be negligible, and the demo says so. A complete table and its validation are reused as they
    are: re-measuring would shift the calibration, so the search budget and winner, and the
    retrain would start over."""
    path = ctx.out / "profile" / f"{SPACE}_ort-cpu.json"
    report_path = path.with_suffix(".validate.json")
    if _complete_lut(path) and report_path.is_file():
        ctx.report("log", message=f"profile: {path} and its validation are complete, reused")
        result = io.read_json(report_path)
    else:
        result = _profile_and_validate(ctx, path)
    check = _table_check(path)
    verdict = result.get("verdict", "(validated before verdicts were written)")
    ctx.report("log", message=f"profile: validation verdict: {verdict}", always=True)
    if check and not check.get("passed"):
        ctx.report(
            "log",
            message=f"profile: the table failed its own hold-out check ({check.get('reason')}); "
            "the demo searches with it anyway, as `dnatool search --force` would",
            always=True,
        )
    return {
        "lut": str(path),
        "within_10pct": result["within_10pct"],
        "mape": result["mape"],
        "verdict": verdict,
        "check_passed": bool(check and check.get("passed")),
    }


def _table_check(path: Path) -> dict[str, Any] | None:
    from dnatool.profile.lut import load_lut

    return load_lut(path).header.get("check")


def _complete_lut(path: Path) -> bool:
    from dnatool.errors import BadInput
    from dnatool.profile.lut import load_lut

    try:
        return path.is_file() and bool(load_lut(path, allow_incomplete=True).header.get("complete"))
    except BadInput:
        return False


def _profile_and_validate(ctx: DemoContext, path: Path) -> dict[str, Any]:
    from dnatool.arch.space import load_space
    from dnatool.profile.backends import BackendOptions, get_backend
    from dnatool.profile.lut import load_lut
    from dnatool.profile.measure import Protocol
    from dnatool.profile.run import profile_space
    from dnatool.profile.validate import validate

    backend = get_backend("ort-cpu", BackendOptions(threads=1, clock="cpu"))
    quick = replace(Protocol.quick(SEED), calibration_nets=9)
    profile_space(load_space(SPACE), backend, path, quick, resume=path.exists(), report=ctx.report)
    return validate(load_lut(path), 6, seed=SEED, report=ctx.report)


STAGES: list[tuple[str, Callable[[DemoContext], dict[str, Any]]]] = [
    ("space", stage_space),
    ("arch", stage_arch),
    ("teacher", stage_teacher),
    ("train", stage_train),
    ("rate", stage_rate),
    ("profile", stage_profile),
    ("search", stage_search),
    ("retrain", stage_retrain),
    ("export", stage_export),
]


def run_demo(out: str | Path, report: Callable[..., None] | None = None) -> dict[str, Any]:
    """Run every stage in order; the summary is also written to `out/demo.json`."""
    ctx = DemoContext(out=Path(out), report=report or quiet)
    for name, stage in STAGES:
        ctx.report("log", message=f"demo: {name} ...", always=True)
        ctx.results[name] = stage(ctx)
        ctx.report("log", message=f"demo: {name} -> {ctx.results[name]}", always=True)
    io.write_json(ctx.out / "demo.json", ctx.results)
    return ctx.results

"""`dnatool rate RUN`: every path of every cell of every block scored on the rating split.

Writes `RUN/scores/block_{k}.npz` (arrays `cells`, `paths` padded with -1, `scores`; lower is
better) and `RUN/scores/summary.json`; a block whose file exists for the same checkpoint and
settings is skipped, so a killed rating resumes per block. Rating a training run that has not
finished (blocks at fewer epochs than the recipe's, or at different epochs) goes on, since a look
at a run in progress is useful, but warns on stderr with every block's epoch and records it:
`trained_epochs` / `training_finished` per block and a `warning` in `scores/manifest.json`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from dnatool.config import from_dict
from dnatool.errors import BadInput
from dnatool.rate.feature_sharing import CellScores, all_paths, score_batch
from dnatool.rate.score_lists import SCORES_DIR, STAGE, ScoreList, scores_path, write_score_list
from dnatool.train.recipe import SSL_SCORES, TrainRecipe
from dnatool.train.setup import Setup, block_checkpoint, build_setup
from dnatool.utils import io, runs
from dnatool.utils.events import quiet
from dnatool.utils.locks import locked


@locked("run", SCORES_DIR)  # one writer per RUN/scores
def run_rate(
    run: str | Path,
    report: Callable[..., None] | None = None,
    norm: str | None = None,
    bn_recalibrate: bool | None = None,
    ssl_score: str | None = None,
) -> dict[str, Any]:
    """Rate every block of a trained supernet run; returns the per-block summary. `norm` is DNA's
    relative-L1 normaliser, `ssl_score` DNA++'s rating (None: the recipe's)."""
    report = report or quiet
    run = Path(run)
    manifest = runs.read_manifest(run)
    if manifest.get("stage") != "train":
        raise BadInput(f"{run} is not a supernet training run (stage {manifest.get('stage')!r})")
    recipe = _recipe(manifest["recipe"])
    norm = _norm(recipe, norm, ssl_score)
    recal = recipe.bn_recalibrate if bn_recalibrate is None else bn_recalibrate
    setup = build_setup(recipe, augment=False)
    if recipe.method == "dna++" and getattr(recipe, "train_teacher", False):
        from dnatool.train.dnapp_loop import teacher_checkpoint

        trained = io.load_checkpoint(teacher_checkpoint(run), "dnapp_teacher")
        setup.teacher.model.load_state_dict(trained["state_dict"])
    checkpoints = [
        io.load_checkpoint(block_checkpoint(run, k), "supernet_block")
        for k in range(len(setup.space.blocks))
    ]
    epochs = [int(c["epoch"]) for c in checkpoints]
    warning = unfinished_warning(manifest, recipe.epochs, epochs)
    if warning:
        report("log", message=f"warning: {warning}", always=True)
    device = "cuda" if recipe.device != "cpu" and torch.cuda.is_available() else "cpu"
    setup.teacher.to(device)
    inputs = {"training run": run / runs.MANIFEST}
    STAGE.start(STAGE.open(run / SCORES_DIR), {"norm": norm, "bn_recalibrate": recal}, inputs)
    summary = {}
    for k, checkpoint in enumerate(checkpoints):
        meta = _rate_block(run, setup, k, checkpoint, device, norm, recal, report)
        summary[str(k)] = {**meta, "trained_epochs": epochs[k], "training_finished": not warning}
    io.write_json(run / SCORES_DIR / "summary.json", summary)
    runs.finish_run(
        run / SCORES_DIR,
        [f"block_{k}.npz" for k in range(len(setup.space.blocks))] + ["summary.json"],
        {"best": {k: v["best"][0] for k, v in summary.items()}, "warning": warning},
    )
    return summary


def _recipe(data: dict[str, Any]) -> Any:
    """The training recipe of a run: DNA's, or DNA++'s (which rates with its own distance)."""
    if data.get("method") == "dna++":
        from dnatool.train.dnapp import DnappRecipe

        return from_dict(DnappRecipe, data)
    return from_dict(TrainRecipe, data)


def _norm(recipe: Any, norm: str | None, ssl_score: str | None) -> str:
    """What a path's score is: `std` / `var` (DNA's relative L1), `ssl-loss` / `ssl-invariance`
    (DNA++'s `dnapp.ssl_score`); recorded in the scores' settings, so changing it rates again."""
    if recipe.method != "dna++":
        if ssl_score is not None:
            raise BadInput(
                "--ssl-score rates DNA++ runs; a DNA run is rated by relative L1 (--norm)"
            )
        return norm or recipe.score_norm
    if norm is not None:
        raise BadInput("--norm is DNA's score normaliser; a DNA++ run is rated by --ssl-score")
    kind = ssl_score or recipe.ssl_score
    if kind not in SSL_SCORES:
        raise BadInput(f"--ssl-score must be one of {', '.join(SSL_SCORES)}, got {kind!r}")
    return f"ssl-{kind}"


def _rating_loader(setup: Setup, norm: str) -> DataLoader:
    """The rating split in `rate_batch_size` batches; for the SSL loss (batch variances) split
    into near-equal batches, so no batch is a lone image."""
    size = setup.recipe.rate_batch_size
    if norm != "ssl-loss":
        return DataLoader(setup.splits.rate, batch_size=size, shuffle=False)
    n = len(setup.splits.rate)
    batches = [b.tolist() for b in torch.arange(n).tensor_split(max(1, -(-n // size)))]
    return DataLoader(setup.splits.rate, batch_sampler=batches)


def unfinished_warning(manifest: dict[str, Any], recipe_epochs: int, epochs: list[int]) -> str:
    """One line naming every block's epoch when the training run is unfinished, else ''."""
    if manifest.get("finished") and min(epochs) >= recipe_epochs and len(set(epochs)) == 1:
        return ""
    state = "finished" if manifest.get("finished") else "not finished"
    per_block = ", ".join(f"block {k} {e}" for k, e in enumerate(epochs))
    return (
        f"rating an unfinished training run (manifest {state}; epochs of {recipe_epochs}: "
        f"{per_block}): scores of blocks trained for fewer epochs are not comparable"
    )


def _rate_block(
    run: Path,
    setup: Setup,
    k: int,
    checkpoint: dict[str, Any],
    device: str,
    norm: str,
    recal: bool,
    report: Callable[..., None],
) -> dict[str, Any]:
    settings = {"epoch": int(checkpoint["epoch"]), "norm": norm, "bn_recalibrate": recal}
    done = _existing(run, k, settings)
    if done is not None:
        report("log", message=f"block {k}: scores already there, skipped (resume)")
        return done
    block = setup.supernet.blocks[k]
    block.load_state_dict(checkpoint["state_dict"])
    block.to(device).eval()
    began = time.time()
    results = [CellScores() for _ in block.cells]
    loader = _rating_loader(setup, norm)
    report("start", task=f"rate block {k}", total=len(loader))
    calibration = None
    project, metric = (
        _ssl_metric(setup, k, checkpoint, device, norm.removeprefix("ssl-"))
        if norm.startswith("ssl-")
        else (None, norm)
    )
    for images, _ in loader:
        x, target = _block_io(setup, block, k, images.to(device))
        if project is not None:
            with torch.no_grad():
                target = project(target)
        if recal and calibration is None:
            calibration = x
        for cell, result in zip(block.cells, results):
            score_batch(cell, x, target, result, metric, calibration)
        report("advance", task=f"rate block {k}")
    return _write_block(run, k, block, results, settings, time.time() - began, setup)


def _ssl_metric(
    setup: Setup, k: int, checkpoint: dict[str, Any], device: str, kind: str
) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor, torch.Tensor], float]]:
    """DNA++'s rating: the teacher feature through the teacher projector is Z; a path's score is
    `dnapp.ssl_score` (`kind`) of its output through the student projector against Z."""
    from dnatool.train.dnapp import Projector, ssl_score

    recipe = setup.recipe
    width = setup.teacher.cut.shapes[k][0]
    proj_s, proj_t = (Projector(width, recipe.proj_hidden, recipe.proj_out) for _ in range(2))
    proj_s.load_state_dict(checkpoint["projectors"]["student"])
    proj_t.load_state_dict(checkpoint["projectors"]["teacher"])
    proj_s.to(device).eval(), proj_t.to(device).eval()

    def metric(output: torch.Tensor, z: torch.Tensor) -> float:
        return ssl_score(proj_s(output), z, kind, recipe.weights)

    return proj_t, metric


@torch.no_grad()
def _block_io(
    setup: Setup, block: torch.nn.Module, k: int, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    targets = setup.teacher(images)
    x = block.prepare(images) if k == 0 else targets[k - 1]
    return x, targets[k]


def _existing(run: Path, k: int, settings: dict[str, Any]) -> dict[str, Any] | None:
    path = run / SCORES_DIR / f"block_{k}.json"
    if not path.is_file() or not scores_path(run, k).is_file():
        return None
    meta = io.read_json(path)
    return meta if meta.get("settings") == settings else None


def _write_block(
    run: Path,
    k: int,
    block: torch.nn.Module,
    results: list[CellScores],
    settings: dict[str, Any],
    seconds: float,
    setup: Setup,
) -> dict[str, Any]:
    cells, paths, scores = [], [], []
    depth = max(cell.depth for cell in block.cells)
    for c, (cell, result) in enumerate(zip(block.cells, results)):
        per_path = result.scores()
        for path in all_paths(cell):
            cells.append(c)
            paths.append(list(path) + [-1] * (depth - len(path)))
            scores.append(per_path[path])
    arrays = {
        "cells": np.array(cells, dtype=np.int64),
        "paths": np.array(paths, dtype=np.int64),
        "scores": np.array(scores, dtype=np.float64),
    }
    write_score_list(run, k, ScoreList(**arrays))
    order = np.argsort(arrays["scores"], kind="stable")[:5]
    ops = setup.space.blocks[k].ops
    meta = {
        "settings": settings,
        "paths": len(scores),
        "seconds": round(seconds, 3),
        "layer_evals": sum(r.layer_evals for r in results),
        "best": [
            {
                "cell": int(cells[i]),
                "path": [p for p in paths[i] if p >= 0],
                "ops": [ops[p].name for p in paths[i] if p >= 0],
                "score": scores[i],
            }
            for i in order
        ],
    }
    io.write_json(run / SCORES_DIR / f"block_{k}.json", meta)
    return meta

"""Rating architectures of an SPOS supernet: top-1 (and loss) on the rating split after BatchNorm
recalibration, as SPOS does (Guo et al., ECCV 2020, Sec. 3.3: the supernet's BN statistics are
wrong for any single path, so they are recomputed per path before it is evaluated).

Recalibration resets every BN's statistics and forwards `bn_batches` training batches (no
augmentation, a seeded fixed subset, the same for every path) in train mode: `ema` keeps the BN
momentum (0.1), as the released code; `exact` sets it to None, so the statistics are the equal-weight
average over the batches (mmrazor's exact calibration). Rating many paths is `dnatool rate RUN
--sample N | --archs FILE`: results go to `RUN/scores/spos.json` after every architecture
(atomic), and a rerun with the same settings reuses the architectures already rated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from dnatool.arch.choices import choices_key, read_archs
from dnatool.arch.space import Choice, SearchSpace
from dnatool.errors import BadInput
from dnatool.rate.score_lists import SCORES_DIR, STAGE
from dnatool.train.recipe import SposRecipe, train_recipe_from_dict
from dnatool.train.spos import KIND, ChoiceCounts, SposSetup, build_spos_setup, checkpoint_path
from dnatool.utils import io, runs
from dnatool.utils.events import Report, quiet
from dnatool.utils.locks import locked

RATINGS_FILE = Path(SCORES_DIR) / "spos.json"
RATINGS_FORMAT = "dnatool.spos-ratings"
CACHE_BYTES = 512 << 20  # batches smaller than this are kept in memory between paths


def ratings_path(run: str | Path) -> Path:
    return Path(run) / RATINGS_FILE


@dataclass
class LoadedSpos:
    """A trained SPOS run ready to evaluate paths."""

    run: Path
    recipe: SposRecipe
    setup: SposSetup
    epoch: int
    device: torch.device

    @property
    def space(self) -> SearchSpace:
        return self.setup.space


def load_spos(run: str | Path) -> LoadedSpos:
    """The run's recipe, space, data (no augmentation) and supernet weights."""
    run = Path(run)
    manifest = runs.read_manifest(run)
    if manifest.get("stage") != "train":
        raise BadInput(f"{run} is not a supernet training run (stage {manifest.get('stage')!r})")
    recipe = train_recipe_from_dict(manifest["recipe"])
    if not isinstance(recipe, SposRecipe):
        raise BadInput(f"{run} is a {recipe.method!r} run, not an SPOS run")
    checkpoint = io.load_checkpoint(checkpoint_path(run), KIND)
    setup = build_spos_setup(recipe, augment=False)
    recorded = (manifest.get("space") or {}).get("digest")
    if recorded and recorded != setup.space.digest:
        raise BadInput(f"space {setup.space.name!r} changed since run {run} was trained (digest)")
    setup.supernet.load_state_dict(checkpoint["state_dict"])
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    cuda = recipe.device != "cpu" and torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    setup.supernet.to(device).eval()
    return LoadedSpos(run, recipe, setup, int(checkpoint["epoch"]), device)


class Batches:
    """Fixed batches of a dataset, kept in memory when small (digits), streamed otherwise."""

    def __init__(self, data: Any, batch_size: int, workers: int, limit: int | None = None) -> None:
        self.loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers)
        self.limit = limit
        self.cached: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        first = data[0][0] if len(data) else torch.zeros(1)
        count = len(data) if limit is None else min(len(data), limit * batch_size)
        if first.numel() * first.element_size() * count <= CACHE_BYTES:
            self.cached = list(self._stream())

    def _stream(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i, batch in enumerate(self.loader):
            if self.limit is not None and i >= self.limit:
                return
            yield batch[0], batch[1]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.cached) if self.cached is not None else self._stream()


def _bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class Evaluator:
    """`evaluator(choices)` -> {"top1", "loss"} of one path on the rating split."""

    def __init__(
        self,
        loaded: LoadedSpos,
        bn_batches: int | None = None,
        bn_mode: str | None = None,
        recalibrate: bool = True,
    ) -> None:
        recipe, splits = loaded.recipe, loaded.setup.splits
        self.model, self.device = loaded.setup.supernet, loaded.device
        self.bn_batches = recipe.bn_batches if bn_batches is None else bn_batches
        self.bn_mode = bn_mode or recipe.bn_mode
        if self.bn_mode not in ("ema", "exact") or self.bn_batches < 0:
            raise BadInput("BN recalibration needs --bn-mode ema|exact and --bn-batches >= 0")
        self.recalibrate = recalibrate and self.bn_batches > 0
        order = np.random.default_rng([recipe.seed, 7]).permutation(len(splits.train))
        subset = Subset(splits.train, order[: self.bn_batches * recipe.batch_size].tolist())
        self.calibration = Batches(subset, recipe.batch_size, recipe.workers, self.bn_batches)
        self.rating = Batches(splits.rate, recipe.rate_batch_size, recipe.workers)
        self.norms = _bn_layers(self.model)
        self.settings = {
            "epoch": loaded.epoch,
            "bn_recalibrate": self.recalibrate,
            "bn_batches": self.bn_batches if self.recalibrate else 0,
            "bn_mode": self.bn_mode if self.recalibrate else None,
            "rate_images": len(splits.rate),
        }

    @torch.no_grad()
    def __call__(self, choices: list[Choice]) -> dict[str, float]:
        if self.recalibrate:
            self._recalibrate(choices)
        self.model.eval()
        correct, loss, n = 0, 0.0, 0
        for images, labels in self.rating:
            images, labels = images.to(self.device), labels.to(self.device)
            logits = self.model(images, choices)
            loss += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(1) == labels).sum())
            n += len(labels)
        return {"top1": 100.0 * correct / n, "loss": loss / n}

    def _recalibrate(self, choices: list[Choice]) -> None:
        """Reset every BN and forward the calibration batches on this path in train mode."""
        momenta = [bn.momentum for bn in self.norms]
        for bn in self.norms:
            bn.reset_running_stats()
            if self.bn_mode == "exact":
                bn.momentum = None
        self.model.train()
        for images, _ in self.calibration:
            self.model(images.to(self.device), choices)
        for bn, momentum in zip(self.norms, momenta, strict=True):
            bn.momentum = momentum
        self.model.eval()


def sample_archs(space: SearchSpace, n: int, seed: int) -> list[list[Choice]]:
    """`n` distinct uniformly sampled architectures (all of them when the space is smaller)."""
    if n < 1:
        raise BadInput("--sample needs N >= 1")
    rng = np.random.default_rng([seed, n])
    found: dict[str, list[Choice]] = {}
    tries = 100 * n
    while len(found) < min(n, space.distinct) and tries > 0:
        tries -= 1
        choices = space.sample(rng)
        found.setdefault(choices_key(choices), choices)
    return list(found.values())


@locked("run", SCORES_DIR)  # one writer per RUN/scores (as `rate`)
def run_rate_spos(
    run: str | Path,
    *,
    sample: int | None = None,
    archs: str | Path | None = None,
    seed: int = 0,
    bn_batches: int | None = None,
    bn_mode: str | None = None,
    recalibrate: bool = True,
    report: Report | None = None,
) -> dict[str, Any]:
    """Rate the requested architectures of an SPOS run; returns them (best first) with settings."""
    report = report or quiet
    if (sample is None) == (archs is None):
        raise BadInput(
            "an SPOS run has 1e17-path spaces that cannot all be rated: give --sample N or --archs FILE"
        )
    run = Path(run)
    loaded = load_spos(run)
    space = loaded.space
    listed = sample_archs(space, sample, seed) if sample is not None else read_archs(archs, space)
    wanted = list({choices_key(c): c for c in listed}.values())  # each architecture once
    evaluate = Evaluator(loaded, bn_batches, bn_mode, recalibrate)
    counts = ChoiceCounts(space)
    done = _existing(run, evaluate.settings)
    if done:
        report("log", message=f"{len(done)} architectures already rated with these settings")
    inputs = {"training run": run / runs.MANIFEST}
    STAGE.start(STAGE.open(run / SCORES_DIR), {"method": "spos", **evaluate.settings}, inputs)
    report("start", task="rate spos", total=len(wanted))
    began = time.time()
    for choices in wanted:
        key = choices_key(choices)
        if key not in done:
            params, macs = counts(choices)
            done[key] = {
                "choices": [[c, list(p)] for c, p in choices],
                **evaluate(choices),
                "params": params,
                "macs": macs,
            }
            _write(run, evaluate.settings, done)
        report("advance", task="rate spos", status=f"top-1 {done[key]['top1']:.1f}%")
    rated = sorted((done[choices_key(c)] for c in wanted), key=lambda e: (-e["top1"], e["loss"]))
    _write(run, evaluate.settings, done)
    runs.finish_run(
        run / SCORES_DIR, [RATINGS_FILE.name], {"rated": len(rated), "best_top1": rated[0]["top1"]}
    )
    return {
        "settings": evaluate.settings,
        "archs": rated,
        "seconds": round(time.time() - began, 2),
        "file": str(ratings_path(run)),
    }


def _existing(run: Path, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    path = ratings_path(run)
    if not path.is_file():
        return {}
    data = io.read_json(path, "SPOS ratings")
    if data.get("format") != RATINGS_FORMAT or data.get("settings") != settings:
        return {}
    return {choices_key([(c, tuple(p)) for c, p in e["choices"]]): e for e in data["archs"]}


def _write(run: Path, settings: dict[str, Any], done: dict[str, dict[str, Any]]) -> None:
    io.write_json(
        ratings_path(run),
        {
            "format": RATINGS_FORMAT,
            "version": 1,
            "settings": settings,
            "archs": list(done.values()),
        },
    )


def fitness_of(evaluate: Callable[[list[Choice]], dict[str, float]]) -> Callable:
    """An evolution fitness: top-1 error in percent (lower is better), with top-1 and loss."""

    def fitness(choices: list[Choice]) -> tuple[float, dict[str, float]]:
        result = evaluate(choices)
        return 100.0 - result["top1"], result

    return fitness

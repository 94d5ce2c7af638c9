"""The score lists: the one owner of `RUN/scores/block_{k}.npz`, written by `rate`, read by
`search` and the benchmarks (numpy only: a latency search imports no torch).

A list holds every rated (distinct) path of one block: `cells` (n,), `paths` (n, max_layers,
padded with -1) and `scores` (n; lower is better). Reading checks it against the space.
"""

from __future__ import annotations

import io as _io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnatool.arch.space import Choice, SearchSpace, load_space
from dnatool.errors import BadInput
from dnatool.utils import io, runs

SCORES_DIR = "scores"
STAGE = runs.Stage("rate", (), "scores")  # rating again replaces the scores


@dataclass(frozen=True)
class ScoreList:
    """Every rated path of one block: `cells` (n,), `paths` (n, max_layers, -1 padded), `scores`."""

    cells: np.ndarray
    paths: np.ndarray
    scores: np.ndarray

    def choice(self, i: int) -> Choice:
        return int(self.cells[i]), tuple(int(op) for op in self.paths[i] if op >= 0)

    def score_of(self, choice: Choice) -> float:
        """The rated score of one (cell, path); KeyError when it is not listed."""
        cell, path = choice
        row = np.array(list(path) + [-1] * (self.paths.shape[1] - len(path)))
        match = np.flatnonzero((self.cells == cell) & (self.paths == row).all(axis=1))
        if len(match) != 1:
            raise KeyError(choice)
        return float(self.scores[match[0]])


def scores_path(run: str | Path, k: int) -> Path:
    return Path(run) / SCORES_DIR / f"block_{k}.npz"


def write_score_list(run: str | Path, k: int, lst: ScoreList) -> Path:
    """Atomic write: a kill leaves the previous complete list or the new one."""
    buffer = _io.BytesIO()
    np.savez(
        buffer,
        cells=np.asarray(lst.cells, dtype=np.int64),
        paths=np.asarray(lst.paths, dtype=np.int64),
        scores=np.asarray(lst.scores, dtype=np.float64),
    )
    return io.write_bytes(scores_path(run, k), buffer.getvalue())


def run_space(run_dir: str | Path, override: str | None = None) -> SearchSpace:
    """The space of a run: `--space` if given, else `recipe.space` of its manifest; refused in
    one line when it is not the space the run recorded (its digest) at training time."""
    from dnatool.utils.runs import read_manifest

    manifest = read_manifest(run_dir)
    if override:
        space = load_space(override)
    else:
        recipe = manifest.get("recipe") or {}
        ref = recipe.get("space") if isinstance(recipe, dict) else None
        if isinstance(ref, dict):
            ref = ref.get("name") or ref.get("path")
        if not isinstance(ref, str) or not ref:
            raise BadInput(f"{Path(run_dir) / 'manifest.json'} names no recipe.space; pass --space")
        space = load_space(ref)
    recorded = manifest.get("space") or {}
    if recorded.get("digest") and recorded["digest"] != space.digest:
        raise BadInput(
            f"space {space.name!r} (digest {space.digest}) is not the space run {run_dir} was "
            f"trained on ({recorded.get('name')!r}, digest {recorded['digest']})"
        )
    return space


def load_score_lists(run_dir: str | Path, space: SearchSpace) -> list[ScoreList]:
    """One checked score list per block of `space`."""
    return [load_score_list(scores_path(run_dir, k), space, k) for k in range(len(space.blocks))]


def load_score_list(path: Path, space: SearchSpace, k: int) -> ScoreList:
    if not path.is_file():
        raise BadInput(f"score list {path} not found (run `dnatool rate` on the run first)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: np.asarray(data[name]) for name in ("cells", "paths", "scores")}
    except KeyError as exc:
        raise BadInput(f"score list {path} lacks array {exc.args[0]}") from None
    except Exception as exc:  # noqa: BLE001 - a cut or empty file fails anywhere in zipfile /
        # numpy (BadZipFile, EOFError, zlib.error, ...): each is the same one-line refusal
        raise BadInput(
            f"score list {path} is not a readable .npz file ({_first_line(exc)}); "
            "run `dnatool rate` on the run again"
        ) from None
    return check_score_list(ScoreList(**arrays), space, k, str(path))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def check_score_list(lst: ScoreList, space: SearchSpace, k: int, where: str) -> ScoreList:
    """Shapes, ranges, padding and uniqueness: a bad list is refused with the block and row."""
    block = space.blocks[k]
    cells, paths, scores = lst.cells, lst.paths, lst.scores
    if (
        cells.ndim != 1
        or paths.ndim != 2
        or scores.ndim != 1
        or not len(cells) == len(paths) == len(scores)
    ):
        raise BadInput(
            f"{where}: cells (n), paths (n x layers) and scores (n) must have matching lengths"
        )
    if len(cells) == 0:
        raise BadInput(f"{where}: empty score list")
    if not np.issubdtype(cells.dtype, np.integer) or not np.issubdtype(paths.dtype, np.integer):
        raise BadInput(f"{where}: cells and paths must be integer arrays")
    scores = scores.astype(np.float64)
    if not np.isfinite(scores).all():
        raise BadInput(
            f"{where}: row {int(np.flatnonzero(~np.isfinite(scores))[0])} has a non-finite score"
        )
    if cells.min() < 0 or cells.max() >= len(block.cells):
        raise BadInput(f"{where}: cell index out of range (block {k} has {len(block.cells)} cells)")
    layers = np.array([c.layers for c in block.cells])[cells]
    width = paths.shape[1]
    if width < layers.max():
        raise BadInput(f"{where}: paths have {width} columns, cells need up to {layers.max()}")
    col = np.arange(width)[None, :]
    expected_used = col < layers[:, None]
    bad = np.where(expected_used, (paths < 0) | (paths >= len(block.ops)), paths != -1).any(axis=1)
    if any(cell.options for cell in block.cells):  # a fabric: ops allowed per layer's scale
        allowed = np.zeros((len(block.cells), width, len(block.ops)), dtype=bool)
        for c in range(len(block.cells)):
            for d, options in enumerate(block.layer_options(c)):
                allowed[c, d, list(options)] = True
        ops = np.clip(paths, 0, len(block.ops) - 1)
        bad |= (expected_used & ~allowed[cells[:, None], col, ops]).any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise BadInput(
            f"{where}: row {row} path {paths[row].tolist()} does not fit cell {int(cells[row])}"
        )
    rows = np.concatenate([cells[:, None], paths], axis=1)
    if len(np.unique(rows, axis=0)) != len(rows):
        raise BadInput(f"{where}: the same (cell, path) is listed twice")
    return ScoreList(cells.astype(np.int64), paths.astype(np.int64), scores)

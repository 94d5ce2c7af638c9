"""SYNTHETIC score lists and latency table, for tests, the search benchmark and fixtures.

Nothing here is measured. The score lists have the shape `rate` writes (every path of every cell,
relative-L1-like values that fall with capacity, plus noise); the latency table prices each layer
from its analytic MACs with a per-layer overhead and a kernel-size penalty. Every artifact written
from here says `synthetic` in it.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np

from dnatool.arch.paths import all_paths, grid_arrays
from dnatool.arch.space import Choice, Layer, SearchSpace
from dnatool.utils import io

LABEL = "SYNTHETIC: generated, not measured"


def synthetic_scores(space: SearchSpace, k: int, paths: np.ndarray, seed: int = 0) -> np.ndarray:
    """Relative-L1-like scores: lower for more capacity (kernel, expansion, depth), with noise."""
    rng = np.random.default_rng([seed, k])
    ops = space.blocks[k].ops
    capacity = np.array([math.log(op.kernel**2 * op.exp) for op in ops])
    capacity = (capacity - capacity.min()) / max(np.ptp(capacity), 1e-9) + 0.5
    per_layer = np.where(
        paths >= 0, capacity[np.maximum(paths, 0)] * rng.uniform(0.8, 1.2, paths.shape), 0.0
    )
    total = per_layer.sum(axis=1) + 0.3 * per_layer[:, 0]
    base = 0.3 + 0.1 * k
    return (
        base * (0.5 + 0.5 * np.exp(-total / 3.0)) * (1.0 + 0.03 * rng.standard_normal(len(paths)))
    )


def write_synthetic_run(
    run_dir: str | Path, space: SearchSpace, seed: int = 0, space_ref: str | None = None
) -> Path:
    """A run directory with SYNTHETIC score lists in `rate`'s format and a manifest naming it."""
    from dnatool.utils.runs import finish_run, start_run

    run_dir = Path(run_dir)
    start_run(
        run_dir,
        "train",
        recipe={"space": space_ref or space.name, "synthetic": LABEL},
        space=space,
    )
    for k in range(len(space.blocks)):
        cells, paths = all_paths(space, k)
        scores = synthetic_scores(space, k, paths, seed)
        io.atomic_write(
            run_dir / "scores" / f"block_{k}.npz",
            lambda f, c=cells, p=paths, s=scores: np.savez(
                f, cells=c, paths=p, scores=s, synthetic=np.array(LABEL)
            ),
        )
    finish_run(
        run_dir, [f"scores/block_{k}.npz" for k in range(len(space.blocks))], {"synthetic": True}
    )
    return run_dir


class SyntheticLatencyTable:
    """SYNTHETIC latency: analytic MACs / throughput + per-layer overhead, kernel penalty, jitter."""

    synthetic = True
    header = {"synthetic": True, "device": "synthetic per-op model", "note": LABEL}

    def __init__(
        self, macs_per_ms: float = 2.5e7, overhead_ms: float = 0.02, seed: int = 0
    ) -> None:
        self.macs_per_ms, self.overhead_ms, self.seed = macs_per_ms, overhead_ms, seed
        self._cache: dict[tuple, float] = {}

    def layer_ms(
        self, in_chs: int, out: int, kernel: int, exp: float, stride: int, size: int
    ) -> float:
        key = (in_chs, out, kernel, exp, stride, size)
        if key not in self._cache:
            mid = in_chs * exp
            out_size = math.ceil(size / stride)
            macs = size * size * in_chs * mid + out_size**2 * mid * (kernel**2 + out)
            jitter = 1.0 + 0.1 * (zlib.crc32(repr((self.seed, key)).encode()) / 2**32 - 0.5)
            penalty = 1.0 + 0.04 * (kernel - 3)
            self._cache[key] = (self.overhead_ms + macs * penalty / self.macs_per_ms) * jitter
        return self._cache[key]

    def _layer_ms(self, layer: Layer) -> float:
        spec = layer.spec
        return self.layer_ms(
            layer.in_width, spec.out, spec.kernel, spec.exp, spec.stride, layer.in_res
        )

    def check_space(self, space: SearchSpace) -> None:
        """A SYNTHETIC table prices any space."""

    def path_latency_ms(
        self, space: SearchSpace, k: int, choice: Choice, in_width: int | None = None
    ) -> float:
        total = 0.0
        for layer in space.path_layers(k, choice, in_width):
            total += self._layer_ms(layer)
        return total

    def layer_latency_ms(self, space: SearchSpace, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Every layer of block k's grid (`arch.paths.grid_arrays`)."""
        return grid_arrays(space, k, self._layer_ms)

    def layer_costs(self, space: SearchSpace, k: int) -> None:
        """No params / MACs: search counts them from timm's modules."""
        return None

    def fixed_costs(self, space: SearchSpace, width: int | None = None) -> None:
        return None

    def stem_latency_ms(self, space: SearchSpace) -> float:
        return 0.75 * (space.resolution / 224) ** 2 + 5 * self.overhead_ms

    def head_latency_ms(self, space: SearchSpace, width: int | None = None) -> float:
        """Half the fixed cost after the narrowest last width, growing with the width."""
        widths = space.in_widths(len(space.blocks))
        scale = space.head_input(width)[0] / widths[0]
        return (0.75 * (space.resolution / 224) ** 2 + 5 * self.overhead_ms) * scale

    def fixed_latency_ms(self, space: SearchSpace, width: int | None = None) -> float:
        return self.stem_latency_ms(space) + self.head_latency_ms(space, width)


def synthetic_score_lists(space: SearchSpace, seed: int = 0) -> list:
    """In-memory SYNTHETIC score lists (what `write_synthetic_run` stores)."""
    from dnatool.rate.score_lists import ScoreList

    lists = []
    for k in range(len(space.blocks)):
        cells, paths = all_paths(space, k)
        lists.append(ScoreList(cells, paths, synthetic_scores(space, k, paths, seed)))
    return lists


def write_synthetic_lut(path: str | Path, space: SearchSpace, seed: int = 0) -> Path:
    """A complete latency table file in `dnatool profile`'s format with SYNTHETIC entries (for
    tests and fixtures where no device was profiled); its header says `synthetic`."""
    from dnatool.profile.lut import LatencyTable, new_header, space_keys

    model = SyntheticLatencyTable(seed=seed)
    device = {
        "backend": "synthetic",
        "cpu": "synthetic",
        "threads": 1,
        "batch": 1,
        "precision": "fp32",
    }
    header = {
        **new_header(space, device, {"synthetic": LABEL}),
        "complete": True,
        "synthetic": True,
        "note": LABEL,
    }
    entries = {}
    for key, (k, spec, width, res) in space_keys(space).items():
        if spec is not None:
            mean = model.layer_ms(width, spec.out, spec.kernel, spec.exp, spec.stride, res)
        elif k < 0:
            mean = model.stem_latency_ms(space)
        else:
            mean = model.head_latency_ms(space, width)
        entries[key] = {"mean": mean, "std": 0.0, "count": 1}
    return LatencyTable(Path(path), header, entries).save()

"""Search spaces: blocks -> cells (depth, width) -> layers -> candidate ops; all their geometry.

The DNA space (CVPR 2020, Sec. 4.1) cuts an EfficientNet-like network into blocks; each block holds
several cells "with different channel numbers / layer counts", each layer of a cell picks one
candidate op. A choice for block k is `(cell_index, path)` with `path` one op index per layer.
Spaces are YAML data (`spaces/*.yaml` next to this module, or any YAML file of the same schema).

This module owns the geometry, once: `layer_spec` (op -> layer), `path_layers` (the width /
resolution walk), `head_input`, and the interface states `in_widths(k)`: with cells of different
widths, block k+1's first layer depends on block k's choice, and search solves that coupling.
Identical declared cells are merged (one module, trained and scored once); `size` keeps the
paper's count and `distinct` counts distinct networks.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dnatool.arch.ops import Op, out_resolution, parse_ops
from dnatool.arch.spec import ArchSpec, BlockSpec, check_block, parse_block, stride_stages
from dnatool.errors import BadInput

SPACES_DIR = Path(__file__).with_name("spaces")
SCHEMA_VERSIONS = (1, 2)
Choice = tuple[int, tuple[int, ...]]


@dataclass(frozen=True)
class Fabric:
    """HyTra's resolution fabric (BossNAS, ICCV 2021, Sec. 4 and appendix): scale i runs at the
    resolution entering block 0 halved i times, with width `widths[i]` (widths tie states to
    scales); every layer keeps its input's scale or halves it (stride 2) until the last scale;
    `ops[i]` are the op indices a layer whose input is at scale i may take (the paper allows
    ResAtt only at the last two scales; counting by the input's scale reproduces its space size);
    `ends` are the scales a network may end at (the head's); `starts` the scales its first choice
    layer may take its input at, reached from scale 0 by `downsample` layers (op index) opening
    block 0's cells ("the input can be further down-sampled to different scales")."""

    widths: tuple[int, ...]
    ops: tuple[tuple[int, ...], ...]
    ends: tuple[int, ...] = ()
    starts: tuple[int, ...] = (0,)
    downsample: int | None = None


@dataclass(frozen=True)
class Cell:
    """A cell: `layers` layers of width `width`; `count` declared cells it stands for (identical
    cells are merged into one, so each distinct network is trained and scored once). A fabric
    cell is entered at scale `in_scale` only, its layer d outputs scale `scales[d]` at width
    `widths[d]` and picks one of `options[d]` (op indices); other cells take any input state and
    every op at every layer."""

    layers: int
    width: int
    count: int = 1
    in_scale: int = -1
    scales: tuple[int, ...] = ()
    options: tuple[tuple[int, ...], ...] = ()
    widths: tuple[int, ...] = ()


@dataclass(frozen=True)
class Block:
    """A searchable block: first-layer stride, its distinct cells and candidate ops."""

    stride: int
    cells: tuple[Cell, ...]
    ops: tuple[Op, ...]

    def layer_options(self, c: int) -> tuple[tuple[int, ...], ...]:
        """The op indices each layer of cell c may take (every op, except in fabric cells)."""
        cell = self.cells[c]
        return cell.options or (tuple(range(len(self.ops))),) * cell.layers

    def cell_paths(self, c: int) -> int:
        return math.prod(len(o) for o in self.layer_options(c))

    @property
    def paths(self) -> int:
        """Distinct paths: every path of every distinct cell."""
        return sum(self.cell_paths(c) for c in range(len(self.cells)))

    @property
    def size(self) -> int:
        """Paths as the paper counts them, each declared (possibly identical) cell separately."""
        return sum(cell.count * self.cell_paths(c) for c, cell in enumerate(self.cells))

    @property
    def widths(self) -> tuple[int, ...]:
        """The output widths the block can end in: the interface states of the next block."""
        return tuple(sorted({cell.width for cell in self.cells}))


@dataclass(frozen=True)
class Layer:
    """One layer of a path with its geometry: the block string, input width and input size."""

    spec: BlockSpec
    in_width: int
    in_res: int

    @property
    def out_width(self) -> int:
        return self.spec.out

    @property
    def out_res(self) -> int:
        return out_resolution(self.in_res, self.spec.stride)


@dataclass(frozen=True)
class LayerGrid:
    """Every distinct layer of one block (`SearchSpace.layer_grid`): `first[s][c][op]` opens cell
    c on input state s, `later[c][d - 1][op]` is layer d >= 1 of cell c (one row per depth, so a
    cell whose layers differ by depth is described as exactly as one whose layers repeat). None
    where there is no such layer: a fabric cell entered from another scale, an op not allowed at
    a layer's scale."""

    first: tuple[tuple[tuple[Layer | None, ...], ...], ...]
    later: tuple[tuple[tuple[Layer | None, ...], ...], ...]


@dataclass(frozen=True)
class SearchSpace:
    name: str
    resolution: int
    num_classes: int
    in_chans: int
    stem: int
    head: int
    act: str
    se: float
    fixed: tuple[tuple[BlockSpec, ...], ...]
    blocks: tuple[Block, ...]
    description: str = ""
    version: int = 2
    fabric: Fabric | None = None

    def __hash__(self) -> int:
        return self._hash

    @functools.cached_property
    def _hash(self) -> int:
        """Spaces key caches (LUT keys, costs) in hot loops: hash the nested tuples once."""
        return hash(
            (
                self.name,
                self.resolution,
                self.num_classes,
                self.in_chans,
                self.stem,
                self.head,
                self.act,
                self.se,
                self.fixed,
                self.blocks,
                self.fabric,
            )
        )

    @property
    def size(self) -> int:
        """Number of architectures as the paper counts them (identical cells counted apart)."""
        if self.fabric is not None:
            return self.distinct
        return math.prod(block.size for block in self.blocks)

    @property
    def distinct(self) -> int:
        """Number of distinct architectures: what is trained, rated and searched."""
        if self.fabric is not None:
            return self._completions[0][self.in_widths(0)[0]]
        return math.prod(block.paths for block in self.blocks)

    @functools.cached_property
    def _completions(self) -> tuple[dict[int, int], ...]:
        """Per block k and input width: the number of ways to finish the network from there
        (a fabric's cells are entered from one scale only, so counts are not plain products)."""
        counts: list[dict[int, int]] = [{w: 1 for w in self.in_widths(len(self.blocks))}]
        for k in reversed(range(len(self.blocks))):
            block, nxt = self.blocks[k], counts[0]
            counts.insert(
                0,
                {
                    w: sum(
                        block.cell_paths(c) * nxt[cell.width]
                        for c, cell in enumerate(block.cells)
                        if w in self.cell_in_widths(k, c)
                    )
                    for w in self.in_widths(k)
                },
            )
        return tuple(counts)

    def cell_in_widths(self, k: int, c: int) -> tuple[int, ...]:
        """The input states cell c of block k can be entered from (a fabric cell: one)."""
        cell = self.blocks[k].cells[c]
        if self.fabric is None or cell.in_scale < 0:
            return self.in_widths(k)
        return self.in_widths(0) if k == 0 else (self.fabric.widths[cell.in_scale],)

    def scale_resolution(self, scale: int, resolution: int | None = None) -> int:
        """Spatial size of a fabric scale: block 0's input size halved `scale` times."""
        size = self.block_in_resolution(0, resolution)
        for _ in range(scale):
            size = out_resolution(size, 2)
        return size

    @property
    def tokens(self) -> bool:
        """A ViT space: its blocks are transformer layers on one token grid."""
        return any(op.type == "vit" for block in self.blocks for op in block.ops)

    @property
    def coupled(self) -> bool:
        """True when a block's (or the head's) input width depends on the previous choice."""
        return any(len(self.in_widths(k)) > 1 for k in range(1, len(self.blocks) + 1))

    def in_widths(self, k: int) -> tuple[int, ...]:
        """The widths that can enter block k (k = len(blocks): the head): its interface states."""
        if k == 0:
            return (self.fixed[-1][-1].out if self.fixed else self.stem,)
        return self.blocks[k - 1].widths

    def block_in_width(self, k: int) -> int:
        """THE width entering block k when there is only one (refused on a coupled interface)."""
        widths = self.in_widths(k)
        if len(widths) != 1:
            raise BadInput(
                f"block {k} of space {self.name!r} has several input widths {list(widths)}; "
                "give the previous block's choice"
            )
        return widths[0]

    def block_in_resolution(
        self, k: int, resolution: int | None = None, width: int | None = None
    ) -> int:
        """Spatial size of block k's input (k = len(blocks): the head's) at `resolution`; in a
        fabric it is the input state's (`width`, needed when several can enter block k)."""
        size = out_resolution(resolution or self.resolution, 2)
        for stage in self.fixed:
            for block in stage:
                size = out_resolution(size, block.stride)
        if self.fabric is not None:
            if k == 0:
                return size
            scale = self.fabric.widths.index(self.resolve_in_width(k, width))
            return self.scale_resolution(scale, resolution)
        for block in self.blocks[:k]:
            size = out_resolution(size, block.stride)
        return size

    def block_out_resolution(self, k: int, resolution: int | None = None) -> int:
        return self.block_in_resolution(k + 1, resolution)

    def layer_spec(self, k: int, cell: int, op: int, depth: int) -> BlockSpec:
        """THE op -> layer mapping: op `op` of block k as layer `depth` of cell `cell` (depth 0
        opens the cell and carries the block's stride; in a fabric a layer strides when its
        scale is one below its input's)."""
        block = self.blocks[k]
        c = block.cells[cell]
        if self.fabric is None:
            return block.ops[op].layer(
                out=c.width, stride=block.stride if depth == 0 else 1, se=self.se
            )
        before = c.in_scale if depth == 0 else c.scales[depth - 1]
        return block.ops[op].layer(
            out=c.widths[depth],
            stride=2 if c.scales[depth] > before else 1,
            se=self.se,
        )

    def layer(self, k: int, cell: int, op: int, depth: int, in_width: int | None = None) -> Layer:
        """One layer with its input: the first layer of a cell takes the block's input (width
        `in_width`, one of `cell_in_widths(k, cell)`), a later one the previous layer's output."""
        spec = self.layer_spec(k, cell, op, depth)
        c = self.blocks[k].cells[cell]
        if self.fabric is not None:
            if depth == 0:
                width = self.resolve_cell_in_width(k, cell, in_width)
                return Layer(spec, width, self.scale_resolution(c.in_scale))
            scale = c.scales[depth - 1]
            return Layer(spec, c.widths[depth - 1], self.scale_resolution(scale))
        res = self.block_in_resolution(k)
        if depth == 0:
            return Layer(spec, self.resolve_in_width(k, in_width), res)
        return Layer(spec, c.width, out_resolution(res, self.blocks[k].stride))

    def path_layers(self, k: int, choice: Choice, in_width: int | None = None) -> tuple[Layer, ...]:
        """THE width / resolution walk: the layers of one path of block k with their inputs."""
        cell_index, path = self._check_choice(k, choice)
        return self._walk(k, cell_index, path, self.resolve_cell_in_width(k, cell_index, in_width))

    @functools.lru_cache(maxsize=65536)  # noqa: B019 (spaces are immutable and few)
    def _walk(self, k: int, cell: int, path: tuple[int, ...], width: int) -> tuple[Layer, ...]:
        return tuple(self.layer(k, cell, op, i, width) for i, op in enumerate(path))

    def layer_grid(self, k: int) -> LayerGrid:
        """Every layer of block k: `first[s][c][op]` opens cell c on input state s
        (`in_widths(k)[s]`), `later[c][d - 1][op]` is layer d of cell c (no rows for one-layer
        cells). A layer's cost depends on nothing else, so per-path costs are sums over it."""
        block = self.blocks[k]
        ops = range(len(block.ops))

        def at(c: int, op: int, d: int, w: int | None = None) -> Layer | None:
            if op not in block.layer_options(c)[d] or (
                d == 0 and w not in self.cell_in_widths(k, c)
            ):
                return None
            return self.layer(k, c, op, d, w)

        first = tuple(
            tuple(tuple(at(c, op, 0, w) for op in ops) for c in range(len(block.cells)))
            for w in self.in_widths(k)
        )
        later = tuple(
            tuple(tuple(at(c, op, d) for op in ops) for d in range(1, cell.layers))
            for c, cell in enumerate(block.cells)
        )
        return LayerGrid(first, later)

    def layer_blocks(self, k: int, choice: Choice) -> list[BlockSpec]:
        """The block strings of one path of block k, one per layer (stride on the first)."""
        cell_index, path = self._check_choice(k, choice)
        return [self.layer_spec(k, cell_index, op, i) for i, op in enumerate(path)]

    def out_width(self, k: int, choice: Choice) -> int:
        """The width block k ends in under `choice` (its cell's width)."""
        return self.blocks[k].cells[self._check_choice(k, choice)[0]].width

    def chain_widths(self, choices: list[Choice]) -> list[int]:
        """Input width of every block and, last, of the head, for one architecture (or the
        first blocks of one); refused when a fabric cell cannot follow the previous block."""
        widths = [self.in_widths(0)[0]]
        for k, choice in enumerate(choices):
            out = self.out_width(k, choice)
            self.resolve_cell_in_width(k, choice[0], widths[-1])
            widths.append(out)
        return widths

    def head_input(self, width: int | None = None) -> tuple[int, int]:
        """THE head input: (width, size) after the last block."""
        last = len(self.blocks)
        width = self.resolve_in_width(last, width)
        return width, self.block_in_resolution(last, width=width)

    def resolve_cell_in_width(self, k: int, cell: int, in_width: int | None) -> int:
        """`in_width` checked against the states cell `cell` of block k can be entered from."""
        allowed = self.cell_in_widths(k, cell)
        if in_width is None and len(allowed) == 1:
            return allowed[0]
        width = self.resolve_in_width(k, in_width)
        if width not in allowed:
            raise BadInput(
                f"cell {cell} of block {k} of space {self.name!r} is entered at width "
                f"{allowed[0]}, not {width}: the fabric cannot take that route"
            )
        return width

    def resolve_in_width(self, k: int, in_width: int | None) -> int:
        """`in_width` checked against block k's interface states (None: the only one there is)."""
        if in_width is None:
            return self.block_in_width(k)
        if in_width not in self.in_widths(k):
            raise BadInput(
                f"width {in_width} cannot enter block {k} of space {self.name!r} "
                f"(possible: {list(self.in_widths(k))})"
            )
        return in_width

    def _check_choice(self, k: int, choice: Choice) -> Choice:
        if not 0 <= k < len(self.blocks):
            raise BadInput(f"block index {k} out of range for space {self.name!r}")
        cell_index, path = choice
        block = self.blocks[k]
        if not 0 <= cell_index < len(block.cells):
            raise BadInput(f"cell {cell_index} out of range for block {k} of space {self.name!r}")
        if len(path) != block.cells[cell_index].layers or any(
            op not in options for op, options in zip(path, block.layer_options(cell_index))
        ):
            raise BadInput(
                f"path {list(path)} does not fit cell {cell_index} of block {k} of {self.name!r}"
            )
        return cell_index, tuple(path)

    def to_arch(self, choices: list[Choice], name: str = "searched") -> ArchSpec:
        """The standalone network of one choice per block."""
        if len(choices) != len(self.blocks):
            raise BadInput(
                f"space {self.name!r} has {len(self.blocks)} blocks, got {len(choices)} choices"
            )
        self.chain_widths(choices)
        stages = list(self.fixed)
        for k, choice in enumerate(choices):
            stages += stride_stages(self.layer_blocks(k, choice))  # a fabric's halving layers
        meta = {"space": self.name, "choices": [[c, list(p)] for c, p in choices]}
        return ArchSpec(
            stages=tuple(stages),
            stem=self.stem,
            head=self.head,
            act=self.act,
            resolution=self.resolution,
            num_classes=self.num_classes,
            in_chans=self.in_chans,
            name=name,
            meta=meta,
        )

    def express(self, other: SearchSpace, choices: list[Choice]) -> list[Choice]:
        """The choices of this space that build the same network as `choices` of `other` (a
        subspace: fewer ops or cells), so a supernet of this space can score networks drawn from
        `other`; BadInput naming the first block this space cannot build."""
        if other.digest == self.digest:
            return [self._check_choice(k, c) for k, c in enumerate(choices)]
        target = other.to_arch(choices)
        if len(self.blocks) != len(other.blocks) or self.fabric or other.fabric:
            raise BadInput(f"space {self.name!r} cannot express networks of {other.name!r}")
        mapped = []
        for k, choice in enumerate(choices):
            layers = other.layer_blocks(k, choice)
            found = next(
                (
                    (c, path)
                    for c in range(len(self.blocks[k].cells))
                    if self.blocks[k].cells[c].layers == len(layers)
                    and (path := self._path_of(k, c, layers)) is not None
                ),
                None,
            )
            if found is None:
                raise BadInput(
                    f"space {self.name!r} has no path for block {k} of a {other.name!r} "
                    f"network ({' '.join(b.to_str() for b in layers)})"
                )
            mapped.append(found)
        built = self.to_arch(mapped)
        if dataclasses.replace(built, name="", meta={}) != dataclasses.replace(
            target, name="", meta={}
        ):
            raise BadInput(
                f"space {self.name!r} cannot express networks of {other.name!r} "
                "(fixed layers, stem, head or input differ)"
            )
        return mapped

    def _path_of(self, k: int, cell: int, layers: list[BlockSpec]) -> tuple[int, ...] | None:
        """The ops of cell `cell` of block k whose layers are `layers`, or None."""
        options = self.blocks[k].layer_options(cell)
        path = []
        for d, layer in enumerate(layers):
            op = next((o for o in options[d] if self.layer_spec(k, cell, o, d) == layer), None)
            if op is None:
                return None
            path.append(op)
        return tuple(path)

    def sample(self, rng: Any) -> list[Choice]:
        """One uniformly random distinct architecture (cells weighted by their number of paths)."""
        if self.fabric is not None:
            return self._sample_fabric(rng)
        choices = []
        for block in self.blocks:
            weights = [block.cell_paths(c) for c in range(len(block.cells))]
            cell_index = int(rng.choice(len(block.cells), p=[w / sum(weights) for w in weights]))
            cell = block.cells[cell_index]
            if cell.options:
                path = tuple(int(o[rng.integers(0, len(o))]) for o in cell.options)
            else:
                path = tuple(int(v) for v in rng.integers(0, len(block.ops), cell.layers))
            choices.append((cell_index, path))
        return choices

    def _sample_fabric(self, rng: Any) -> list[Choice]:
        """Uniform over the fabric's routes: a cell is drawn in proportion to its paths times
        the completions from where it ends."""
        choices: list[Choice] = []
        width = self.in_widths(0)[0]
        for k, block in enumerate(self.blocks):
            nxt = self._completions[k + 1]
            weights = np.array(
                [
                    block.cell_paths(c) * nxt[cell.width]
                    if width in self.cell_in_widths(k, c)
                    else 0
                    for c, cell in enumerate(block.cells)
                ],
                dtype=np.float64,
            )
            c = int(rng.choice(len(block.cells), p=weights / weights.sum()))
            path = tuple(int(o[rng.integers(0, len(o))]) for o in block.layer_options(c))
            choices.append((c, path))
            width = block.cells[c].width
        return choices

    def example(self, end_width: int | None = None) -> list[Choice]:
        """Some architecture (ending in `end_width` when given): first cells, first ops, that
        the fabric allows (modules whose shape depends only on where a route ends use it)."""
        last = len(self.blocks)
        ends = (
            self.in_widths(last) if end_width is None else (self.resolve_in_width(last, end_width),)
        )
        reach: list[set[int]] = [set(ends)]
        for k in reversed(range(len(self.blocks))):
            reach.insert(
                0,
                {
                    w
                    for c, cell in enumerate(self.blocks[k].cells)
                    if cell.width in reach[0]
                    for w in self.cell_in_widths(k, c)
                },
            )
        width, choices = self.in_widths(0)[0], []
        for k, block in enumerate(self.blocks):
            c = next(
                c
                for c, cell in enumerate(block.cells)
                if width in self.cell_in_widths(k, c) and cell.width in reach[k + 1]
            )
            choices.append((c, tuple(o[0] for o in block.layer_options(c))))
            width = block.cells[c].width
        return choices

    def with_cells(self, k: int, cells: tuple[Cell, ...]) -> SearchSpace:
        """This space with block k's cells replaced (benchmarks and tests of one cell)."""
        blocks = list(self.blocks)
        blocks[k] = dataclasses.replace(blocks[k], cells=tuple(cells))
        return dataclasses.replace(self, blocks=tuple(blocks))

    @functools.cached_property
    def digest(self) -> str:
        """A short hash of everything that shapes the networks (tables and runs record it)."""
        data = json.dumps(
            {
                **self.describe(),
                "fixed": [[b.to_str() for b in s] for s in self.fixed],
                "stem": self.stem,
                "head": self.head,
                "act": self.act,
                "se": self.se,
                "num_classes": self.num_classes,
                "in_chans": self.in_chans,
                **({"fabric": self._fabric_dict()} if self.fabric else {}),
            },
            sort_keys=True,
        )
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    def _fabric_dict(self) -> dict[str, Any]:
        assert self.fabric is not None
        ops = self.blocks[0].ops
        return {
            "widths": list(self.fabric.widths),
            "resolutions": [self.scale_resolution(i) for i in range(len(self.fabric.widths))],
            "ops": [[ops[o].name for o in allowed] for allowed in self.fabric.ops],
            "ends": list(self.fabric.ends),
        }

    def describe(self) -> dict[str, Any]:
        """The `space show --json` object (contracts.md)."""
        return {
            "name": self.name,
            "size": self.size,
            "distinct": self.distinct,
            "coupled": self.coupled,
            "resolution": self.resolution,
            **({"fabric": self._fabric_dict()} if self.fabric else {}),
            "blocks": [
                {
                    "cells": [
                        {
                            "layers": c.layers,
                            "width": c.width,
                            "count": c.count,
                            **(
                                {"in_scale": c.in_scale, "scales": list(c.scales)}
                                if c.scales
                                else {}
                            ),
                            **(
                                {"ops": [[b.ops[o].name for o in opts] for opts in c.options]}
                                if c.options and not c.scales
                                else {}
                            ),
                        }
                        for c in b.cells
                    ],
                    "ops": [op.name for op in b.ops],
                    "op_type": b.ops[0].type,
                    "stride": b.stride,
                    "widths": list(b.widths),
                    "in_widths": list(self.in_widths(k)),
                    "paths": b.paths,
                    "size": b.size,
                }
                for k, b in enumerate(self.blocks)
            ],
        }


def list_spaces() -> list[str]:
    return sorted(path.stem for path in SPACES_DIR.glob("*.yaml"))


def load_space(name_or_path: str) -> SearchSpace:
    """A built-in space by name, or a YAML file; unknown names get a did-you-mean."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = SPACES_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            close = difflib.get_close_matches(str(name_or_path), list_spaces(), n=1)
            hint = (
                f"; did you mean {close[0]!r}?"
                if close
                else f" (known: {', '.join(list_spaces())})"
            )
            raise BadInput(f"unknown search space {name_or_path!r}{hint}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BadInput(f"search space file {path} is not valid YAML: {exc}") from None
    return space_from_dict(data, source=str(path))


def space_from_dict(data: Any, source: str = "<dict>") -> SearchSpace:
    """A space from its YAML mapping: schema v2 (cells with their own width), or v1 (one width per
    block) which keeps loading unchanged."""
    if not isinstance(data, dict):
        raise BadInput(f"search space {source} must be a mapping")
    unknown = sorted(set(data) - SPACE_FIELDS)
    if unknown:
        raise BadInput(f"unknown field {unknown[0]!r} in search space {source}")
    version = data.get("version", 1)
    if version not in SCHEMA_VERSIONS:
        raise BadInput(
            f"search space {source} has version {version!r}; this dnatool reads "
            f"{', '.join(map(str, SCHEMA_VERSIONS))}"
        )
    try:
        default_ops = parse_ops(data["ops"])
        fabric = None
        if "fabric" in data:
            fabric = _fabric(data["fabric"], default_ops)
            fixed = [[parse_block(b) for b in stage] for stage in data.get("fixed", [])]
            entry = fixed[-1][-1].out if fixed and fixed[-1] else int(data.get("stem", 32))
            blocks = _fabric_blocks(data["blocks"], fabric, default_ops, entry)
        else:
            blocks = tuple(_block(b, default_ops, version) for b in data["blocks"])
        if not blocks:
            raise ValueError("a space needs at least one block")
        se = float(data.get("se", 0.25))
        for block in blocks:  # e.g. heads that do not divide a cell's bottleneck width
            for cell in block.cells:
                for op in block.ops:
                    check_block(op.layer(out=cell.width, stride=block.stride, se=se))
        if fabric is not None:
            for width, allowed in zip(fabric.widths, fabric.ops, strict=True):
                for op in allowed:
                    check_block(default_ops[op].layer(out=width, stride=1, se=se))
        return SearchSpace(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            resolution=int(data.get("resolution", 224)),
            num_classes=int(data.get("num_classes", 1000)),
            in_chans=int(data.get("in_chans", 3)),
            stem=int(data.get("stem", 32)),
            head=int(data.get("head", 1280)),
            act=str(data.get("act", "swish")),
            se=se,
            fixed=tuple(tuple(parse_block(s) for s in stage) for stage in data.get("fixed", [])),
            blocks=blocks,
            version=int(version),
            fabric=fabric,
        )
    except KeyError as exc:
        raise BadInput(f"search space {source} lacks field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise BadInput(f"search space {source} is malformed: {exc}") from None


SPACE_FIELDS = {
    "version",
    "name",
    "description",
    "resolution",
    "num_classes",
    "in_chans",
    "stem",
    "head",
    "act",
    "se",
    "fixed",
    "ops",
    "blocks",
    "fabric",
}


def _fabric(data: Any, ops: tuple[Op, ...]) -> Fabric:
    """`fabric: {widths: [..], ops: [[op names], ..], ends: [..], starts: [..], downsample: op}`:
    one width (and the ops of layers entered at it) per scale; the scales a network may end at
    (default: any) and start its choice layers at (default: 0; others need `downsample`)."""
    if not isinstance(data, dict):
        raise ValueError("fabric must be a mapping with `widths` (and `ops`, `ends`, `starts`)")
    unknown = sorted(set(data) - {"widths", "ops", "ends", "starts", "downsample"})
    if unknown:
        raise ValueError(f"unknown fabric field {unknown[0]!r}")
    widths = tuple(int(w) for w in data["widths"])
    if not widths or min(widths) < 1 or list(widths) != sorted(set(widths)):
        raise ValueError("fabric widths must be positive and strictly increasing (one per scale)")
    names = [op.name for op in ops]
    allowed = data.get("ops", [names] * len(widths))
    if len(allowed) != len(widths):
        raise ValueError(
            f"fabric ops must list the allowed ops of each of the {len(widths)} scales"
        )
    per_scale = []
    for scale, listed in enumerate(allowed):
        bad = [n for n in listed if n not in names]
        if bad or not listed:
            raise ValueError(
                f"fabric scale {scale} allows unknown op {bad[0]!r} (ops: {', '.join(names)})"
                if bad
                else f"fabric scale {scale} allows no op"
            )
        per_scale.append(tuple(sorted({names.index(n) for n in listed})))
    ends = tuple(sorted({int(e) for e in data.get("ends", range(len(widths)))}))
    starts = tuple(sorted({int(e) for e in data.get("starts", [0])}))
    for name, scales in (("ends", ends), ("starts", starts)):
        if not scales or scales[0] < 0 or scales[-1] >= len(widths):
            raise ValueError(f"fabric {name} must be scales 0..{len(widths) - 1}")
    down = data.get("downsample")
    if down is not None and down not in names:
        raise ValueError(f"fabric downsample {down!r} is not an op (ops: {', '.join(names)})")
    if starts != (0,) and down is None:
        raise ValueError("fabric starts beyond scale 0 need a `downsample` op")
    return Fabric(
        widths, tuple(per_scale), ends, starts, None if down is None else names.index(down)
    )


def _fabric_blocks(
    data: Any, fabric: Fabric, ops: tuple[Op, ...], entry_width: int
) -> tuple[Block, ...]:
    """A fabric space's blocks are `{layers: N}`: their cells are every route of N layers that
    keeps or halves the scale layer by layer, from each scale the block can be entered at; cells
    from which no route reaches one of the fabric's `ends` are dropped. The downsampling convs
    before a later start keep the width entering block 0 (a stem's convs); the first choice
    layer then projects to its scale's width."""
    routes: list[list[tuple[int, tuple[int, ...]]]] = []
    entry = set(fabric.starts)
    top = len(fabric.widths) - 1
    for item in data:
        if not isinstance(item, dict) or set(item) != {"layers"}:
            raise ValueError("blocks of a fabric space are {layers: N} (cells follow the fabric)")
        layers = int(item["layers"])
        if layers < 1:
            raise ValueError("fabric blocks need layers >= 1")
        cells = [
            (start, scales)
            for start in sorted(entry)
            for steps in itertools.product((0, 1), repeat=layers)
            if (scales := tuple(start + s for s in itertools.accumulate(steps)))[-1] <= top
        ]
        routes.append(cells)
        entry = {scales[-1] for _, scales in cells}
    if not routes:
        return ()
    alive = set(fabric.ends)
    for k in reversed(range(len(routes))):
        routes[k] = [(start, scales) for start, scales in routes[k] if scales[-1] in alive]
        if not routes[k]:
            raise ValueError(f"no route of the fabric reaches its ends {list(fabric.ends)}")
        alive = {start for start, _ in routes[k]}

    def cell(k: int, start: int, scales: tuple[int, ...]) -> Cell:
        options = tuple(fabric.ops[s] for s in (start, *scales[:-1]))
        widths = tuple(fabric.widths[s] for s in scales)
        if k == 0 and start:  # block 0 opens with the downsampling layers down to its start
            scales = (*range(1, start + 1), *scales)
            options = ((fabric.downsample,),) * start + options
            widths = (entry_width,) * start + widths
        return Cell(
            layers=len(scales),
            width=widths[-1],
            in_scale=0 if k == 0 else start,
            scales=scales,
            options=options,
            widths=widths,
        )

    return tuple(
        Block(stride=1, cells=tuple(cell(k, *c) for c in cells), ops=ops)
        for k, cells in enumerate(routes)
    )


def _block(data: dict[str, Any], default_ops: tuple[Op, ...], version: int) -> Block:
    """v1: `width` and cells as depths (or {layers, channels} equal to the width); v2: cells as
    {layers, width} (or depths taking the block's `width`). Identical cells are merged."""
    allowed = {"width", "stride", "cells", "ops"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"unknown block field {unknown[0]!r}")
    width = data.get("width") if version == 2 else data["width"]
    ops = parse_ops(data["ops"]) if "ops" in data else default_ops
    declared = _cells(data["cells"], width, version, len(ops))
    if not declared:
        raise ValueError("a block needs at least one cell")
    if version == 1 and any(c.width != int(width) for c in declared):
        raise ValueError(
            "all cells of a version 1 block output the block width; "
            "give cells their own width with `version: 2`"
        )
    if any(c.layers < 1 or c.width < 1 for c in declared):
        raise ValueError("cells need layers >= 1 and width >= 1")
    merged: dict[tuple[int, int, tuple[tuple[int, ...], ...]], int] = {}
    for c in declared:
        key = (c.layers, c.width, c.options)
        merged[key] = merged.get(key, 0) + 1
    cells = tuple(
        Cell(layers, w, count, options=options) for (layers, w, options), count in merged.items()
    )
    stride = int(data["stride"])
    if stride not in (1, 2):
        raise ValueError(f"block stride must be 1 or 2, got {stride}")
    return Block(stride=stride, cells=cells, ops=ops)


def _cells(data: Any, width: Any, version: int, num_ops: int) -> list[Cell]:
    """A list of cells, or a grid `{layers: [..], widths: [..], one_op: bool}`: every depth at
    every width; `one_op: true` makes one cell per op whose layers all take that op (a ViT
    space's MLP ratio chosen per cell, not per layer)."""
    if not isinstance(data, dict):
        return [_cell(c, width, version) for c in data]
    if version != 2:
        raise ValueError("a grid of cells needs `version: 2`")
    unknown = sorted(set(data) - {"layers", "widths", "one_op"})
    if unknown:
        raise ValueError(f"unknown cell grid field {unknown[0]!r} (known: layers, widths, one_op)")
    depths = [int(d) for d in data["layers"]]
    widths = [int(w) for w in data["widths"]]
    if len(set(depths)) != len(depths) or len(set(widths)) != len(widths):
        raise ValueError("a cell grid lists a depth or a width twice")
    if not bool(data.get("one_op", False)):
        return [Cell(d, w) for d in depths for w in widths]
    return [
        Cell(d, w, options=((op,),) * d) for d in depths for w in widths for op in range(num_ops)
    ]


def _cell(data: Any, width: Any, version: int) -> Cell:
    if not isinstance(data, dict):
        if width is None:
            raise ValueError("a cell given as a depth needs the block's `width`")
        return Cell(layers=int(data), width=int(width))
    key = "width" if version == 2 else "channels"
    unknown = sorted(set(data) - {"layers", key})
    if unknown:
        raise ValueError(f"unknown cell field {unknown[0]!r}")
    if key not in data and width is None:
        raise ValueError("a cell needs a `width` (or the block's `width`)")
    return Cell(layers=int(data["layers"]), width=int(data.get(key, width)))

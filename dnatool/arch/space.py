"""Search spaces: blocks -> cells (depth, width) -> layers -> candidate ops.

The DNA space (CVPR 2020, Sec. 4.1) cuts an EfficientNet-like network into blocks; each block holds
several cells that differ in depth, each layer of a cell picks one MBConv op. A choice for block k
is `(cell_index, path)` with `path` one op index per layer. Spaces are YAML data (`spaces/*.yaml`
next to this module, or any YAML file with the same schema).
"""

from __future__ import annotations

import difflib
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dnatool.arch.spec import ArchSpec, BlockSpec, parse_block
from dnatool.errors import BadInput

SPACES_DIR = Path(__file__).with_name("spaces")
Choice = tuple[int, tuple[int, ...]]


@dataclass(frozen=True)
class Op:
    """One candidate op of a layer: an inverted-residual MBConv with kernel and expansion."""

    kernel: int
    exp: float

    @property
    def name(self) -> str:
        return f"k{self.kernel}_e{self.exp:g}"


@dataclass(frozen=True)
class Cell:
    layers: int
    channels: int


@dataclass(frozen=True)
class Block:
    """A searchable block: student width and first-layer stride, its cells and candidate ops."""

    width: int
    stride: int
    cells: tuple[Cell, ...]
    ops: tuple[Op, ...]

    @property
    def size(self) -> int:
        return sum(len(self.ops) ** cell.layers for cell in self.cells)


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
            )
        )

    @property
    def size(self) -> int:
        """Number of architectures: the product over blocks of the paths of all cells."""
        return math.prod(block.size for block in self.blocks)

    def block_in_width(self, k: int) -> int:
        """Student width entering block k (the fixed stages' output for block 0)."""
        return (
            self.blocks[k - 1].width
            if k > 0
            else self.fixed[-1][-1].out
            if self.fixed
            else self.stem
        )

    def block_in_resolution(self, k: int, resolution: int | None = None) -> int:
        """Spatial size of block k's input (SAME padding, ceil) at `resolution` (default: the space's)."""
        size = math.ceil((resolution or self.resolution) / 2)
        for stage in self.fixed:
            for block in stage:
                size = math.ceil(size / block.stride)
        for block in self.blocks[:k]:
            size = math.ceil(size / block.stride)
        return size

    def block_out_resolution(self, k: int, resolution: int | None = None) -> int:
        return math.ceil(self.block_in_resolution(k, resolution) / self.blocks[k].stride)

    def layer_blocks(self, k: int, choice: Choice) -> list[BlockSpec]:
        """The block strings of one path of block k, one per layer (stride on the first)."""
        cell_index, path = self._check_choice(k, choice)
        block = self.blocks[k]
        return [
            BlockSpec(
                type="ir",
                out=block.width,
                kernel=block.ops[op].kernel,
                stride=block.stride if i == 0 else 1,
                exp=block.ops[op].exp,
                se=self.se,
            )
            for i, op in enumerate(path)
        ]

    def _check_choice(self, k: int, choice: Choice) -> Choice:
        if not 0 <= k < len(self.blocks):
            raise BadInput(f"block index {k} out of range for space {self.name!r}")
        cell_index, path = choice
        block = self.blocks[k]
        if not 0 <= cell_index < len(block.cells):
            raise BadInput(f"cell {cell_index} out of range for block {k} of space {self.name!r}")
        if len(path) != block.cells[cell_index].layers or any(
            not 0 <= op < len(block.ops) for op in path
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
        stages = list(self.fixed) + [tuple(self.layer_blocks(k, c)) for k, c in enumerate(choices)]
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

    def sample(self, rng: Any) -> list[Choice]:
        """One uniformly random architecture (cells weighted by their number of paths)."""
        choices = []
        for block in self.blocks:
            weights = [len(block.ops) ** cell.layers for cell in block.cells]
            cell_index = int(rng.choice(len(block.cells), p=[w / sum(weights) for w in weights]))
            path = tuple(
                int(v) for v in rng.integers(0, len(block.ops), block.cells[cell_index].layers)
            )
            choices.append((cell_index, path))
        return choices

    def describe(self) -> dict[str, Any]:
        """The `space show --json` object (contracts.md)."""
        return {
            "name": self.name,
            "size": self.size,
            "resolution": self.resolution,
            "blocks": [
                {
                    "cells": [{"layers": c.layers, "channels": c.channels} for c in b.cells],
                    "ops": [op.name for op in b.ops],
                    "stride": b.stride,
                    "width": b.width,
                    "paths": b.size,
                }
                for b in self.blocks
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
    if not isinstance(data, dict):
        raise BadInput(f"search space {source} must be a mapping")
    allowed = {
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
    }
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise BadInput(f"unknown field {unknown[0]!r} in search space {source}")
    try:
        default_ops = _ops(data["ops"])
        blocks = tuple(_block(b, default_ops) for b in data["blocks"])
        return SearchSpace(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            resolution=int(data.get("resolution", 224)),
            num_classes=int(data.get("num_classes", 1000)),
            in_chans=int(data.get("in_chans", 3)),
            stem=int(data.get("stem", 32)),
            head=int(data.get("head", 1280)),
            act=str(data.get("act", "swish")),
            se=float(data.get("se", 0.25)),
            fixed=tuple(tuple(parse_block(s) for s in stage) for stage in data.get("fixed", [])),
            blocks=blocks,
        )
    except KeyError as exc:
        raise BadInput(f"search space {source} lacks field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise BadInput(f"search space {source} is malformed: {exc}") from None


def _ops(data: dict[str, Any]) -> tuple[Op, ...]:
    return tuple(Op(int(k), float(e)) for k in data["kernels"] for e in data["expansions"])


def _block(data: dict[str, Any], default_ops: tuple[Op, ...]) -> Block:
    width = int(data["width"])
    cells = tuple(
        Cell(layers=int(c), channels=width)
        if not isinstance(c, dict)
        else Cell(layers=int(c["layers"]), channels=int(c.get("channels", width)))
        for c in data["cells"]
    )
    if any(c.channels != width for c in cells):
        raise ValueError("all cells of a block must output the block width (costs stay additive)")
    ops = _ops(data["ops"]) if "ops" in data else default_ops
    return Block(width=width, stride=int(data["stride"]), cells=cells, ops=ops)

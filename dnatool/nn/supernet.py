"""The block-wise supernet: Supernet -> Block -> Cell -> layers of candidate ops.

DNA (CVPR 2020, Sec. 3.3): each block holds cells of different depth and width in parallel; each layer of a
cell holds every candidate op (timm blocks, the same modules the final network uses) and a path
picks one op per layer. By default (`cell_output` auto or teacher) the last layer of every cell
outputs the teacher's width at that cut, so plain MSE applies without an adapter (as in the
released code); but then a cell narrower than the teacher is never narrow in the supernet, and its rating
cannot see the bottleneck the deployed network has (docs/ranking.md). With `cell_output="own"`
every layer keeps the cell's width, exactly as deployed (residuals included), and a learned 1x1
conv maps the cell's output to the teacher's width: the adapter of DNA-T, which a ViT cell always
has (its heads depend on its width); a first layer still takes the teacher's input width. A layer
holds only the ops its cell allows (a one-op cell of a ViT space: one module per layer). Blocks
are independent modules: they train in parallel, can live on different devices, and checkpoint
separately.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from dnatool.arch.space import Choice, SearchSpace
from dnatool.arch.spec import ArchSpec, BlockSpec
from dnatool.errors import BadInput
from dnatool.nn.timm_adapter import build_model, build_op
from dnatool.train.recipe import CELL_OUTPUTS


def keeps_own_width(space: SearchSpace, cell_output: str) -> bool:
    """Whether cells keep their own width behind an adapter: `auto` is `teacher` for a conv
    space and `own` for a ViT space, whose cells cannot take the teacher's width."""
    if cell_output not in CELL_OUTPUTS:
        raise BadInput(f"cell_output must be one of {', '.join(CELL_OUTPUTS)}, got {cell_output!r}")
    if cell_output == "teacher" and space.tokens:
        raise BadInput(
            f"space {space.name!r} has token cells, which keep their own width: cell_output "
            "'teacher' is for conv spaces (use auto or own)"
        )
    return space.tokens or cell_output == "own"


class Cell(nn.Module):
    """A chain of layers; layer i holds one module per candidate op.

    Layers are the space's own (`SearchSpace.layer_spec`), at the cell's width; the first layer's
    input takes the teacher's width at the cut, and so does the last layer's output unless the
    cell keeps its own width (`own_width`), when a 1x1 adapter maps it to the teacher's.
    """

    def __init__(
        self,
        space: SearchSpace,
        k: int,
        cell: int,
        in_chs: int,
        out_chs: int,
        own_width: bool = False,
    ) -> None:
        super().__init__()
        block = space.blocks[k]
        width, layers = block.cells[cell].width, block.cells[cell].layers
        self.options = block.layer_options(cell)
        self.full = all(len(o) == len(block.ops) for o in self.options)
        adapt = space.tokens or own_width
        self.layers = nn.ModuleList()
        for i in range(layers):
            layer_in = in_chs if i == 0 else width
            self.layers.append(
                nn.ModuleList(
                    [
                        build_op(
                            layer_in,
                            self._spec(space, k, cell, op, i, width if adapt else out_chs),
                            space.act,
                        )
                        if op in self.options[i]
                        else nn.Identity()  # not a candidate here: no weights
                        for op in range(len(block.ops))
                    ]
                )
            )
        self.adapter = nn.Conv2d(width, out_chs, 1) if adapt else nn.Identity()

    @staticmethod
    def _spec(space: SearchSpace, k: int, cell: int, op: int, i: int, out_chs: int) -> BlockSpec:
        spec = space.layer_spec(k, cell, op, i)
        last = i == space.blocks[k].cells[cell].layers - 1
        return dataclasses.replace(spec, out=out_chs) if last else spec

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def num_ops(self) -> int:
        return len(self.layers[0])

    def forward(self, x: torch.Tensor, path: Sequence[int]) -> torch.Tensor:
        for layer, op in zip(self.layers, path, strict=True):
            x = layer[op](x)
        return self.adapter(x)

    def sample_path(self, generator: torch.Generator) -> tuple[int, ...]:
        """One allowed op per layer, uniformly, from an explicit generator (never the global
        RNG)."""
        if self.full:
            return tuple(
                torch.randint(0, self.num_ops, (self.depth,), generator=generator).tolist()
            )
        picks = torch.randint(0, 1 << 30, (self.depth,), generator=generator).tolist()
        return tuple(o[p % len(o)] for o, p in zip(self.options, picks, strict=True))


class Block(nn.Module):
    """Block k: its cells in parallel; block 0 also owns the student stem and fixed stages.

    Block k > 0 takes the teacher's block k-1 output, so its input width is the teacher's there.
    """

    def __init__(
        self, space: SearchSpace, k: int, in_chs: int, out_chs: int, own_width: bool = False
    ) -> None:
        super().__init__()
        self.index = k
        self.stem = _student_stem(space) if k == 0 else None
        self.cells = nn.ModuleList(
            [
                Cell(space, k, c, in_chs, out_chs, own_width)
                for c in range(len(space.blocks[k].cells))
            ]
        )

    def forward(self, x: torch.Tensor, choice: Choice) -> torch.Tensor:
        cell, path = choice
        return self.cells[cell](self.prepare(x), path)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The input every cell sees: the stem's output for block 0, the teacher feature otherwise."""
        return self.stem(x) if self.stem is not None else x


class Supernet(nn.Module):
    """A chain of independent blocks; `teacher_widths[k]` is the target width of block k;
    `cell_output` says whose width a cell's last layer has (`keeps_own_width`)."""

    def __init__(
        self, space: SearchSpace, teacher_widths: Sequence[int], cell_output: str = "auto"
    ) -> None:
        super().__init__()
        if len(teacher_widths) != len(space.blocks):
            raise ValueError(f"{len(teacher_widths)} teacher widths for {len(space.blocks)} blocks")
        own = keeps_own_width(space, cell_output)
        in_widths = [space.in_widths(0)[0], *teacher_widths[:-1]]
        self.blocks = nn.ModuleList(
            [
                Block(space, k, in_widths[k], teacher_widths[k], own)
                for k in range(len(space.blocks))
            ]
        )


def _student_stem(space: SearchSpace) -> nn.Sequential:
    """Stem conv + fixed stages, built by timm exactly as in the final network."""
    fixed = space.fixed or ((BlockSpec(type="cn", out=space.stem, kernel=1),),)
    model = build_model(
        ArchSpec(
            stages=fixed,
            stem=space.stem,
            head=space.head,
            act=space.act,
            resolution=space.resolution,
            num_classes=1,
            in_chans=space.in_chans,
        )
    )
    return nn.Sequential(model.conv_stem, model.bn1, *(model.blocks if space.fixed else []))

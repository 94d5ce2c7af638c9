"""The SPOS supernet: one network over the whole space, one op per layer and one cell per block
per forward (Guo et al., "Single Path One-Shot NAS with Uniform Sampling", ECCV 2020).

Built from the same space walk and the same timm modules as everything else: every candidate layer
is `build_op(layer.in_width, layer.spec)` of `SearchSpace.layer(...)`, so a supernet op, its latency
table entry and the deployed layer are one module type, and `extract_subnet` copies a path's
weights into the standalone network of `space.to_arch(choices)` module by module. When a block's
cells end in different widths, the next block's first layers (and the head conv) hold one module
per possible input width. Stem, fixed stages, head and classifier are the standalone network's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dnatool.arch.space import Choice, SearchSpace
from dnatool.nn.timm_adapter import build_model, build_op


class SposCell(nn.Module):
    """One cell of block k: `first[str(in_width)][str(op)]` opens it, `later[d - 1][str(op)]` is
    layer d; only the input widths and ops the cell allows there (a fabric cell: its own scale's)."""

    def __init__(self, space: SearchSpace, k: int, cell: int) -> None:
        super().__init__()
        options = space.blocks[k].layer_options(cell)
        self.first = nn.ModuleDict(
            {
                str(w): nn.ModuleDict({str(op): _op(space, k, cell, op, 0, w) for op in options[0]})
                for w in space.cell_in_widths(k, cell)
            }
        )
        self.later = nn.ModuleList(
            [
                nn.ModuleDict({str(op): _op(space, k, cell, op, d) for op in options[d]})
                for d in range(1, len(options))
            ]
        )

    def layer_module(self, depth: int, op: int, in_width: int) -> nn.Module:
        """Op `op` at layer `depth` (the first layer's module depends on the block's input width)."""
        return self.first[str(in_width)][str(op)] if depth == 0 else self.later[depth - 1][str(op)]

    def path_modules(self, path: Sequence[int], in_width: int) -> list[nn.Module]:
        """The modules one path runs, in order."""
        if len(path) != len(self.later) + 1:
            raise ValueError(f"a path of this cell has {len(self.later) + 1} ops, got {len(path)}")
        return [self.layer_module(i, op, in_width) for i, op in enumerate(path)]


def _op(space: SearchSpace, k: int, cell: int, op: int, depth: int, width: int | None = None):
    layer = space.layer(k, cell, op, depth, width)
    return build_op(layer.in_width, layer.spec, space.act)


class SposSupernet(nn.Module):
    """`forward(images, choices)` runs the standalone network of `choices` on shared weights."""

    def __init__(self, space: SearchSpace, num_classes: int | None = None) -> None:
        super().__init__()
        self.space = space
        self.num_classes = num_classes or space.num_classes
        heads = space.in_widths(len(space.blocks))
        reference = {
            w: build_model(space.to_arch(space.example(w)), num_classes=self.num_classes)
            for w in heads
        }
        model = reference[heads[0]]
        self.conv_stem, self.bn1 = model.conv_stem, model.bn1
        self.fixed = nn.Sequential(*list(model.blocks)[: len(space.fixed)])
        self.blocks = nn.ModuleList(
            [
                nn.ModuleList([SposCell(space, k, c) for c in range(len(block.cells))])
                for k, block in enumerate(space.blocks)
            ]
        )
        self.heads = nn.ModuleDict(
            {str(w): nn.Sequential(m.conv_head, m.bn2) for w, m in reference.items()}
        )
        self.global_pool, self.classifier = model.global_pool, model.classifier

    def path_modules(self, choices: Sequence[Choice]) -> list[list[nn.Module]]:
        """The searchable modules of one architecture, per block (choices checked by the space)."""
        widths = self.space.chain_widths(list(choices))
        return [
            self.blocks[k][cell].path_modules(path, widths[k])
            for k, (cell, path) in enumerate(choices)
        ]

    def forward(self, images: torch.Tensor, choices: Sequence[Choice]) -> torch.Tensor:
        x = self.fixed(self.bn1(self.conv_stem(images)))
        for block in self.path_modules(choices):
            for module in block:
                x = module(x)
        x = self.heads[str(self.space.chain_widths(list(choices))[-1])](x)
        return self.classifier(self.global_pool(x))


def extract_subnet(supernet: SposSupernet, choices: Sequence[Choice]) -> nn.Module:
    """The standalone timm network of `choices` carrying the supernet's weights of that path
    (its outputs equal `supernet(x, choices)`: the tests check it)."""
    space = supernet.space
    model = build_model(space.to_arch(list(choices)), num_classes=supernet.num_classes)
    model.conv_stem.load_state_dict(supernet.conv_stem.state_dict())
    model.bn1.load_state_dict(supernet.bn1.state_dict())
    for s, stage in enumerate(supernet.fixed):
        model.blocks[s].load_state_dict(stage.state_dict())
    # the searchable layers in order (a fabric layer that halves opens a new stage)
    layers = [layer for stage in list(model.blocks)[len(space.fixed) :] for layer in stage]
    modules = [m for block in supernet.path_modules(choices) for m in block]
    for layer, module in zip(layers, modules, strict=True):
        layer.load_state_dict(module.state_dict())
    head = supernet.heads[str(space.chain_widths(list(choices))[-1])]
    model.conv_head.load_state_dict(head[0].state_dict())
    model.bn2.load_state_dict(head[1].state_dict())
    model.classifier.load_state_dict(supernet.classifier.state_dict())
    return model

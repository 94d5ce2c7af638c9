"""DNA's training step (CVPR 2020, Eq. 4): block k learns Y_k from the teacher's Y_{k-1}.

Every cell of the block sees the same input in a step, each layer of each cell samples one op
uniformly (single path), and the loss is the MSE against the teacher's block output.
"""

from __future__ import annotations

import torch
from torch import nn

from dnatool.nn.supernet import Block


class AllCells(nn.Module):
    """All cells of a block on one input in one forward (what DDP wraps: one forward per step)."""

    def __init__(self, block: Block) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor, paths: list[tuple[int, ...]]) -> list[torch.Tensor]:
        shared = self.block.prepare(x)
        return [cell(shared, path) for cell, path in zip(self.block.cells, paths, strict=True)]


def dna_step(
    step_module: nn.Module,
    block: Block,
    x: torch.Tensor,
    target: torch.Tensor,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer,
) -> list[float]:
    """One optimiser step of one block over all its cells; returns each cell's loss.

    `step_module` is `AllCells(block)` or its DDP wrapper; paths come from `generator`, so every
    rank (and a resumed run) samples the same ones.
    """
    paths = [cell.sample_path(generator) for cell in block.cells]
    optimizer.zero_grad(set_to_none=True)
    outputs = step_module(x, paths)
    losses = [nn.functional.mse_loss(out, target) for out in outputs]
    torch.stack(losses).sum().backward()
    optimizer.step()
    return [float(loss.detach()) for loss in losses]

"""Supernet training and rating throughput of the paper-sized DNA space on one device.

Measures what a DNA run on ImageNet would spend per step: one teacher forward (timm model, random
weights: speed only) feeding all six blocks of the `dna-mbconv` supernet, every cell of every block
stepping once (Adam), at 224x224. Then rating throughput: paths scored per second with prefix
sharing on block 4 (5-layer cells, 23,328 paths per block) on a batch of rating images.

    python benchmarks/supernet_speed.py --device cuda --batch 64 --teacher tf_efficientnet_b7 --json
"""

from __future__ import annotations

import argparse
import json
import time

import timm
import torch

from dnatool.arch.space import load_space
from dnatool.nn.supernet import Supernet
from dnatool.nn.teacher import Teacher, find_cut
from dnatool.rate.feature_sharing import CellScores, score_batch
from dnatool.train.dna import AllCells, dna_step


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train_speed(space_name: str, teacher_name: str, batch: int, steps: int, device: str) -> dict:
    space = load_space(space_name)
    model = timm.create_model(teacher_name)
    teacher = Teacher(model, find_cut(model, space), f"{teacher_name} (random weights)").to(device)
    supernet = Supernet(space, [s[0] for s in teacher.cut.shapes]).to(device)
    steppers = [AllCells(block) for block in supernet.blocks]
    optimizers = [torch.optim.Adam(block.parameters(), lr=0.005) for block in supernet.blocks]
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, space.resolution, space.resolution, device=device)

    def step() -> None:
        targets = teacher(images)
        inputs = [images, *targets[:-1]]
        for k, block in enumerate(supernet.blocks):
            dna_step(steppers[k], block, inputs[k], targets[k], generator, optimizers[k])

    for _ in range(3):
        step()
    _sync(device)
    began = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = (time.perf_counter() - began) / steps
    return {
        "space": space_name,
        "teacher": teacher_name,
        "batch": batch,
        "seconds_per_step": seconds,
        "images_per_second": batch / seconds,
        "imagenet_epoch_hours": 1_281_167 / (batch / seconds) / 3600,
        "supernet_params_millions": sum(p.numel() for p in supernet.parameters()) / 1e6,
    }


@torch.no_grad()
def rate_speed(space_name: str, block_index: int, batch: int, device: str) -> dict:
    space = load_space(space_name)
    supernet = Supernet(space, [48, 80, 160, 224, 384, 640][: len(space.blocks)])
    block = supernet.blocks[block_index].to(device).eval()
    cell = block.cells[0]
    in_chs = cell.layers[0][0].conv_pw.in_channels
    size = space.block_in_resolution(block_index)
    x = torch.randn(batch, in_chs, size, size, device=device)
    target = block(x, (0, (0,) * cell.depth))
    result = CellScores()
    score_batch(cell, x, target, result)
    _sync(device)
    began = time.perf_counter()
    result = CellScores()
    score_batch(cell, x, target, result)
    _sync(device)
    seconds = time.perf_counter() - began
    return {
        "block": block_index,
        "paths": len(result.sums),
        "batch": batch,
        "seconds": seconds,
        "paths_per_second": len(result.sums) / seconds,
        "layer_evals": result.layer_evals,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--space", default="dna-mbconv")
    parser.add_argument("--teacher", default="tf_efficientnet_b7")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rate-batch", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "train": train_speed(args.space, args.teacher, args.batch, args.steps, args.device),
        "rate": rate_speed(args.space, 4, args.rate_batch, args.device),
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

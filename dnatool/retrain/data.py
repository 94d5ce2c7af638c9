"""Loaders for retraining: the shared splits, RandAugment for image folders, mixup / cutmix.

The digits split is already tensors (shift augmentation in `dnatool.data`); an ImageFolder's
training transform is replaced by timm's `create_transform(auto_augment=...)` so the recipe's
RandAugment and random erasing apply. Under DDP every rank reads its own shard of the training
set (`DistributedSampler`) and an exact, non-padded shard of the validation set.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from dnatool.data.datasets import Splits, load_splits
from dnatool.retrain.recipe import RetrainRecipe


@dataclass
class Loaders:
    train: DataLoader
    val: DataLoader
    splits: Splits
    generator: torch.Generator
    sampler: Any = None


def build_loaders(recipe: RetrainRecipe, resolution: int, rank: int = 0, world: int = 1) -> Loaders:
    """Train / val loaders for this process (all of them when not distributed)."""
    splits = load_splits(recipe.data, resolution, seed=recipe.seed, augment=True)
    if splits.source != "digits":
        _use_train_transform(splits, recipe, resolution)
    generator = torch.Generator().manual_seed(recipe.seed)
    sampler = None
    if world > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(
            splits.train,
            num_replicas=world,
            rank=rank,
            shuffle=True,
            seed=recipe.seed,
            drop_last=True,
        )
    batch = min(recipe.batch_size, _even_floor(len(splits.train) // world))
    common = dict(
        num_workers=recipe.workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=recipe.workers > 0,
    )
    train = DataLoader(
        splits.train,
        batch_size=batch,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=True,
        generator=generator,
        **common,
    )
    val_part = Subset(splits.val, list(range(rank, len(splits.val), world)))
    val = DataLoader(val_part, batch_size=max(batch, 64), shuffle=False, **common)
    return Loaders(train, val, splits, generator, sampler)


def _even_floor(n: int) -> int:
    return max(2, n - n % 2)


def _use_train_transform(splits: Splits, recipe: RetrainRecipe, resolution: int) -> None:
    """Give the ImageFolder behind the training subset the recipe's augmentation."""
    from timm.data import create_transform

    base: Dataset = splits.train
    while isinstance(base, Subset):
        base = base.dataset
    base.transform = create_transform(  # type: ignore[attr-defined]
        (3, resolution, resolution),
        is_training=True,
        auto_augment=recipe.auto_augment,
        re_prob=recipe.reprob,
        mean=splits.mean,
        std=splits.std,
        interpolation="random",
        **splits.train_augment,
    )


def build_mixup(recipe: RetrainRecipe, num_classes: int):
    """timm's Mixup (soft targets, label smoothing folded in), or None when the recipe has none."""
    if not recipe.uses_mixup:
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=recipe.mixup,
        cutmix_alpha=recipe.cutmix,
        prob=recipe.mixup_prob,
        label_smoothing=recipe.label_smoothing,
        num_classes=num_classes,
    )


def loader_state(loaders: Loaders) -> dict[str, Any]:
    """The RNG states that decide the next epoch's order and mixup draws (numpy's global
    generator, which timm's Mixup uses, and Python's), saved per epoch; the augmentations are a
    function of (seed, epoch, index) and need no state."""
    key, pos, has_gauss, gauss = np.random.get_state()[1:]
    return {
        "shuffle": loaders.generator.get_state(),
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
    }


def restore_loader_state(loaders: Loaders, state: dict[str, Any]) -> None:
    loaders.generator.set_state(state["shuffle"])
    if "python" in state:  # checkpoints from before 2026-12-06 hold the order alone
        random.setstate(state["python"])
        numpy = state["numpy"]
        np.random.set_state(
            (
                "MT19937",
                numpy["key"].numpy().astype(np.uint32),
                numpy["pos"],
                numpy["has_gauss"],
                numpy["gauss"],
            )
        )

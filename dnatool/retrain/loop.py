"""One training epoch and one evaluation pass (timm's train.py loop, without its argparse).

AMP (float16 autocast + GradScaler) and channels-last apply on CUDA only; the scheduler steps per
optimizer update, so fractional decay epochs (2.4) mean what they say.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dnatool.errors import RunFailure
from dnatool.utils.distributed import ProcessInfo, all_sum


@dataclass
class Trainer:
    """Everything one optimisation step needs."""

    model: nn.Module  # possibly DDP-wrapped
    loss: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    info: ProcessInfo
    ema: Any = None
    mixup: Any = None
    scaler: Any = None
    clip_grad: float | None = None
    channels_last: bool = False

    @property
    def amp(self) -> bool:
        return self.scaler is not None


def to_device(images: torch.Tensor, info: ProcessInfo, channels_last: bool) -> torch.Tensor:
    images = images.to(info.device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def train_one_epoch(trainer: Trainer, loader, epoch: int, step: Callable[..., None]) -> float:
    """Train over `loader`; returns the mean loss over this process's batches."""
    trainer.model.train()
    updates = len(loader)
    total, count = 0.0, 0
    for index, (images, targets) in enumerate(loader):
        images = to_device(images, trainer.info, trainer.channels_last)
        targets = targets.to(trainer.info.device, non_blocking=True)
        if trainer.mixup is not None:
            images, targets = trainer.mixup(images, targets)
        loss = _update(trainer, images, targets)
        update = epoch * updates + index + 1
        trainer.scheduler.step_update(num_updates=update)
        if trainer.ema is not None:
            trainer.ema.update(_unwrap(trainer.model), step=update)
        total, count = total + loss, count + 1
        step(loss=loss, lr=trainer.optimizer.param_groups[0]["lr"])
    return total / max(count, 1)


def _update(trainer: Trainer, images: torch.Tensor, targets: torch.Tensor) -> float:
    device_type = trainer.info.device.type
    with torch.autocast(device_type, dtype=torch.float16, enabled=trainer.amp):
        logits = trainer.model(images)
        loss = trainer.loss(images, logits, targets)
    value = float(loss.detach())
    if not math.isfinite(value):
        raise RunFailure(
            f"training diverged: loss is {value} (lower lr or clip_grad in the recipe)"
        )
    trainer.optimizer.zero_grad(set_to_none=True)
    if trainer.scaler is not None:
        trainer.scaler.scale(loss).backward()
        trainer.scaler.unscale_(trainer.optimizer)
        _clip(trainer)
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
    else:
        loss.backward()
        _clip(trainer)
        trainer.optimizer.step()
    return value


def _clip(trainer: Trainer) -> None:
    if trainer.clip_grad:
        torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.clip_grad)


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain network under torch.compile's and DDP's wrappers (EMA tracks its weights)."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def evaluate(
    model: nn.Module, loader, info: ProcessInfo, channels_last: bool = False, amp: bool = False
) -> dict[str, float]:
    """Top-1 / top-5 (percent) and mean cross-entropy on the whole validation split."""
    model.eval()
    loss_sum = correct1 = correct5 = seen = 0.0
    for images, targets in loader:
        images = to_device(images, info, channels_last)
        targets = targets.to(info.device, non_blocking=True)
        with torch.autocast(info.device.type, dtype=torch.float16, enabled=amp):
            logits = model(images).float()
        loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
        top = logits.topk(min(5, logits.shape[-1]), dim=-1).indices
        hits = top.eq(targets[:, None])
        correct1 += float(hits[:, 0].sum())
        correct5 += float(hits.any(dim=-1).sum())
        seen += len(targets)
    loss_sum, correct1, correct5, seen = all_sum([loss_sum, correct1, correct5, seen], info)
    if not seen:
        raise RunFailure("the validation split is empty")
    return {
        "val_loss": loss_sum / seen,
        "top1": 100 * correct1 / seen,
        "top5": 100 * correct5 / seen,
    }

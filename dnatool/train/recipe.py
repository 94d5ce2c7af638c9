"""The supernet training recipes as frozen dataclasses: DNA's paper defaults (CVPR 2020, Sec. 4.1)
and the SPOS baseline's (Guo et al., ECCV 2020, released code); `method` picks the class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dnatool.config import from_dict, recipe_data, resumable
from dnatool.errors import BadInput

METHODS = ("dna", "dna++", "spos", "bossnas")
# Whose width a DNA supernet cell outputs (`nn.supernet.keeps_own_width`): the teacher's at the
# cut, or its own behind a learned 1x1 adapter; auto: the teacher's, a ViT cell's own.
CELL_OUTPUTS = ("auto", "teacher", "own")
SSL_SCORES = ("loss", "invariance")  # DNA++'s rating: the full block objective, or its first term


@dataclass(frozen=True)
class TrainRecipe:
    """Everything `dnatool train` needs; YAML recipes and `-o key=value` fill it."""

    method: str = "dna"
    space: str = "dna-mbconv"
    teacher: str = "tf_efficientnet_b7"
    teacher_weights: str | None = None
    teacher_pretrained: bool = True
    data: str = "imagenet"
    resolution: int | None = None
    rate_per_class: int = 50
    epochs: int = resumable(20)
    batch_size: int = 64
    lr: float = 0.005
    lr_first: float = 0.002
    lr_last: float = 0.002
    lr_decay: float = 0.9
    weight_decay: float = 0.0
    max_steps_per_epoch: int | None = None
    workers: int = resumable(4)
    seed: int = 0
    device: str = resumable("auto")
    distributed: str = "data"
    score_norm: str = resumable("std")
    bn_recalibrate: bool = resumable(True)
    rate_batch_size: int = resumable(64)
    cell_output: str = "auto"

    def __post_init__(self) -> None:
        _check_method(self.method, "dna")
        choices = {
            "distributed": ("data", "blocks"),
            "score_norm": ("std", "var"),
            "device": ("auto", "cpu", "cuda"),
            "cell_output": CELL_OUTPUTS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise BadInput(
                    f"recipe key {name!r} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        for name in ("epochs", "batch_size", "rate_per_class", "rate_batch_size"):
            if getattr(self, name) < 1:
                raise BadInput(f"recipe key {name!r} must be >= 1")
        if min(self.lr, self.lr_first, self.lr_last) <= 0 or not 0 < self.lr_decay <= 1:
            raise BadInput("learning rates must be > 0 and lr_decay in (0, 1]")

    def block_lr(self, k: int, num_blocks: int) -> float:
        """Paper: 0.002 for the first and last block, 0.005 for the others."""
        return self.lr_first if k == 0 else self.lr_last if k == num_blocks - 1 else self.lr


@dataclass(frozen=True)
class SposRecipe:
    """SPOS (Single Path One-Shot): one supernet over the whole space, one path per step,
    cross-entropy on labels. Defaults are the released code's: SGD lr 0.5 for a global batch of
    1024 decayed linearly to 0, momentum 0.9, weight decay 4e-5 (not on BN and biases), label
    smoothing 0.1. `sampling: flops` draws a MACs bin uniformly, then a uniform path inside it
    (`flops_timeout` tries, then any path), as the released code's FLOPs-constrained sampler."""

    method: str = "spos"
    space: str = "dna-mbconv"
    data: str = "imagenet"
    resolution: int | None = None
    rate_per_class: int = 50
    epochs: int = resumable(96)
    batch_size: int = 128
    lr: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    sampling: str = "uniform"
    flops_bins: int = 7
    flops_range: tuple[float, float] | None = None
    flops_timeout: int = 500
    max_steps_per_epoch: int | None = None
    workers: int = resumable(4)
    threads: int | None = resumable(None)
    seed: int = 0
    device: str = resumable("auto")
    bn_batches: int = resumable(20)
    bn_mode: str = resumable("ema")
    rate_batch_size: int = resumable(100)

    def __post_init__(self) -> None:
        _check_method(self.method, "spos")
        choices = {
            "sampling": ("uniform", "flops"),
            "bn_mode": ("ema", "exact"),
            "device": ("auto", "cpu", "cuda"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise BadInput(
                    f"recipe key {name!r} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        for name in ("epochs", "batch_size", "rate_per_class", "rate_batch_size", "flops_bins"):
            if getattr(self, name) < 1:
                raise BadInput(f"recipe key {name!r} must be >= 1")
        if self.threads is not None and self.threads < 1:
            raise BadInput("recipe key 'threads' must be >= 1 (or null: torch's default)")
        if self.bn_batches < 0 or self.flops_timeout < 1:
            raise BadInput("recipe keys 'bn_batches' must be >= 0 and 'flops_timeout' >= 1")
        if self.lr <= 0 or not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise BadInput("recipe needs lr > 0, momentum in [0, 1) and weight_decay >= 0")
        if not 0 <= self.label_smoothing < 1:
            raise BadInput("recipe key 'label_smoothing' must be in [0, 1)")
        if self.flops_range is not None and not 0 <= self.flops_range[0] < self.flops_range[1]:
            raise BadInput("recipe key 'flops_range' must be [low, high] MACs with low < high")


def _check_method(method: str, expected: str) -> None:
    if method not in METHODS:
        raise BadInput(
            f"training method {method!r} is not implemented (available: {', '.join(METHODS)})"
        )
    if method != expected:
        raise BadInput(f"training method {method!r} needs its own recipe class, not {expected!r}'s")


def recipe_class(data: dict[str, Any]) -> type[TrainRecipe] | type[SposRecipe]:
    """The recipe dataclass of a recipe's `method` (DNA when absent)."""
    method = data.get("method", "dna")
    if method not in METHODS:
        _check_method(str(method), "dna")
    if method == "dna++":
        from dnatool.train.dnapp import DnappRecipe

        return DnappRecipe
    if method == "bossnas":
        from dnatool.train.bossnas import BossnasRecipe

        return BossnasRecipe  # type: ignore[return-value]
    return SposRecipe if method == "spos" else TrainRecipe


def load_train_recipe(ref: str, overrides: tuple[str, ...] = ()) -> TrainRecipe | SposRecipe:
    """A `dnatool train` recipe: its `method` chooses DNA's or SPOS's keys and checks."""
    data = recipe_data(ref, overrides)
    return from_dict(recipe_class(data), data)


def train_recipe_from_dict(data: dict[str, Any]) -> TrainRecipe | SposRecipe:
    """The recipe recorded in a training run's manifest."""
    return from_dict(recipe_class(data), data)

"""The supernet training recipe: paper defaults (DNA, CVPR 2020, Sec. 4.1) as a frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass

from dnatool.config import resumable
from dnatool.errors import BadInput

METHODS = ("dna",)


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

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BadInput(
                f"training method {self.method!r} is not implemented (available: {', '.join(METHODS)})"
            )
        choices = {
            "distributed": ("data", "blocks"),
            "score_norm": ("std", "var"),
            "device": ("auto", "cpu", "cuda"),
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

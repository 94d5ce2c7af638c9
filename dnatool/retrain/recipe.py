"""The retraining recipe: every knob of `dnatool retrain`, loaded from `recipes/retrain-*.yaml`.

Defaults are the paper's ImageNet setting (DNA, after EfficientNet): TF-style RMSprop (decay and
momentum 0.9, eps 1e-3), weight decay 1e-5, lr 0.256 per 4096 images scaled linearly to the
global batch, x0.97 every 2.4 epochs, EMA 0.9999, label smoothing 0.1, RandAugment, drop-path 0.2.
"""

from __future__ import annotations

from dataclasses import dataclass

from dnatool.config import resumable
from dnatool.errors import BadInput

OPTIMIZERS = ("rmsproptf", "rmsprop", "sgd", "momentum", "adamw", "adam", "lamb", "lion")
SCHEDULES = ("step", "cosine", "multistep", "poly", "constant")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class RetrainRecipe:
    """Settings of one retraining run; `resolution` None means the arch's own."""

    data: str = "digits"
    resolution: int | None = None
    epochs: int = 350
    batch_size: int = 128
    opt: str = "rmsproptf"
    lr: float | None = None
    lr_base: float = 0.256
    lr_base_size: int = 4096
    opt_eps: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 1e-5
    sched: str = "step"
    decay_epochs: float = 2.4
    decay_rate: float = 0.97
    warmup_epochs: float = 5.0
    warmup_lr: float = 1e-6
    min_lr: float = 0.0
    label_smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    auto_augment: str | None = "rand-m9-mstd0.5"
    reprob: float = 0.0
    drop_rate: float = 0.2
    drop_path_rate: float = 0.2
    bn_momentum: float | None = 0.01
    model_ema: bool = True
    ema_decay: float = 0.9999
    ema_warmup: bool = False
    clip_grad: float | None = None
    teacher: str | None = None
    kd_alpha: float = 0.5
    kd_temperature: float = 1.0
    amp: bool = True
    channels_last: bool = True
    # torch.compile mode for the training forward and backward (None: eager). On a GPU these
    # networks are launch-bound: "reduce-overhead" replays CUDA graphs of the fused kernels.
    compile: str | None = resumable(None)
    workers: int = 4
    threads: int | None = None
    seed: int = 0
    # The weights' initialisation seed when it should differ from `seed` (None: `seed`'s own
    # draw). Data order, augmentation and dropout stay `seed`'s, so runs that differ in only one
    # of the two seeds tell initialisation noise from data-order noise (docs/ranking.md).
    init_seed: int | None = None
    # Train only the first N epochs of the `epochs` schedule and finish there: a pilot of a
    # longer recipe, whose learning rate at epoch N is the full schedule's, not that of a shorter
    # schedule decayed to zero. Resuming with a later N (or none) continues the same run.
    stop_after: int | None = resumable(None)

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(
            self.stop_after is None or 1 <= self.stop_after <= self.epochs,
            f"stop_after must be between 1 and epochs ({self.epochs}), got {self.stop_after}",
        )
        _check(
            self.batch_size >= 2 and self.batch_size % 2 == 0,
            f"batch_size must be an even number >= 2 (mixup pairs images), got {self.batch_size}",
        )
        _check(self.opt in OPTIMIZERS, f"unknown opt {self.opt!r} (known: {', '.join(OPTIMIZERS)})")
        _check(
            self.sched in SCHEDULES, f"unknown sched {self.sched!r} (known: {', '.join(SCHEDULES)})"
        )
        _check(self.resolution is None or self.resolution >= 8, "resolution must be >= 8")
        _check(self.lr is None or self.lr > 0, "lr must be > 0")
        _check(self.lr_base > 0 and self.lr_base_size > 0, "lr_base and lr_base_size must be > 0")
        _check(self.decay_epochs > 0 and 0 < self.decay_rate <= 1, "bad decay_epochs / decay_rate")
        _check(0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)")
        _check(
            0 <= self.drop_rate < 1 and 0 <= self.drop_path_rate < 1, "drop rates must be in [0, 1)"
        )
        _check(0 < self.ema_decay < 1, "ema_decay must be in (0, 1)")
        _check(
            0 <= self.kd_alpha <= 1 and self.kd_temperature > 0,
            "kd_alpha must be in [0, 1] and kd_temperature > 0",
        )
        _check(
            min(self.mixup, self.cutmix, self.reprob, self.warmup_epochs) >= 0,
            "mixup, cutmix, reprob and warmup_epochs must be >= 0",
        )
        _check(
            self.compile is None or self.compile in COMPILE_MODES,
            f"unknown compile mode {self.compile!r} (known: {', '.join(COMPILE_MODES)})",
        )
        _check(
            self.workers >= 0 and (self.threads is None or self.threads >= 1),
            "bad workers / threads",
        )

    def scaled_lr(self, global_batch: int) -> float:
        """The explicit `lr`, or `lr_base` per `lr_base_size` images scaled to the global batch."""
        return self.lr if self.lr is not None else self.lr_base * global_batch / self.lr_base_size

    @property
    def uses_mixup(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise BadInput(f"retrain recipe: {message}")


def load_retrain_recipe(ref: str | None, overrides: tuple[str, ...] = ()) -> RetrainRecipe:
    """A shipped recipe name (`retrain-tiny`), a YAML path, or None (the paper's defaults)."""
    from dnatool.config import load_recipe

    return load_recipe(ref, RetrainRecipe, overrides)

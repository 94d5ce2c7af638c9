"""DNA++ (TPAMI, Sec. 4; method.md section 6): self-supervised block-wise distillation.

Per block, a teacher projector maps the teacher's block output to Z and a student projector maps a
cell's output to Z-hat (global average pool, then Linear-BN-ReLU-Linear, as VICReg's projector).
Teacher and student see two different augmentations of each image. The loss is the paper's:

    L_SSL = l1 * sum_j ||Z_j - Zhat_j||^2 / M
          + l2 * (||offdiag(Cov(Z))||^2 + ||offdiag(Cov(Zhat))||^2) / C
    L_SDR = l3 * sum_c max(0, gamma - sqrt(Var(Zhat_c) + eps)) / C
    loss  = L_SSL + L_SDR

with Cov and Var over the batch (M - 1 in the denominator). The means over the batch (M) and the
channels (C) are VICReg's normalisation, so the lambdas mean what VICReg's do. The paper gives no
values for l1, l2, l3, gamma, eps, so the defaults are VICReg's: invariance 25, variance 25,
covariance 1 (VICReg's lambda, mu, nu), i.e. l1 = 25, l2 = 1, l3 = 25 in the paper's notation;
gamma 1, eps 1e-4.
The paper's text puts the variance hinge on Z and method.md on Z-hat: `hinge` selects `both`
(default), `student` or `teacher`. There is no EMA or other non-learnable network: the hinge is
what keeps the jointly trained teacher and student from collapsing.

Rating (`ssl_score`, recipe key `ssl_score`): a path's score is the block's training objective on
the (unaugmented) rating images, as DNA rates a path by its distillation loss: `loss` (default) is
L_SSL + L_SDR per rating batch, Z from the teacher projector and Z-hat from the path through the
student projector; `invariance` is the invariance term alone (`ssl_distance`), lower is better for
both. The invariance term alone rewards a path whose Z-hat shrinks towards the batch mean (the
variance term is what penalises that in training): on the ranking benchmark it ranked the
architectures backwards, the full loss forwards (docs/ranking.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dnatool.config import resumable
from dnatool.errors import BadInput
from dnatool.train.recipe import SSL_SCORES, TrainRecipe

HINGES = ("both", "student", "teacher")


@dataclass(frozen=True)
class SslWeights:
    """The loss's constants (VICReg's defaults: the paper states none)."""

    invariance: float = 25.0
    covariance: float = 1.0
    variance: float = 25.0
    gamma: float = 1.0
    eps: float = 1e-4
    hinge: str = "both"


class Projector(nn.Module):
    """Global average pool, then Linear-BN-ReLU-Linear: a feature map (N, C, H, W) -> Z (N, D)."""

    def __init__(self, in_chs: int, hidden: int, out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(in_chs, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.mean(dim=(2, 3))
        return self.net(x)


def _off_diagonal_sq(z: torch.Tensor) -> torch.Tensor:
    """Sum of the squared off-diagonal entries of Cov(z) (batch covariance, M - 1), over D."""
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / max(z.shape[0] - 1, 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / z.shape[1]


def _variance_hinge(z: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    std = torch.sqrt(z.var(dim=0) + eps)
    return torch.relu(gamma - std).mean()


def ssl_loss(
    z: torch.Tensor, zhat: torch.Tensor, w: SslWeights = SslWeights()
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_SSL + L_SDR of one block (teacher Z, student Z-hat, both (M, D)); returns the loss and
    its terms as floats (for curves)."""
    if w.hinge not in HINGES:
        raise ValueError(f"hinge must be one of {', '.join(HINGES)}, got {w.hinge!r}")
    invariance = (z - zhat).pow(2).sum(dim=1).mean() / z.shape[1]
    covariance = _off_diagonal_sq(z) + _off_diagonal_sq(zhat)
    hinges = []
    if w.hinge in ("both", "student"):
        hinges.append(_variance_hinge(zhat, w.gamma, w.eps))
    if w.hinge in ("both", "teacher"):
        hinges.append(_variance_hinge(z, w.gamma, w.eps))
    variance = torch.stack(hinges).sum()
    loss = w.invariance * invariance + w.covariance * covariance + w.variance * variance
    terms = {
        "invariance": float(invariance.detach()),
        "covariance": float(covariance.detach()),
        "variance": float(variance.detach()),
    }
    return loss, terms


def ssl_distance(zhat: torch.Tensor, z: torch.Tensor) -> float:
    """The DNA++ rating of one path on one batch: mean over samples of ||Z - Z-hat||^2 / D."""
    return float((z - zhat).pow(2).sum(dim=1).mean() / z.shape[1])


def ssl_score(
    zhat: torch.Tensor, z: torch.Tensor, kind: str, w: SslWeights = SslWeights()
) -> float:
    """The DNA++ rating of one path on one batch (lower is better): the block's loss
    (`ssl_loss`, needs a batch of 2 or more) or its invariance term (`ssl_distance`)."""
    if kind == "invariance":
        return ssl_distance(zhat, z)
    if kind != "loss":
        raise ValueError(f"ssl score must be one of {', '.join(SSL_SCORES)}, got {kind!r}")
    if z.shape[0] < 2:
        raise ValueError("the SSL loss needs a batch of at least 2 (its variances and covariances)")
    return float(ssl_loss(z, zhat, w)[0])


def channel_std(z: torch.Tensor) -> float:
    """Mean per-channel standard deviation over the batch: ~0 means collapsed, ~gamma healthy."""
    return float(z.std(dim=0).mean())


def two_views(
    images: torch.Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.5, 1.0),
    jitter: float = 0.4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two augmentations of a batch (random resized crop, horizontal flip, brightness / contrast
    jitter) drawn from an explicit generator, so every rank and a resumed run see the same views.

    Done on the batch with one affine `grid_sample` per view: no per-image Python loop.
    """
    return _augment(images, generator, scale, jitter), _augment(images, generator, scale, jitter)


def _augment(
    images: torch.Tensor, generator: torch.Generator, scale: tuple[float, float], jitter: float
) -> torch.Tensor:
    n = images.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    side = torch.sqrt(uniform(*scale))
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    shift_x, shift_y = (uniform(-1.0, 1.0) * (1 - side) for _ in range(2))
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = side * flip, side
    theta[:, 0, 2], theta[:, 1, 2] = shift_x, shift_y
    grid = nn.functional.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    out = nn.functional.grid_sample(images, grid, align_corners=False, padding_mode="reflection")
    brightness = uniform(-jitter, jitter).view(n, 1, 1, 1).to(images)
    contrast = (1 + uniform(-jitter, jitter)).view(n, 1, 1, 1).to(images)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return (out - mean) * contrast + mean + brightness


def lars_lr(base_per_256: float, batch_size: int) -> float:
    """The paper's learning rate, 0.0025 per 256 images, scaled linearly to the batch."""
    return base_per_256 * batch_size / 256


def cosine_factor(step: int, total: int, warmup: int = 0) -> float:
    """Linear warm-up then cosine decay to 0, as a multiplier of the base learning rate."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# ---- the recipe and the training run --------------------------------------------------------------


@dataclass(frozen=True)
class DnappRecipe(TrainRecipe):
    """DNA++: DNA's keys plus the projectors, the loss constants (VICReg's, see the module
    docstring), LARS with a cosine schedule (paper: 0.0025 per 256 images) and whether the teacher
    trains jointly with the student supernet (the paper's default) or stays frozen; `ssl_score`
    is the rating (see the module docstring), changeable on resume like every rating key."""

    method: str = "dna++"
    proj_hidden: int = 512
    proj_out: int = 128
    invariance: float = 25.0
    covariance: float = 1.0
    variance: float = 25.0
    gamma: float = 1.0
    eps: float = 1e-4
    hinge: str = "both"
    train_teacher: bool = True
    lr_per_256: float = 0.0025
    momentum: float = 0.9
    warmup_epochs: int = 0
    ssl_score: str = resumable("loss")

    def __post_init__(self) -> None:
        if self.method != "dna++":
            raise BadInput(f"a DNA++ recipe has method 'dna++', got {self.method!r}")
        object.__setattr__(self, "method", "dna")  # DNA's own checks, then back
        try:
            TrainRecipe.__post_init__(self)
        finally:
            object.__setattr__(self, "method", "dna++")
        if self.hinge not in HINGES:
            raise BadInput(f"recipe key 'hinge' must be one of {', '.join(HINGES)}")
        if self.ssl_score not in SSL_SCORES:
            raise BadInput(f"recipe key 'ssl_score' must be one of {', '.join(SSL_SCORES)}")
        if self.ssl_score == "loss" and self.rate_batch_size < 2:
            raise BadInput("ssl_score loss needs rate_batch_size >= 2 (batch variances)")
        if min(self.proj_hidden, self.proj_out) < 1 or self.lr_per_256 <= 0:
            raise BadInput("recipe needs proj_hidden, proj_out >= 1 and lr_per_256 > 0")
        if min(self.invariance, self.covariance, self.variance, self.eps) < 0:
            raise BadInput("recipe keys invariance, covariance, variance, eps must be >= 0")
        if self.train_teacher and self.distributed == "blocks":
            raise BadInput(
                "a jointly trained teacher is shared by every block: use distributed=data "
                "or train_teacher=false with distributed=blocks"
            )

    @property
    def weights(self) -> SslWeights:
        return SslWeights(
            self.invariance, self.covariance, self.variance, self.gamma, self.eps, self.hinge
        )

"""Losses for retraining, with optional knowledge distillation from a teacher (Hinton et al. 2015).

The teacher is a trained dnatool model run (loaded with `dnatool.nn.model_run.load_model`) or a
timm model name (pretrained weights from timm's hub cache). The KD term is the soft-label KL
divergence at temperature T, scaled by T^2 so its gradients keep their size as T changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dnatool.errors import BadInput
from dnatool.retrain.recipe import RetrainRecipe


def load_teacher(
    ref: str, num_classes: int, device: torch.device, weights: str | None = None
) -> nn.Module:
    """A frozen teacher in eval mode that predicts the same classes as the data."""
    from dnatool.nn.teacher import load_teacher_model

    model, _ = load_teacher_model(ref, weights)
    classes = model.num_classes
    if classes != num_classes:
        raise BadInput(f"teacher {ref} predicts {classes} classes but the data has {num_classes}")
    model.eval().requires_grad_(False)
    return model.to(device)


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


class RetrainLoss(nn.Module):
    """Label-smoothed (or soft-target, under mixup) cross-entropy, mixed with KD when a teacher is set."""

    def __init__(self, recipe: RetrainRecipe, teacher: nn.Module | None = None) -> None:
        super().__init__()
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

        if recipe.uses_mixup:
            self.ce: nn.Module = SoftTargetCrossEntropy()
        elif recipe.label_smoothing > 0:
            self.ce = LabelSmoothingCrossEntropy(smoothing=recipe.label_smoothing)
        else:
            self.ce = nn.CrossEntropyLoss()
        self.teacher = teacher
        self.alpha, self.temperature = recipe.kd_alpha, recipe.kd_temperature

    def forward(
        self, images: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        loss = self.ce(logits, targets)
        if self.teacher is None or self.alpha == 0:
            return loss
        with torch.no_grad():
            teacher_logits = self.teacher(images)
        distill = kd_loss(logits.float(), teacher_logits.float(), self.temperature)
        return (1 - self.alpha) * loss + self.alpha * distill

"""Checks made before any training work: the process layout, and that `--resume` continues the
same training (recipe and input files) rather than silently mixing two into one run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnatool.arch.space import load_space
from dnatool.errors import BadInput
from dnatool.nn.teacher import teacher_file
from dnatool.train.recipe import TrainRecipe
from dnatool.train.setup import SUPERNET_DIR
from dnatool.utils import runs


def check_world(recipe: TrainRecipe, world: int) -> None:
    """`distributed=blocks` puts block k on rank k % world: every rank must own a block."""
    blocks = len(load_space(recipe.space).blocks)
    if recipe.distributed == "blocks" and world > blocks:
        raise BadInput(
            f"distributed=blocks with {world} processes but the {recipe.space!r} space has "
            f"{blocks} blocks: use at most {blocks} processes, or distributed=data"
        )


def train_inputs(recipe: Any) -> dict[str, Path]:
    """The input files of a training run by role (the teacher's weights, a data file); recipes
    without a teacher (SPOS, BossNAS) have only the data."""
    teacher = (
        teacher_file(recipe.teacher, recipe.teacher_weights) if hasattr(recipe, "teacher") else None
    )
    inputs = {"teacher": teacher} if teacher is not None else {}
    if Path(recipe.data).is_file():
        inputs["data"] = Path(recipe.data)
    return inputs


STAGE = runs.Stage("train", (f"{SUPERNET_DIR}/*.pt",), "supernet checkpoints")


def check_run_dir(out: Path, recipe: Any, inputs: dict[str, Path], resume: bool) -> None:
    """Refuse to overwrite a run without `--resume`, and a resume that changes what is trained
    (DNA, DNA++ and SPOS recipes alike: the recipe's own class says what may change)."""
    STAGE.open(out, recipe, inputs, resume)

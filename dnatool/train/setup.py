"""What training and rating both rebuild from a recipe: space, data, teacher, supernet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dnatool.arch.space import SearchSpace, load_space
from dnatool.data import Splits, load_splits
from dnatool.errors import BadInput
from dnatool.nn.supernet import Supernet
from dnatool.nn.teacher import Teacher, build_teacher
from dnatool.train.recipe import TrainRecipe
from dnatool.utils import io

SUPERNET_DIR = "supernet"
TEACHER_FILE = "teacher.json"


@dataclass
class Setup:
    recipe: TrainRecipe
    space: SearchSpace
    splits: Splits
    teacher: Teacher
    supernet: Supernet

    @property
    def resolution(self) -> int:
        return self.splits.resolution


def build_setup(recipe: TrainRecipe, augment: bool = True) -> Setup:
    """The teacher comes first: an ImageFolder is normalised the way the teacher was trained."""
    space = load_space(recipe.space)
    if space.fabric is not None:
        raise BadInput(
            f"space {space.name!r} is a resolution fabric: a cell's input scale depends on the "
            "route, which a teacher's fixed block cut cannot feed; train it with BossNAS or SPOS"
        )
    resolution = recipe.resolution or space.resolution
    teacher = build_teacher(
        recipe.teacher, space, recipe.teacher_weights, recipe.teacher_pretrained, resolution
    )
    splits = load_splits(
        recipe.data,
        resolution,
        recipe.rate_per_class,
        recipe.seed,
        augment=augment,
        preprocess=teacher.preprocess,
    )
    with torch.random.fork_rng(devices=[]):  # the recipe's seed decides the initial weights
        torch.manual_seed(recipe.seed)
        supernet = Supernet(space, [shape[0] for shape in teacher.cut.shapes], recipe.cell_output)
    return Setup(recipe, space, splits, teacher, supernet)


def block_checkpoint(run: Path, k: int) -> Path:
    """Where block k's checkpoint lives in a training run."""
    return Path(run) / SUPERNET_DIR / f"block_{k}.pt"


def write_teacher_cut(run: Path, setup: Setup) -> None:
    """The teacher, its cut and the data preprocessing actually used (`RUN/teacher.json`)."""
    io.write_json(
        Path(run) / TEACHER_FILE,
        {
            "teacher": setup.teacher.name,
            "cut": setup.teacher.cut.describe(),
            "teacher_preprocess": setup.teacher.preprocess,
            "preprocess": setup.splits.preprocess,
        },
    )

"""What training and rating both rebuild from a recipe: space, data, teacher, supernet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dnatool.arch.space import SearchSpace, load_space
from dnatool.data import Splits, load_splits
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
    space = load_space(recipe.space)
    resolution = recipe.resolution or space.resolution
    splits = load_splits(
        recipe.data, resolution, recipe.rate_per_class, recipe.seed, augment=augment
    )
    teacher = build_teacher(
        recipe.teacher, space, recipe.teacher_weights, recipe.teacher_pretrained, resolution
    )
    supernet = Supernet(space, [shape[0] for shape in teacher.cut.shapes])
    return Setup(recipe, space, splits, teacher, supernet)


def block_checkpoint(run: Path, k: int) -> Path:
    return Path(run) / SUPERNET_DIR / f"block_{k}.pt"


def write_teacher_cut(run: Path, teacher: Teacher) -> None:
    io.write_json(
        Path(run) / TEACHER_FILE, {"teacher": teacher.name, "cut": teacher.cut.describe()}
    )

"""Checks made before any training work: the process layout, and that `--resume` continues the
same training (recipe and input files) rather than silently mixing two into one run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnatool.arch.space import load_space
from dnatool.config import resume_conflict, to_dict
from dnatool.errors import BadInput
from dnatool.nn.teacher import teacher_file
from dnatool.train.recipe import TrainRecipe
from dnatool.train.setup import SUPERNET_DIR
from dnatool.utils import io, runs


def check_world(recipe: TrainRecipe, world: int) -> None:
    """`distributed=blocks` puts block k on rank k % world: every rank must own a block."""
    blocks = len(load_space(recipe.space).blocks)
    if recipe.distributed == "blocks" and world > blocks:
        raise BadInput(
            f"distributed=blocks with {world} processes but the {recipe.space!r} space has "
            f"{blocks} blocks: use at most {blocks} processes, or distributed=data"
        )


def train_inputs(recipe: TrainRecipe) -> dict[str, Path]:
    """The input files of a training run by role (the teacher's weights, a data file)."""
    teacher = teacher_file(recipe.teacher, recipe.teacher_weights)
    inputs = {"teacher": teacher} if teacher is not None else {}
    if Path(recipe.data).is_file():
        inputs["data"] = Path(recipe.data)
    return inputs


def check_run_dir(out: Path, recipe: TrainRecipe, inputs: dict[str, Path], resume: bool) -> None:
    """Refuse to overwrite a run without `--resume`, and a resume that changes what is trained."""
    if sorted((out / SUPERNET_DIR).glob("*.pt")) and not resume:
        raise BadInput(
            f"{out} already holds supernet checkpoints: pass --resume or choose another --out"
        )
    if not resume or not runs.is_run(out):
        return
    old = runs.read_manifest(out)
    if old.get("stage") != "train":
        raise BadInput(f"{out} is a {old.get('stage')!r} run, not a supernet training run")
    _same_recipe(out, old.get("recipe", {}), to_dict(recipe))
    _same_inputs(out, old.get("inputs", []), inputs)


def _same_recipe(out: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Every key but the recipe's resumable ones must equal the recorded recipe's."""
    conflict = resume_conflict(TrainRecipe, old, new)
    if conflict:
        raise BadInput(f"--resume of {out} with a different recipe: {conflict}")


def _same_inputs(out: Path, old: list[dict[str, Any]], inputs: dict[str, Path]) -> None:
    """Input files recorded with a sha256 must still hash the same."""
    hashes = {entry.get("path"): entry.get("sha256") for entry in old}
    for role, path in inputs.items():
        before = hashes.get(str(path))
        if before is not None and before != io.file_sha256(path):
            raise BadInput(
                f"--resume of {out}: the {role} file {path} changed since the run started "
                "(sha256 differs)"
            )

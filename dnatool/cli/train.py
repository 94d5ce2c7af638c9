"""`dnatool train RECIPE`: block-wise supernet training (also under `torchrun -m dnatool train`)."""

from __future__ import annotations

import click

from dnatool.cli._options import json_option


@click.command()
@click.argument("recipe")
@click.option(
    "-o",
    "--override",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe key (repeatable), e.g. -o epochs=5 -o teacher=runs/teacher.",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(file_okay=False),
    help="Run directory (default runs/<recipe>).",
)
@click.option(
    "--resume", is_flag=True, help="Continue a killed run from its last per-block checkpoints."
)
@json_option
def train(
    recipe: str, overrides: tuple[str, ...], out: str | None, resume: bool, as_json: bool
) -> None:
    """Train a block-wise supernet from RECIPE (a YAML file or a shipped name such as dna-tiny)."""
    import os
    from pathlib import Path

    from dnatool.cli._console import Reporter, emit_json, info, progress
    from dnatool.config import find_recipe, load_recipe
    from dnatool.train.loop import run_train
    from dnatool.train.recipe import TrainRecipe

    resolved = load_recipe(recipe, TrainRecipe, overrides)
    out = out or str(Path("runs") / find_recipe(recipe).stem)
    if os.environ.get("RANK", "0") != "0":  # torchrun: only rank 0 talks
        run_train(resolved, out, None, resume=resume)
        return
    with progress() as bar:
        results = run_train(resolved, out, Reporter(bar), resume=resume)
    if as_json:
        emit_json({"run": out, **results})
    else:
        info(f"supernet trained in {results['seconds']} s; run: {out} (next: dnatool rate {out})")

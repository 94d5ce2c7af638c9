"""`dnatool train RECIPE`: supernet training, DNA block-wise or SPOS (also under `torchrun`)."""

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
    """Train a supernet from RECIPE (a YAML file or a shipped name such as dna-tiny, spos-tiny):
    block-wise (method: dna; dna++ without labels; bossnas without labels or teacher) or the SPOS
    baseline over the whole space (method: spos)."""
    import os
    from pathlib import Path

    from dnatool.cli._console import Reporter, emit_json, info, progress
    from dnatool.config import find_recipe
    from dnatool.train.recipe import load_train_recipe

    resolved = load_train_recipe(recipe, overrides)
    if resolved.method == "spos":
        from dnatool.train.spos import run_spos as run_train
    elif resolved.method == "dna++":
        from dnatool.train.dnapp_loop import run_dnapp as run_train
    elif resolved.method == "bossnas":
        from dnatool.train.bossnas_loop import run_bossnas as run_train
    else:
        from dnatool.train.loop import run_train
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

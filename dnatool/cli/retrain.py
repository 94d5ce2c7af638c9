"""`dnatool retrain ARCH [RECIPE]`: train an architecture from scratch into a model run."""

from __future__ import annotations

import click

from dnatool.cli._options import json_option


@click.command(context_settings={"show_default": True})
@click.argument("arch_ref", metavar="ARCH")
@click.argument("recipe", required=False)
@click.option(
    "--data",
    default=None,
    help="`digits` or an ImageFolder root with train/ and val/ (overrides the recipe).",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Overrides the recipe's epochs."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Run directory [default: runs/retrain/<arch name>].",
)
@click.option(
    "--resume", is_flag=True, help="Continue the run in --out from its last epoch checkpoint."
)
@click.option(
    "-o",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe setting (repeatable).",
)
@click.option(
    "--teacher", default=None, help="Distil from a model run directory or a timm model name."
)
@json_option
def retrain(
    arch_ref: str,
    recipe: str | None,
    data: str | None,
    epochs: int | None,
    out: str | None,
    resume: bool,
    overrides: tuple[str, ...],
    teacher: str | None,
    as_json: bool,
) -> None:
    """Retrain ARCH with RECIPE (default: retrain-tiny on the built-in digits, retrain-imagenet
    when --data is a folder). Writes model.pt, arch.json, curves and manifest.json to --out."""
    import dataclasses

    from dnatool.arch.resolve import resolve_arch
    from dnatool.cli._console import Reporter, emit_json, info, progress
    from dnatool.retrain.recipe import load_retrain_recipe

    arch = resolve_arch(arch_ref)
    name = recipe or ("retrain-tiny" if data in (None, "digits") else "retrain-imagenet")
    flags = {
        k: v for k, v in (("data", data), ("epochs", epochs), ("teacher", teacher)) if v is not None
    }
    settings = dataclasses.replace(load_retrain_recipe(name, overrides), **flags)
    out = out or f"runs/retrain/{arch.name}"
    from dnatool.retrain.train import run_retrain  # torch: only once the arguments are good

    with progress() as bar:
        metrics = run_retrain(arch, settings, out, report=Reporter(bar), resume=resume)
    if metrics["rank"] != 0:  # under torchrun only rank 0 speaks
        return
    if as_json:
        emit_json(metrics)
        return
    info(
        f"{arch.name}: top-1 {metrics['top1']:.2f}%  top-5 {metrics['top5']:.2f}% on {metrics['val_images']} "
        f"{settings.data} val images after {metrics['epochs']} epochs -> {out}"
    )

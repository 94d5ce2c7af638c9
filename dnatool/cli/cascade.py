"""`dnatool cascade RECIPE`: DNA+, generations of DNA each searched under the last one's net."""

from __future__ import annotations

from typing import Any

import click

from dnatool.cli._options import json_option


@click.command()
@click.argument("recipe")
@click.option(
    "--generations", type=int, default=None, help="Generations to run (default: the recipe's)."
)
@click.option(
    "-o", "--override", "overrides", multiple=True, metavar="KEY=VALUE", help="Recipe override."
)
@click.option(
    "--out",
    default="runs/cascade",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where every generation writes its runs (a rerun resumes).",
)
@json_option
def cascade(
    recipe: str, generations: int | None, overrides: tuple[str, ...], out: str, as_json: bool
) -> None:
    """Run DNA+ from RECIPE (a name such as `dnaplus-tiny`, or a YAML file)."""
    from rich.table import Table

    from dnatool.cascade import load_cascade_recipe, run_cascade
    from dnatool.cli._console import Reporter, emit_json, info, progress
    from dnatool.cli._console import out as console

    loaded = load_cascade_recipe(recipe, overrides)
    with progress() as bar:
        result = run_cascade(loaded, out, generations, Reporter(bar))
    if as_json:
        emit_json(result)
        return
    table = Table(title=f"DNA+ cascade: {result['stopped']}")
    columns = ["gen", "teacher", "phi", f"{loaded.match} / teacher's", "top-1 %"]
    for column in columns + (["ranking tau", "tau - gen 0"] if loaded.truth else []):
        table.add_column(column)
    for row in result["generations"]:
        cells = [
            str(row["generation"]),
            row["teacher"],
            f"{row['phi']:g}",
            f"{row['size_ratio']:.2f}",
            f"{row['top1']:.2f}",
        ]
        if loaded.truth:
            tau = row["ranking"]["kendall_tau"]
            interval = f" [{tau['low']:.2f}, {tau['high']:.2f}]" if tau["low"] is not None else ""
            cells.append("n/a" if tau["value"] is None else f"{tau['value']:.3f}{interval}")
            cells.append(_gain(row["ranking"].get("vs_generation_0")))
        table.add_row(*cells)
    console.print(table)
    info(f"report in {out}/cascade.json and {out}/cascade.png")


def _gain(diff: dict[str, Any] | None) -> str:
    """A generation's paired tau difference to generation 0, with its interval."""
    if diff is None or diff["value"] is None:
        return ""
    interval = f" [{diff['low']:+.2f}, {diff['high']:+.2f}]" if diff["low"] is not None else ""
    return f"{diff['value']:+.3f}{interval}"

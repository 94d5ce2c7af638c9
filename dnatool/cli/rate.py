"""`dnatool rate RUN`: score every path of every cell (DNA Algorithm 1, feature sharing)."""

from __future__ import annotations

import click

from dnatool.cli._options import json_option


@click.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--norm",
    type=click.Choice(["std", "var"]),
    default=None,
    help="Normaliser D of the relative L1 score (default: the recipe's, std as in the released code).",
)
@click.option(
    "--bn-recalibrate/--no-bn-recalibrate",
    default=None,
    help="Reset candidate BN statistics on one rating batch (default: the recipe's).",
)
@json_option
def rate(run: str, norm: str | None, bn_recalibrate: bool | None, as_json: bool) -> None:
    """Write RUN/scores/block_k.npz for every block and summarise the best paths."""
    from rich.table import Table

    from dnatool.cli._console import Reporter, emit_json, out, progress
    from dnatool.rate.scores import run_rate

    with progress() as bar:
        summary = run_rate(run, Reporter(bar), norm=norm, bn_recalibrate=bn_recalibrate)
    if as_json:
        emit_json({"run": run, "blocks": summary})
        return
    table = Table(title=f"best paths per block ({run}/scores)")
    for column in ("block", "paths", "best cell", "best ops", "score", "seconds"):
        table.add_column(column)
    for k, meta in summary.items():
        best = meta["best"][0]
        table.add_row(
            k,
            str(meta["paths"]),
            str(best["cell"]),
            " ".join(best["ops"]),
            f"{best['score']:.4f}",
            str(meta["seconds"]),
        )
    out.print(table)

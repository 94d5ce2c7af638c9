"""`dnatool arch show ARCH`: per-stage table, params and MACs of the standalone network."""

from __future__ import annotations

import click

from dnatool.arch.spec import MAX_RESOLUTION, MIN_RESOLUTION
from dnatool.cli._options import json_option


@click.group()
def arch() -> None:
    """Inspect architectures (dnatool arch files, timm arch_defs, search results, model runs)."""


@arch.command("show")
@click.argument("arch_ref", metavar="ARCH")
@click.option(
    "--resolution",
    type=click.IntRange(min=MIN_RESOLUTION, max=MAX_RESOLUTION),
    default=None,
    help="Input size (default: the arch's).",
)
@json_option
def show(arch_ref: str, resolution: int | None, as_json: bool) -> None:
    """Params, MACs and stages of ARCH."""
    from rich.table import Table

    from dnatool.arch.resolve import resolve_arch
    from dnatool.cli._console import emit_json, out
    from dnatool.nn.summary import summarize
    from dnatool.utils.units import format_count

    summary = summarize(resolve_arch(arch_ref), resolution)
    if as_json:
        emit_json(summary)
        return
    table = Table(title=f"{summary['name']} at {summary['resolution']}x{summary['resolution']}")
    for column in ("stage", "blocks", "out", "stride", "size", "params"):
        table.add_column(column, justify="left" if column == "blocks" else "right")
    for stage in summary["stages"]:
        table.add_row(
            str(stage["index"]),
            "\n".join(stage["blocks"]),
            str(stage["out_channels"]),
            str(stage["stride"]),
            str(stage["out_size"]),
            format_count(stage["params"]),
        )
    out.print(table)
    out.print(
        f"params {summary['params']:,} ({format_count(summary['params'])})   "
        f"MACs {summary['macs']:,} ({format_count(summary['macs'])})"
    )

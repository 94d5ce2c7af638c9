"""`dnatool space list|show`: the search spaces and their exact sizes."""

from __future__ import annotations

import click

from dnatool.cli._options import json_option


@click.group()
def space() -> None:
    """Inspect search spaces."""


@space.command("list")
@json_option
def list_(as_json: bool) -> None:
    """Built-in search spaces with their sizes."""
    from dnatool.arch.space import list_spaces, load_space
    from dnatool.cli._console import emit_json, out

    spaces = [load_space(name) for name in list_spaces()]
    if as_json:
        emit_json(
            {
                "spaces": [
                    {
                        "name": s.name,
                        "size": s.size,
                        "distinct": s.distinct,
                        "coupled": s.coupled,
                        "blocks": len(s.blocks),
                    }
                    for s in spaces
                ]
            }
        )
        return
    for s in spaces:
        distinct = "" if s.distinct == s.size else f" ({s.distinct:,} distinct)"
        coupled = "  coupled widths" if s.coupled else ""
        out.print(
            f"{s.name:<18} {s.size:>28,} architectures{distinct}  {len(s.blocks)} blocks  "
            f"{s.resolution}px{coupled}"
        )


@space.command("show")
@click.argument("name")
@json_option
def show(name: str, as_json: bool) -> None:
    """Blocks, cells, ops and size of space NAME (a built-in name or a YAML file)."""
    from rich.table import Table

    from dnatool.arch.space import load_space
    from dnatool.cli._console import emit_json, out

    s = load_space(name)
    if as_json:
        emit_json(s.describe())
        return
    table = Table(
        title=f"{s.name}: {s.size:,} architectures ({s.distinct:,} distinct) "
        f"at {s.resolution}x{s.resolution}"
    )
    for column in ("block", "in widths", "stride", "cells (layers@width)", "ops", "paths"):
        table.add_column(column)
    for k, b in enumerate(s.blocks):
        table.add_row(
            str(k),
            "/".join(str(w) for w in s.in_widths(k)),
            str(b.stride),
            ", ".join(
                f"{c.layers}@{c.width}" + (f" x{c.count}" if c.count > 1 else "") for c in b.cells
            ),
            " ".join(op.name for op in b.ops),
            f"{b.paths:,}",
        )
    out.print(table)
    if s.description:
        out.print(s.description)

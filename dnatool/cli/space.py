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
        coupled = "  fabric" if s.fabric else "  coupled widths" if s.coupled else ""
        out.print(
            f"{s.name:<18} {s.size:>28,} architectures{distinct}  {len(s.blocks)} blocks  "
            f"{s.resolution}px{coupled}"
        )


def _cells_text(s, b) -> str:
    """A block's cells; a grid of one-op cells (a ViT space's) as its depths x widths x ops."""
    if s.fabric is None and all(len(set(c.options)) == 1 for c in b.cells):
        depths = "/".join(str(d) for d in sorted({c.layers for c in b.cells}))
        widths = "/".join(str(w) for w in sorted({c.width for c in b.cells}))
        return f"{len(b.cells)} cells: layers {depths} @ widths {widths}, one op per cell"
    return ", ".join(_cell_text(s, c) for c in b.cells)


def _cell_text(s, c) -> str:
    """`layers@width` (x count), or a fabric cell's route: input size > each layer's size."""
    if not c.scales:
        return f"{c.layers}@{c.width}" + (f" x{c.count}" if c.count > 1 else "")
    sizes = "/".join(str(s.scale_resolution(x)) for x in c.scales)
    return f"{s.scale_resolution(c.in_scale)}>{sizes}"


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
    fabric = s.fabric is not None
    cells_column = "cells (px in > px per layer)" if fabric else "cells (layers@width)"
    for column in ("block", "in widths", "stride", cells_column, "ops", "paths"):
        table.add_column(column)
    for k, b in enumerate(s.blocks):
        table.add_row(
            str(k),
            "/".join(str(w) for w in s.in_widths(k)),
            "fabric" if fabric else str(b.stride),
            _cells_text(s, b),
            " ".join(op.name for op in b.ops),
            f"{b.paths:,}",
        )
    out.print(table)
    if s.fabric is not None:
        ops = s.blocks[0].ops
        out.print(
            "fabric scales: "
            + ", ".join(
                f"{s.scale_resolution(i)} px x {w} ({' '.join(ops[o].name for o in s.fabric.ops[i])})"
                for i, w in enumerate(s.fabric.widths)
            )
        )
    if s.description:
        out.print(s.description)

"""`dnatool demo`: the whole chain on the built-in data, on CPU."""

from __future__ import annotations

import click

from dnatool.cli._options import json_option


@click.command()
@click.option(
    "--out",
    default="runs/demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where every stage writes its run.",
)
@json_option
def demo(out: str, as_json: bool) -> None:
    """Run every stage on the `tiny-w` space and the built-in digits data."""
    from dnatool.cli._console import Reporter, emit_json, info, progress
    from dnatool.demo import run_demo

    with progress() as bar:
        results = run_demo(out, Reporter(bar))
    if as_json:
        emit_json(results)
    else:
        info(f"demo finished; artifacts under {out} (summary in {out}/demo.json)")

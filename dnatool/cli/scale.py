"""`dnatool scale ARCH (--phi N | --to b0..b7)`: EfficientNet compound scaling of an arch."""

from __future__ import annotations

import click

from dnatool.cli._options import json_option


@click.command()
@click.argument("arch_ref", metavar="ARCH")
@click.option(
    "--phi",
    type=float,
    default=None,
    help="Compound coefficient: depth 1.2^phi, width 1.1^phi, resolution 1.15^phi.",
)
@click.option(
    "--to",
    "target",
    default=None,
    metavar="b0..b7",
    help="EfficientNet-bK's published width / depth / resolution.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None, help="Write the scaled arch file here."
)
@json_option
def scale(
    arch_ref: str, phi: float | None, target: str | None, out: str | None, as_json: bool
) -> None:
    """Scale ARCH like EfficientNet (channels rounded as timm rounds them, depth rounded up)."""
    from dnatool.arch.resolve import resolve_arch
    from dnatool.arch.scale import scale_phi, scale_to
    from dnatool.cli._console import emit_json, info
    from dnatool.errors import BadInput
    from dnatool.nn.summary import summarize
    from dnatool.utils import io
    from dnatool.utils.units import format_count

    if (phi is None) == (target is None):
        raise BadInput("give exactly one of --phi N or --to b0..b7")
    arch = resolve_arch(arch_ref)
    scaled = scale_phi(arch, phi) if phi is not None else scale_to(arch, target or "")
    if out:
        io.write_text(out, scaled.to_json())
    if as_json:
        summary = summarize(scaled)
        emit_json(
            {
                "arch": scaled.to_dict(),
                "params": summary["params"],
                "macs": summary["macs"],
                "resolution": scaled.resolution,
                "out": out,
            }
        )
        return
    if out:
        summary = summarize(scaled)
        info(
            f"{scaled.name}: {scaled.resolution} px, params {format_count(summary['params'])}, "
            f"MACs {format_count(summary['macs'])} -> {out}"
        )
    else:
        click.echo(scaled.to_json(), nl=False)

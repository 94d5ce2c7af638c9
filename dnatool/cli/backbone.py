"""`dnatool backbone config MODEL --mmseg FILE | --mmdet FILE --kind K`: OpenMMLab configs."""

from __future__ import annotations

import click

from dnatool.cli._options import json_option

KIND_HELP = "deeplabv3plus | aspp | upernet (mmseg); retinanet | faster_rcnn (mmdet)"


@click.group()
def backbone() -> None:
    """Searched networks as mmsegmentation / mmdetection backbones."""


@backbone.command("config")
@click.argument("model", metavar="MODEL")
@click.option(
    "--mmseg", "mmseg_file", type=click.Path(dir_okay=False), help="Write an mmseg config here."
)
@click.option(
    "--mmdet", "mmdet_file", type=click.Path(dir_okay=False), help="Write an mmdet config here."
)
@click.option("--kind", default=None, help=f"{KIND_HELP}. Default: deeplabv3plus / retinanet.")
@click.option(
    "--num-classes", type=click.IntRange(min=1), default=None, help="Default: the data set's."
)
@click.option(
    "--crop-size", type=click.IntRange(min=32), default=None, help="mmseg crop (default 512)."
)
@click.option("--data-root", default=None, help="Data set root written into the config.")
@click.option(
    "--checkpoint", default=None, help="Backbone weights (default: MODEL's model.pt if a run)."
)
@json_option
def config(
    model: str,
    mmseg_file: str | None,
    mmdet_file: str | None,
    kind: str | None,
    num_classes: int | None,
    crop_size: int | None,
    data_root: str | None,
    checkpoint: str | None,
    as_json: bool,
) -> None:
    """Write a config for MODEL (a model run or any ARCH) with every in_channels computed."""
    from dnatool.backbones.configs import DET_KINDS, SEG_KINDS, backbone_summary, write_config
    from dnatool.cli._console import emit_json, out
    from dnatool.errors import BadInput

    if (mmseg_file is None) == (mmdet_file is None):
        raise BadInput("give exactly one of --mmseg FILE or --mmdet FILE")
    allowed = SEG_KINDS if mmseg_file else DET_KINDS
    kind = kind or allowed[0]
    if kind not in allowed:
        raise BadInput(
            f"--kind {kind!r} is not an {'mmseg' if mmseg_file else 'mmdet'} kind "
            f"(choose from {', '.join(allowed)})"
        )
    path = write_config(
        model,
        mmseg_file or mmdet_file,
        kind,
        num_classes=num_classes,
        crop_size=crop_size,
        data_root=data_root,
        checkpoint=checkpoint,
    )
    summary = {"config": str(path), "kind": kind, **backbone_summary(model, kind, checkpoint)}
    if as_json:
        emit_json(summary)
        return
    out.print(
        f"wrote {path} ({kind}): backbone levels {summary['out_indices']}, "
        f"channels {summary['channels']}, strides {summary['strides']}"
    )

"""`dnatool rate RUN`: DNA runs score every path of every cell (Algorithm 1, feature sharing);
SPOS runs rate sampled or listed architectures by top-1 after BN recalibration."""

from __future__ import annotations

from typing import Any

import click

from dnatool.cli._options import json_option
from dnatool.train.recipe import SSL_SCORES


@click.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--norm",
    type=click.Choice(["std", "var"]),
    default=None,
    help="DNA: normaliser D of the relative L1 score (default: the recipe's, std as in the released code).",
)
@click.option(
    "--ssl-score",
    type=click.Choice(SSL_SCORES),
    default=None,
    help="DNA++: a path's score, the block's SSL loss or its invariance term alone (default: the "
    "recipe's, loss).",
)
@click.option(
    "--bn-recalibrate/--no-bn-recalibrate",
    default=None,
    help="Recalibrate BN per candidate (DNA: on one rating batch; SPOS: on --bn-batches training "
    "batches) [default: the recipe's; SPOS: on].",
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=None,
    help="SPOS: rate N uniformly sampled architectures.",
)
@click.option(
    "--archs",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="SPOS: rate the architectures of a JSON file (choice lists, arch files, search.json).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="SPOS: seed of --sample.")
@click.option(
    "--bn-batches",
    type=click.IntRange(min=0),
    default=None,
    help="SPOS: training batches forwarded to recalibrate BN (default: the recipe's).",
)
@click.option(
    "--bn-mode",
    type=click.Choice(["ema", "exact"]),
    default=None,
    help="SPOS: ema (momentum, the released code) or exact (equal-weight average) [default: the recipe's].",
)
@json_option
def rate(
    run: str,
    norm: str | None,
    ssl_score: str | None,
    bn_recalibrate: bool | None,
    sample: int | None,
    archs: str | None,
    seed: int,
    bn_batches: int | None,
    bn_mode: str | None,
    as_json: bool,
) -> None:
    """Rate RUN: DNA writes RUN/scores/block_k.npz for every block; SPOS writes
    RUN/scores/spos.json for --sample N or --archs FILE."""
    from dnatool.cli._console import Reporter, emit_json, progress
    from dnatool.errors import BadInput
    from dnatool.utils.runs import run_method

    if run_method(run) == "spos":
        if norm is not None or ssl_score is not None:
            raise BadInput(
                "--norm and --ssl-score are DNA's and DNA++'s scores; an SPOS run is rated by top-1"
            )
        from dnatool.rate.spos import run_rate_spos

        with progress() as bar:
            result = run_rate_spos(
                run,
                sample=sample,
                archs=archs,
                seed=seed,
                bn_batches=bn_batches,
                bn_mode=bn_mode,
                recalibrate=bn_recalibrate is not False,
                report=Reporter(bar),
            )
        if as_json:
            emit_json({"run": run, **result})
        else:
            _print_spos(run, result)
        return
    if sample is not None or archs is not None or bn_batches is not None or bn_mode is not None:
        raise BadInput(
            "--sample, --archs, --bn-batches and --bn-mode rate SPOS runs; a DNA, DNA++ or BossNAS run "
            "rates every path"
        )
    if run_method(run) == "bossnas":
        if norm is not None or ssl_score is not None or bn_recalibrate is False:
            raise BadInput(
                "a BossNAS run is rated against its population centre, with BN recalibration"
            )
        from dnatool.rate.bossnas import run_rate_bossnas

        with progress() as bar:
            summary = run_rate_bossnas(run, Reporter(bar))
        if as_json:
            emit_json({"run": run, "blocks": summary})
        else:
            _print_dna(run, summary)
        return
    from dnatool.rate.scores import run_rate

    with progress() as bar:
        summary = run_rate(
            run, Reporter(bar), norm=norm, bn_recalibrate=bn_recalibrate, ssl_score=ssl_score
        )
    if as_json:
        emit_json({"run": run, "blocks": summary})
        return
    _print_dna(run, summary)


def _print_dna(run: str, summary: dict[str, Any]) -> None:
    from rich.table import Table

    from dnatool.cli._console import out

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


def _print_spos(run: str, result: dict[str, Any]) -> None:
    from rich.table import Table

    from dnatool.cli._console import info, out
    from dnatool.utils.units import format_count

    archs = result["archs"]
    table = Table(title=f"best of {len(archs)} architectures ({result['file']})")
    for column in ("top-1 %", "loss", "params", "MACs", "choices"):
        table.add_column(column)
    for entry in archs[:10]:
        table.add_row(
            f"{entry['top1']:.2f}",
            f"{entry['loss']:.4f}",
            format_count(entry["params"]),
            format_count(entry["macs"]),
            " ".join(f"{c}:{''.join(map(str, p))}" for c, p in entry["choices"]),
        )
    out.print(table)
    top1 = [e["top1"] for e in archs]
    info(
        f"top-1 {min(top1):.2f}..{max(top1):.2f}% over {len(archs)} architectures in "
        f"{result['seconds']} s (BN: {result['settings']['bn_mode'] or 'not recalibrated'}, "
        f"{result['settings']['bn_batches']} batches)"
    )

"""`dnatool profile measure | validate | export-ops | import`: latency tables per device.

Each verb takes only its own options; the options they share (`--space`, `--out`, `--resume`,
`--force`, `--threads`, `--seed`, `-o/--override`) are defined once in `cli/_options.py`. The
single-command forms of earlier versions (`dnatool profile --device ...`) end in one line naming
the verb that replaces them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dnatool.cli._options import (
    batch_option,
    force_option,
    jobs_option,
    jobs_or_default,
    json_option,
    out_option,
    override_option,
    resume_option,
    seed_option,
    space_option,
    threads_option,
)

DEVICES = ("ort-cpu", "torch-cpu", "torch-cuda", "trt", "xnnpack")

OLD_FORMS = (  # (option of the single-command form, the verb that replaces it)
    ("--validate", "dnatool profile validate LUT [-n N]"),
    ("--lut", "dnatool profile validate LUT [-n N]"),
    ("--export-ops", "dnatool profile export-ops DIR [--space S]"),
    ("--import", "dnatool profile import CSV --device NAME [--space S] [--out LUT]"),
)


class ProfileGroup(click.Group):
    """Refuses the old single-command forms with a one-line hint to the verb that replaces them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0].startswith("-") and args[0] not in ("-h", "--help"):
            hint = next(
                (
                    verb
                    for option, verb in OLD_FORMS
                    if any(a.split("=")[0] == option for a in args)
                ),
                "dnatool profile measure --device DEV [--space S] [--out LUT]",
            )
            raise click.UsageError(
                f"`dnatool profile {args[0]} ...` is now a subcommand: use `{hint}` "
                "(verbs: measure, validate, export-ops, import)"
            )
        return super().parse_args(ctx, args)


@click.group(cls=ProfileGroup)
def profile() -> None:
    """Latency tables: measure one on a device, validate it, or export ops / import timings.

    \b
    dnatool profile measure --device ort-cpu --space dna-mbconv-small --threads 1
    dnatool profile validate LUT -n 30 [--json]
    dnatool profile export-ops DIR --space tiny
    dnatool profile import DIR/measurements.csv --device pixel8-xnnpack --space tiny --out LUT
    """


@profile.command()
@click.argument("run", required=False, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--device",
    "device",
    required=True,
    type=click.Choice(DEVICES),
    help="Backend to measure on.",
)
@space_option()
@threads_option
@batch_option
@click.option(
    "--precision", default="fp32", show_default=True, help="fp32, or fp16 on torch-cuda / trt."
)
@click.option(
    "--mode",
    type=click.Choice(["eager", "graph"]),
    default=None,
    help="torch-cuda: CUDA-graph replay (default; eager batch-1 time is launch overhead that "
    "does not add up) or eager launches. Other backends: eager.",
)
@click.option(
    "--clock",
    type=click.Choice(["wall", "cpu"]),
    default="wall",
    show_default=True,
    help="CPU backends: wall clock, or thread CPU time (1 thread; robust on a shared machine).",
)
@out_option
@resume_option
@force_option
@click.option(
    "--quick", is_flag=True, help="Few repetitions and networks (tests, demo): coarse tables."
)
@seed_option
@jobs_option
@override_option
@json_option
def measure(
    run: str | None,
    device: str,
    space_name: str | None,
    threads: int,
    batch: int,
    precision: str,
    mode: str | None,
    clock: str,
    out: str | None,
    resume: bool,
    force: bool,
    quick: bool,
    seed: int,
    jobs: int | None,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Measure a latency table of a space on DEVICE (the space of RUN, if given; else --space,
    else the space the paper recipe trains)."""
    from dnatool.cli._console import Reporter, emit_json, info, progress
    from dnatool.profile.backends import BackendOptions, get_backend
    from dnatool.profile.run import profile_space

    space = _space(run, space_name)
    mode = mode or ("graph" if device == "torch-cuda" else "eager")
    protocol = _protocol(quick, seed).with_overrides(overrides)
    backend = get_backend(
        device,
        BackendOptions(threads=threads, batch=batch, precision=precision, mode=mode, clock=clock),
    )
    path = Path(out or f"runs/profile/{space.name}_{device}.json")
    with progress() as bar:
        summary = profile_space(
            space,
            backend,
            path,
            protocol,
            resume=resume,
            force=force,
            report=Reporter(bar),
            jobs=jobs_or_default(jobs),
        )
    if as_json:
        emit_json(summary)
        return
    cal, check = summary["calibration"], summary["check"]
    info(
        f"wrote {summary['lut']}: {summary['entries']} entries, {summary['measured']} networks "
        f"measured, {summary['reused']} reused, {summary['seconds']:.0f} s"
    )
    hold = cal.get("holdout", {})
    info(
        f"calibration a={cal['a']:.3f} b={cal['b']:.3f} ms; held-out: "
        f"{hold.get('within_10pct', float('nan')):.0%} within 10%, MAPE "
        f"{hold.get('mape', float('nan')):.1%}; reference drift {summary['drift']['spread']:.1%}"
    )
    info(f"hold-out check {'passed' if check['passed'] else 'FAILED'}: {check['reason']}")
    over = summary["overhead"]
    if over.get("negligible") is False:
        info(
            f"too fast to claim accuracy: an empty call costs {over['per_call_ms']:.3g} ms, "
            f"{over['share_of_fastest']:.0%} of the fastest network ({over['fastest_ms']:.3g} ms)"
        )


@profile.command()
@click.argument("lut_path", metavar="LUT", type=click.Path(dir_okay=False))
@click.option(
    "-n",
    "--networks",
    type=click.IntRange(min=3),
    default=30,
    show_default=True,
    help="Networks to measure, stratified from the fastest to the slowest architecture.",
)
@click.option(
    "--measured",
    "measured_csv",
    type=click.Path(dir_okay=False),
    default=None,
    help="Compare with whole networks measured on the device instead (a filled networks.csv "
    "of `export-ops --networks`); for imported tables.",
)
@seed_option
@force_option
@jobs_option
@override_option
@json_option
def validate(
    lut_path: str,
    networks: int,
    measured_csv: str | None,
    seed: int,
    force: bool,
    jobs: int | None,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Measure networks across LUT's predicted latency range on its backend: accuracy against a
    constant predictor, raw and drift-corrected, and a verdict in words."""
    from dnatool.cli._console import Reporter, emit_json, info, progress
    from dnatool.profile.lut import load_lut
    from dnatool.profile.measure import Protocol
    from dnatool.profile.validate import validate as run_validate
    from dnatool.profile.validate import validate_measured

    lut = load_lut(lut_path, force=True)  # the device check happens in validate, on this machine
    if overrides:
        protocol = Protocol.from_dict(lut.header["protocol"]).with_overrides(overrides)
        lut.header["protocol"] = {**lut.header["protocol"], **protocol.to_dict()}
    if measured_csv is not None:
        result = validate_measured(lut, measured_csv)
    else:
        with progress() as bar:
            result = run_validate(
                lut,
                networks,
                seed=seed,
                force=force,
                report=Reporter(bar),
                jobs=jobs_or_default(jobs),
            )
    if as_json:
        emit_json(result)
        return
    lo, hi = result["predicted_range_ms"]
    info(f"{result['samples']} networks from {lo:.3f} to {hi:.3f} ms on {result['device']}:")
    rows = [("raw", result)]
    if "drift_corrected" in result:
        rows.append(("drift-corrected", result["drift_corrected"]))
    for label, figures in rows:
        const = figures["constant"]
        info(
            f"  {label}: {figures['within_5pct']:.0%} within 5%, {figures['within_10pct']:.0%} "
            f"within 10%, MAPE {figures['mape']:.1%}, Spearman {_num(figures['spearman'])}, "
            f"Kendall {_num(figures['kendall'])}; a constant ({const['constant_ms']:.3f} ms): "
            f"{const['within_10pct']:.0%} within 10%, MAPE {const['mape']:.1%}"
        )
    info(f"verdict: {result['verdict']}")
    info(f"plot: {result['plot']}")


@profile.command("export-ops")
@click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False))
@space_option(default="dna-mbconv-small")
@batch_option
@click.option(
    "--pte/--no-pte",
    default=None,
    help="Also lower every op to an ExecuTorch/XNNPACK .pte (a few seconds per op) "
    "[default: when the mobile extra is installed].",
)
@click.option(
    "-n",
    "--networks",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also N whole networks across the space's MACs range, with networks.csv, to time on "
    "the device and compare with its imported table (`validate LUT --measured`).",
)
@seed_option
@json_option
def export_ops(
    out_dir: str,
    space_name: str,
    batch: int,
    pte: bool | None,
    networks: int,
    seed: int,
    as_json: bool,
) -> None:
    """Write every op of a space as ONNX (+ .pte) with a manifest and a CSV to fill on a device."""
    from dnatool.arch.space import load_space
    from dnatool.cli._console import emit_json, info
    from dnatool.errors import BadInput
    from dnatool.profile.ops_io import export_ops as write_ops

    if 0 < networks < 3:
        raise BadInput("--networks needs at least 3 networks (or 0 for none)")
    space = load_space(space_name)
    result = write_ops(space, out_dir, batch, pte=pte, networks=networks, seed=seed)
    if as_json:
        emit_json(result)
        return
    info(
        f"wrote {result['ops']} ops to {result['dir']} (manifest.json, measurements.csv"
        f"{', .pte' if result['pte'] else ''})"
        + (f" and {networks} whole networks (networks.csv)" if networks else "")
    )


@profile.command("import")
@click.argument("csv_path", metavar="CSV", type=click.Path(dir_okay=False))
@click.option("--device", required=True, help="A label for the device the CSV was measured on.")
@space_option(default="dna-mbconv-small")
@batch_option
@out_option
@force_option
@json_option
def import_(
    csv_path: str,
    device: str,
    space_name: str,
    batch: int,
    out: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Build a table from on-device measurements (CSV columns key, mean_ms[, std_ms, n])."""
    from dnatool.arch.space import load_space
    from dnatool.cli._console import emit_json, info
    from dnatool.profile.ops_io import import_csv

    space = load_space(space_name)
    table = import_csv(
        space, csv_path, out or f"runs/profile/{space.name}_{device}.json", device, batch, force
    )
    if as_json:
        emit_json({"lut": str(table.path), "entries": len(table.entries)})
        return
    info(f"wrote {table.path}: {len(table.entries)} entries from {csv_path}")


def _space(run: str | None, space_name: str | None) -> Any:
    """RUN's space (checked against --space if both are given), --space, or the paper recipe's."""
    from dnatool.arch.space import load_space

    if run is not None:
        from dnatool.rate.score_lists import run_space

        return run_space(run, space_name)
    if space_name is None:
        from dnatool.train.recipe import TrainRecipe

        space_name = TrainRecipe.space
    return load_space(space_name)


def _protocol(quick: bool, seed: int) -> Any:
    from dnatool.profile.measure import Protocol

    return Protocol.quick(seed) if quick else Protocol(seed=seed)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"

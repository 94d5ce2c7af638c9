"""`dnatool profile`: latency lookup tables per device, their validation, export and import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dnatool.cli._options import json_option

DEVICES = ("ort-cpu", "torch-cpu", "torch-cuda", "trt", "xnnpack")


@click.command()
@click.option(
    "--device",
    "device",
    help=f"Backend to measure on: {', '.join(DEVICES)} (a free label with --import).",
)
@click.option(
    "--space",
    "space_name",
    default="dna-mbconv-small",
    show_default=True,
    help="Search space name or YAML file.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="CPU threads (ort-cpu, torch-cpu).",
)
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
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
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    help="Table to write [default: runs/profile/SPACE_DEVICE.json].",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Complete an interrupted table (only missing networks are measured).",
)
@click.option(
    "--force", is_flag=True, help="Overwrite --out, or use a table from another device or runtime."
)
@click.option(
    "--quick", is_flag=True, help="Few repetitions and networks (tests, demo): coarse tables."
)
@click.option(
    "--calibration-nets",
    type=click.IntRange(min=3),
    default=None,
    help="Whole networks for the calibration.",
)
@click.option(
    "--lut",
    "lut_path",
    type=click.Path(dir_okay=False),
    help="Table to validate (with --validate).",
)
@click.option(
    "--validate",
    "validate_n",
    type=click.IntRange(min=3),
    default=None,
    help="Validate --lut on N sampled networks.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the sampled networks."
)
@click.option(
    "--export-ops",
    "export_dir",
    type=click.Path(file_okay=False),
    help="Write every op as ONNX (+ .pte) with a manifest.",
)
@click.option(
    "--pte/--no-pte",
    default=None,
    help="With --export-ops: also lower every op to an ExecuTorch/XNNPACK .pte (a few seconds "
    "per op) [default: when the mobile extra is installed].",
)
@click.option(
    "--import",
    "import_csv",
    type=click.Path(dir_okay=False),
    help="Build a table from on-device measurements (CSV).",
)
@json_option
def profile(
    device: str | None,
    space_name: str,
    threads: int,
    batch: int,
    precision: str,
    mode: str | None,
    clock: str,
    out: str | None,
    resume: bool,
    force: bool,
    quick: bool,
    calibration_nets: int | None,
    lut_path: str | None,
    validate_n: int | None,
    seed: int,
    export_dir: str | None,
    pte: bool | None,
    import_csv: str | None,
    as_json: bool,
) -> None:
    """Measure a latency table for a search space on DEVICE, or validate, export, import one.

    \b
    dnatool profile --device ort-cpu --space dna-mbconv-small --threads 1
    dnatool profile --device ort-cpu --lut LUT --validate 30 [--json]
    dnatool profile --space tiny --export-ops DIR
    dnatool profile --space tiny --device pixel8-xnnpack --import DIR/measurements.csv --out LUT
    """
    from dnatool.errors import BadInput

    if validate_n is not None or lut_path:
        if not (validate_n and lut_path):
            raise BadInput("--validate N and --lut LUT go together")
        return _validate(lut_path, device, validate_n, seed, force, as_json)
    if export_dir:
        return _export(space_name, export_dir, batch, pte, as_json)
    if not device:
        raise BadInput("--device is required (one of " + ", ".join(DEVICES) + ")")
    if import_csv:
        return _import(space_name, import_csv, out, device, batch, force, as_json)
    mode = mode or ("graph" if device == "torch-cuda" else "eager")
    _measure(
        device,
        space_name,
        threads,
        batch,
        precision,
        mode,
        clock,
        out,
        resume,
        force,
        quick,
        calibration_nets,
        seed,
        as_json,
    )


def _protocol(quick: bool, calibration_nets: int | None, seed: int) -> Any:
    from dnatool.profile.measure import Protocol

    base = (
        Protocol(
            warmup=2,
            min_reps=5,
            max_reps=30,
            round_reps=5,
            min_seconds=0.0,
            samples_per_block=10,
            calibration_nets=6,
            reference_every=10,
            seed=seed,
        )
        if quick
        else Protocol(seed=seed)
    )
    return (
        base
        if calibration_nets is None
        else Protocol.from_dict({**base.to_dict(), "calibration_nets": calibration_nets})
    )


def _measure(
    device: str,
    space_name: str,
    threads: int,
    batch: int,
    precision: str,
    mode: str,
    clock: str,
    out: str | None,
    resume: bool,
    force: bool,
    quick: bool,
    calibration_nets: int | None,
    seed: int,
    as_json: bool,
) -> None:
    from dnatool.arch.space import load_space
    from dnatool.cli._console import Reporter, emit_json, info, progress
    from dnatool.profile.backends import BackendOptions, get_backend
    from dnatool.profile.run import profile_space

    space = load_space(space_name)
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
            _protocol(quick, calibration_nets, seed),
            resume=resume,
            force=force,
            report=Reporter(bar),
        )
    if as_json:
        emit_json(summary)
        return
    cal = summary["calibration"]
    info(
        f"wrote {summary['lut']}: {summary['entries']} entries, {summary['measured']} networks measured, "
        f"{summary['reused']} reused, {summary['seconds']:.0f} s"
    )
    hold = cal.get("holdout", {})
    info(
        f"calibration a={cal['a']:.3f} b={cal['b']:.3f} ms; held-out: {hold.get('within_10pct', float('nan')):.0%} "
        f"within 10%, MAPE {hold.get('mape', float('nan')):.1%}; reference drift {summary['drift']['spread']:.1%}"
    )


def _validate(
    lut_path: str, device: str | None, n: int, seed: int, force: bool, as_json: bool
) -> None:
    """Measure on the table's backend; a --device naming another backend is refused, not ignored
    (--force covers another machine or runtime version, not another backend)."""
    from dnatool.cli._console import Reporter, emit_json, info, progress
    from dnatool.errors import BadInput
    from dnatool.profile.lut import load_lut
    from dnatool.profile.validate import validate

    lut = load_lut(lut_path, force=True)  # the device check happens in validate, on this machine
    backend = lut.header["device"].get("backend")
    if device is not None and device != backend:
        raise BadInput(
            f"--device {device} but {lut_path} was measured on {backend!r}: validation measures "
            f"on the table's backend; drop --device or pass --device {backend}"
        )
    with progress() as bar:
        result = validate(lut, n, seed=seed, force=force, report=Reporter(bar))
    if as_json:
        emit_json(result)
        return
    info(
        f"{result['samples']} networks on {result['device']}: {result['within_5pct']:.0%} within 5%, "
        f"{result['within_10pct']:.0%} within 10%, MAPE {result['mape']:.1%}, Spearman {result['spearman']:.3f}"
    )
    if "drift_corrected" in result:
        d = result["drift_corrected"]
        info(
            f"with load drift divided out: {d['within_5pct']:.0%} within 5%, {d['within_10pct']:.0%} within 10%, "
            f"MAPE {d['mape']:.1%}"
        )
    info(f"plot: {result['plot']}")


def _export(space_name: str, export_dir: str, batch: int, pte: bool | None, as_json: bool) -> None:
    from dnatool.arch.space import load_space
    from dnatool.cli._console import emit_json, info
    from dnatool.profile.ops_io import export_ops

    result = export_ops(load_space(space_name), export_dir, batch, pte=pte)
    if as_json:
        emit_json(result)
        return
    info(
        f"wrote {result['ops']} ops to {result['dir']} (manifest.json, measurements.csv"
        f"{', .pte' if result['pte'] else ''})"
    )


def _import(
    space_name: str,
    csv_path: str,
    out: str | None,
    device: str,
    batch: int,
    force: bool,
    as_json: bool,
) -> None:
    from dnatool.arch.space import load_space
    from dnatool.cli._console import emit_json, info
    from dnatool.profile.ops_io import import_csv as do_import

    space = load_space(space_name)
    table = do_import(
        space, csv_path, out or f"runs/profile/{space.name}_{device}.json", device, batch, force
    )
    if as_json:
        emit_json({"lut": str(table.path), "entries": len(table.entries)})
        return
    info(f"wrote {table.path}: {len(table.entries)} entries from {csv_path}")

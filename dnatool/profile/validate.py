"""Proof that a table predicts whole networks: sample architectures, measure them, compare.

`measure_arch` times a whole ArchSpec network on the table's backend with the table's protocol
(the same code path as the calibration networks). `validate` samples N architectures that were
not used for calibration, reports the share within +-5% / +-10%, MAPE and Spearman's rho, and
draws predicted vs measured. The reference network of the table is re-measured between networks,
so the report also gives the figures with the machine's load drift divided out.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from dnatool.arch.space import Choice, SearchSpace, load_space
from dnatool.arch.spec import ArchSpec
from dnatool.errors import BadInput, RunFailure
from dnatool.profile import calibrate, measure
from dnatool.profile.backends import BACKENDS, BackendOptions, get_backend
from dnatool.profile.lut import LatencyTable, device_mismatch
from dnatool.profile.measure import Protocol
from dnatool.utils import io
from dnatool.utils.events import Report, quiet

_BACKENDS: dict[str, Any] = {}


def table_backend(lut: LatencyTable) -> Any:
    """The table's backend with the table's options, whatever machine this is.

    BadInput (exit 2) for a table dnatool cannot measure on: imported on-device measurements or a
    backend it does not know. RunFailure (exit 1) when the backend's runtime or device is
    missing here. Both name the backend in one line.
    """
    device = lut.header["device"]
    name = str(device.get("backend"))
    if device.get("runtime") == "external":
        raise BadInput(
            f"latency table {lut.path} holds on-device measurements of backend {name!r} "
            f"({device.get('source', 'imported')}); dnatool cannot measure on that device"
        )
    if name not in BACKENDS:
        raise BadInput(
            f"latency table {lut.path} is for backend {name!r}, which dnatool cannot measure on "
            f"(it measures on {', '.join(BACKENDS)})"
        )
    options = BackendOptions(
        threads=int(device.get("threads") or 1),
        batch=int(device.get("batch") or 1),
        precision=str(device.get("precision") or "fp32"),
        mode=str(device.get("mode") or "eager"),
        clock=str(device.get("clock") or "wall"),
    )
    cache_key = json.dumps([name, options.__dict__])
    if cache_key not in _BACKENDS:
        _BACKENDS[cache_key] = get_backend(name, options)
    return _BACKENDS[cache_key]


def backend_for(lut: LatencyTable, force: bool = False) -> Any:
    """`table_backend`, refused (BadInput) when this machine is not the table's unless forced."""
    backend = table_backend(lut)
    reason = device_mismatch(lut.header["device"], backend.fingerprint())
    if reason and not force:
        raise BadInput(
            f"latency table {lut.path} was measured elsewhere ({reason}); use --force to validate anyway"
        )
    return backend


def unavailable_reason(lut: LatencyTable) -> str | None:
    """One line saying why the table cannot be measured against on this machine (None if it can)."""
    try:
        backend = table_backend(lut)
    except (BadInput, RunFailure) as exc:
        return str(exc)
    reason = device_mismatch(lut.header["device"], backend.fingerprint())
    return f"latency table {lut.path} was measured elsewhere ({reason})" if reason else None


def reference_runner(lut: LatencyTable, space: SearchSpace, force: bool = False) -> Any:
    """The table's reference network (the one its drift is made of), ready to time."""
    protocol = Protocol.from_dict(lut.header["protocol"])
    return backend_for(lut, force).prepare(
        *measure.whole_net(space, measure.reference_choices(space, protocol), lut.batch)
    )


def reference_ms(lut: LatencyTable, space: SearchSpace, force: bool = False) -> float:
    """Median latency (ms) of the table's reference network, measured now."""
    protocol = Protocol.from_dict(lut.header["protocol"])
    return measure.time_runner(reference_runner(lut, space, force), protocol).median


def measure_arch(lut: LatencyTable, arch: ArchSpec, force: bool = False) -> float:
    """Median latency (ms) of a whole network on the table's backend with the table's protocol."""
    from dnatool.nn.timm_adapter import build_model

    backend = backend_for(lut, force)
    shape = (lut.batch, arch.in_chans, arch.resolution, arch.resolution)
    runner = backend.prepare(build_model(arch), shape)
    return measure.time_runner(runner, Protocol.from_dict(lut.header["protocol"])).median


def validation_choices(
    space: SearchSpace, lut: LatencyTable, n: int, seed: int
) -> list[list[Choice]]:
    """N architectures, none of them a calibration network of the table."""
    used = {key.split("|", 1)[1] for key in lut.samples if key.startswith("net|")}
    rng = np.random.default_rng([seed, 4])
    result: list[list[Choice]] = []
    for _ in range(100 * n):
        if len(result) == n:
            break
        choices = space.sample(rng)
        if measure.choices_text(choices) not in used:
            used.add(measure.choices_text(choices))
            result.append(choices)
    return result


def validate(
    lut: LatencyTable,
    n: int,
    seed: int = 0,
    force: bool = False,
    space: SearchSpace | None = None,
    report: Report = quiet,
) -> dict[str, Any]:
    """Measure n sampled networks; write `<lut>.validate.json` and `.png`; return the report."""
    if n < 3:
        raise BadInput("--validate needs at least 3 networks")
    space = space or load_space(str(lut.header["space"]))
    protocol = Protocol.from_dict(lut.header["protocol"])
    ref_runner = reference_runner(lut, space, force)
    report("start", task="validate", total=n)
    rows, refs = [], [measure.time_runner(ref_runner, protocol).median]
    for i, choices in enumerate(validation_choices(space, lut, n, seed)):
        ms = measure_arch(lut, space.to_arch(choices), force)
        if (i + 1) % protocol.reference_every == 0 or i == n - 1:
            refs.append(measure.time_runner(ref_runner, protocol).median)
        rows.append(
            {
                "choices": [[c, list(p)] for c, p in choices],
                "predicted_ms": lut.predict_ms(space, choices),
                "measured_ms": ms,
                "ref": len(refs) - 1,
            }
        )
        report(
            "advance",
            task="validate",
            status=f"{ms:.3f} ms vs {rows[-1]['predicted_ms']:.3f} predicted",
        )
    return _summarize(lut, rows, refs)


def _summarize(lut: LatencyTable, rows: list[dict[str, Any]], refs: list[float]) -> dict[str, Any]:
    pred = [r["predicted_ms"] for r in rows]
    meas = [r["measured_ms"] for r in rows]
    table_ref = (lut.header.get("drift") or {}).get("reference_ms")
    result: dict[str, Any] = {
        "samples": len(rows),
        **calibrate.accuracy(pred, meas),
        "device": _device_name(lut),
    }
    if table_ref:
        scale = [
            table_ref / statistics.median(refs[max(r["ref"] - 1, 0) : r["ref"] + 2]) for r in rows
        ]
        corrected = [m * s for m, s in zip(meas, scale)]
        result["drift_corrected"] = calibrate.accuracy(pred, corrected)
        result["reference_ms"] = {"table": table_ref, "now": statistics.median(refs)}
    stem = Path(lut.path).with_suffix("")
    result["plot"] = str(_plot(pred, meas, result, Path(f"{stem}.validate.png")))
    io.write_json(f"{stem}.validate.json", {**result, "networks": rows})
    return result


def _device_name(lut: LatencyTable) -> str:
    device = lut.header["device"]
    where = device.get("gpu") or device.get("cpu") or ""
    threads = (
        f", {device.get('threads')} thread(s)"
        if device.get("backend") in ("ort-cpu", "torch-cpu")
        else ""
    )
    return f"{device.get('backend')} ({where}{threads}, {device.get('precision')}, batch {device.get('batch')})"


def _plot(pred: list[float], meas: list[float], result: dict[str, Any], path: Path) -> Path:
    """Predicted vs measured with the +-10% band (matplotlib Agg, written atomically)."""
    from dnatool.utils.plots import new_figure, save_png

    fig = new_figure(figsize=(5, 5))
    ax = fig.add_subplot()
    lo, hi = min(pred + meas) * 0.9, max(pred + meas) * 1.1
    ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="y = x")
    for f in (0.9, 1.1):
        ax.plot([lo, hi], [lo * f, hi * f], "k:", lw=0.8)
    ax.scatter(meas, pred, s=14)
    ax.set(
        xlim=(lo, hi),
        ylim=(lo, hi),
        xlabel="measured (ms)",
        ylabel="predicted (ms)",
        title=f"{result['device']}\n{result['within_10pct']:.0%} within 10%, MAPE {result['mape']:.1%}",
    )
    ax.title.set_fontsize(8)
    return save_png(fig, path, dpi=110)

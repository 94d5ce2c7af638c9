"""Proof that a table predicts whole networks, across the whole latency range, in words too.

`validate` measures N architectures stratified over the table's predicted latency range, from
the exact fastest to the exact slowest (`profile.strata`), none of them a calibration network.
Each is measured in rounds alternating with the table's reference network (A B A B,
`runtime.timing.time_paired`): raw figures are medians of round medians, drift-corrected ones
the per-round ratio to the reference times the reference's latency in the table. The report has
within +-5% / +-10%, MAPE, Spearman and Kendall for both, the same figures for a constant
predictor (the median measured latency: what a table must beat), and a verdict in words, which
says so instead of claiming accuracy when networks are too fast for the runtime's per-call
overhead to be negligible. `search --verify` measures a winner with the same protocol
(`measure_paired`).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from dnatool.arch.space import Choice, SearchSpace, load_space
from dnatool.arch.spec import ArchSpec
from dnatool.errors import BadInput, RunFailure
from dnatool.profile import calibrate, measure
from dnatool.profile.backends import BACKENDS, BackendOptions, get_backend
from dnatool.profile.lut import LatencyTable, device_mismatch
from dnatool.profile.measure import Paired, Protocol
from dnatool.profile.run import OVERHEAD_SHARE
from dnatool.profile.samples import SampleKey, choices_text
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


def measure_arch(lut: LatencyTable, arch: ArchSpec, force: bool = False) -> float:
    """Median latency (ms) of a whole network on the table's backend with the table's protocol."""
    from dnatool.nn.timm_adapter import build_model

    backend = backend_for(lut, force)
    shape = (lut.batch, arch.in_chans, arch.resolution, arch.resolution)
    runner = backend.prepare(build_model(arch), shape)
    return measure.time_runner(runner, Protocol.from_dict(lut.header["protocol"])).median


def measure_paired(
    lut: LatencyTable, arch: ArchSpec, reference: Any, force: bool = False
) -> Paired:
    """A whole network measured A B A B with the table's reference network (`reference_runner`)."""
    from dnatool.nn.timm_adapter import build_model

    backend = backend_for(lut, force)
    shape = (lut.batch, arch.in_chans, arch.resolution, arch.resolution)
    runner = backend.prepare(build_model(arch), shape)
    return measure.time_paired(runner, reference, Protocol.from_dict(lut.header["protocol"]))


def table_reference_ms(lut: LatencyTable) -> float | None:
    """The reference network's median latency while the table was measured."""
    return (lut.header.get("drift") or {}).get("reference_ms")


def paired_figures(predicted: float, paired: Paired, table_ref: float | None) -> dict[str, Any]:
    """One verified network: raw and drift-corrected latency and errors (`search --verify`)."""
    result: dict[str, Any] = {
        "predicted_ms": predicted,
        "measured_ms": paired.ms,
        "error": (predicted - paired.ms) / paired.ms,
        "protocol": f"A B A B with the reference network, {paired.rounds} rounds, "
        "median of round medians",
    }
    if table_ref:
        corrected = paired.corrected(table_ref)
        result.update(
            reference_ms={"table": table_ref, "now": paired.reference_ms},
            drift=paired.reference_ms / table_ref,
            drift_corrected_ms=corrected,
            drift_corrected_error=(predicted - corrected) / corrected,
        )
    return result


def validation_choices(
    space: SearchSpace, lut: LatencyTable, n: int, seed: int
) -> list[list[Choice]]:
    """N architectures stratified over the table's predicted latency range, from the fastest to
    the slowest, none of them a calibration network of the table."""
    from dnatool.profile.strata import latency_costs, stratified

    keys = (SampleKey.parse(key) for key in lut.samples)
    used = {choices_text(k.choices_list()) for k in keys if k.kind == "net"}
    return stratified(space, latency_costs(space, lut), n, seed, exclude=used)


def validate(
    lut: LatencyTable,
    n: int,
    seed: int = 0,
    force: bool = False,
    space: SearchSpace | None = None,
    report: Report = quiet,
    jobs: int = 1,
) -> dict[str, Any]:
    """Measure n stratified networks; write `<lut>.validate.json` and `.png`; return the report.
    `jobs`: processes preparing the programs before timing (xnnpack's lowering)."""
    if n < 3:
        raise BadInput("validation needs at least 3 networks")
    space = space or load_space(str(lut.header["space"]))
    lut.check_space(space)
    choices = validation_choices(space, lut, n, seed)
    backend = backend_for(lut, force)
    if hasattr(backend, "lower_all"):
        protocol = Protocol.from_dict(lut.header["protocol"])
        nets = [*choices, measure.reference_choices(space, protocol)]
        builds = [lambda c=c: measure.whole_net(space, c, lut.batch) for c in nets]
        backend.lower_all(builds, jobs, report)
    reference = reference_runner(lut, space, force)
    report("start", task="validate", total=len(choices))
    rows = []
    for choices_k in choices:
        paired = measure_paired(lut, space.to_arch(choices_k), reference, force)
        rows.append(
            {
                "choices": [[c, list(p)] for c, p in choices_k],
                "predicted_ms": lut.predict_ms(space, choices_k),
                "measured_ms": paired.ms,
                "reference_ms": paired.reference_ms,
                "ratio": paired.ratio,
                "rounds": paired.rounds,
            }
        )
        report(
            "advance",
            task="validate",
            status=f"{paired.ms:.3f} ms vs {rows[-1]['predicted_ms']:.3f} predicted",
        )
    return summarize(lut, space, rows)


TARGETS = {"within_10pct": 0.9, "spearman": 0.9, "mape_vs_constant": 0.5}


def validate_measured(
    lut: LatencyTable, csv_path: str | Path, space: SearchSpace | None = None
) -> dict[str, Any]:
    """The report of `validate` for whole networks measured elsewhere (a phone): a filled
    `networks.csv` of `profile export-ops --networks`. No reference ran beside them, so the
    figures are raw only."""
    from dnatool.profile.ops_io import read_networks

    space = space or load_space(str(lut.header["space"]))
    lut.check_space(space)
    rows = [
        {
            "choices": [[c, list(p)] for c, p in choices],
            "predicted_ms": lut.predict_ms(space, choices),
            "measured_ms": ms,
        }
        for choices, ms in read_networks(csv_path, space)
    ]
    result = summarize(lut, space, rows)
    result["measured_on"] = f"the device, as recorded in {csv_path}"
    return result


def summarize(lut: LatencyTable, space: SearchSpace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures, baseline and verdict of validated networks; writes the report and the plot.

    Rows measured A B A B with the reference (`ratio`, `reference_ms`) also get drift-corrected
    figures, which the targets and the verdict then use."""
    pred = [r["predicted_ms"] for r in rows]
    meas = [r["measured_ms"] for r in rows]
    paired = all("ratio" in r for r in rows)
    result: dict[str, Any] = {
        "samples": len(rows),
        "sampling": "stratified over the predicted latency range, fastest to slowest",
        "predicted_range_ms": [min(pred), max(pred)],
        "measured_range_ms": [min(meas), max(meas)],
        **calibrate.accuracy(pred, meas),
        "constant": calibrate.constant_baseline(meas),
        "device": _device_name(lut),
        "check": lut.header.get("check"),
        "overhead": lut.header.get("overhead") or _overhead(lut, space),
    }
    corrected = meas
    if paired:
        refs = [r["reference_ms"] for r in rows]
        table_ref = table_reference_ms(lut) or statistics.median(refs)
        for r in rows:
            r["drift_corrected_ms"] = r["ratio"] * table_ref
        corrected = [r["drift_corrected_ms"] for r in rows]
        result["drift_corrected"] = {
            **calibrate.accuracy(pred, corrected),
            "constant": calibrate.constant_baseline(corrected),
        }
        result["reference_ms"] = {
            "table": table_ref,
            "now": statistics.median(refs),
            "drift_range": [min(refs) / table_ref, max(refs) / table_ref],
        }
        result["protocol"] = (
            "each network A B A B with the table's reference network; raw: median of round "
            "medians; drift-corrected: median per-round ratio x the reference's time in the table"
        )
    result["targets"] = targets(result.get("drift_corrected") or result)
    result["verdict_class"], result["verdict"] = verdict(result)
    stem = Path(lut.path).with_suffix("")
    result["plot"] = str(
        _plot(pred, meas, corrected if paired else None, result, Path(f"{stem}.validate.png"))
    )
    io.write_json(f"{stem}.validate.json", {**result, "networks": rows})
    return result


def _overhead(lut: LatencyTable, space: SearchSpace) -> dict[str, Any]:
    """The header's `overhead` for tables finalized before it was recorded."""
    from dnatool.profile.run import drift_corrected, overhead

    return overhead(lut, space, drift_corrected(lut.samples) if lut.samples else {})


def targets(figures: dict[str, Any]) -> dict[str, Any]:
    """The issue's bar for a table (drift-corrected figures): each target, and whether it is met."""
    want_mape = TARGETS["mape_vs_constant"] * figures["constant"]["mape"]
    spearman = figures.get("spearman")
    result: dict[str, Any] = {
        "within_10pct": {
            "want": f">= {TARGETS['within_10pct']:.0%}",
            "got": figures["within_10pct"],
            "met": figures["within_10pct"] >= TARGETS["within_10pct"],
        },
        "spearman": {
            "want": f">= {TARGETS['spearman']}",
            "got": spearman,
            "met": spearman is not None and spearman >= TARGETS["spearman"],
        },
        "mape": {
            "want": f"<= {want_mape:.2%} (half the constant predictor's)",
            "got": figures["mape"],
            "met": figures["mape"] <= want_mape,
        },
    }
    result["met"] = all(t["met"] for t in result.values())
    return result


def verdict(result: dict[str, Any]) -> tuple[str, str]:
    """(class, sentence): what the validation shows, in words.

    too-fast: the runtime's per-call overhead (an empty network) is at least `OVERHEAD_SHARE` of
    the fastest network measured, so
    per-op latencies cannot add up and no figure is a claim of accuracy; accurate: the targets
    are met; better-than-constant / no-better-than-constant otherwise.
    """
    d, over = result.get("drift_corrected") or result, result.get("overhead") or {}
    label = "drift-corrected" if "drift_corrected" in result else "measured"
    lo, hi = result["measured_range_ms"]
    figures = (
        f"{label} {d['within_10pct']:.0%} within 10%, MAPE {d['mape']:.1%} "
        f"(a constant: {d['constant']['mape']:.1%}), Spearman {_num(d['spearman'])}"
    )
    if over.get("per_call_ms") is not None and over["per_call_ms"] >= OVERHEAD_SHARE * lo:
        return "too-fast", (
            f"not a claim of accuracy: these networks take {lo:.3g}-{hi:.3g} ms and an empty call "
            f"costs {over['per_call_ms']:.3g} ms ({over['per_call_ms'] / lo:.0%} of the fastest), "
            f"so per-call overhead and timing noise are a large part of every measurement and "
            f"per-op latencies do not add up; {figures}"
        )
    if result["targets"]["met"]:
        return "accurate", (
            f"the table predicts networks from {lo:.3g} to {hi:.3g} ms: {figures}; "
            "every target is met"
        )
    missed = [name for name, t in result["targets"].items() if name != "met" and not t["met"]]
    if d["mape"] < d["constant"]["mape"]:
        return "better-than-constant", (
            f"the table beats a constant predictor but misses {', '.join(missed)}: {figures}"
        )
    return "no-better-than-constant", (
        f"the table is no better than a constant predictor (the median): {figures}; "
        "do not search with it"
    )


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _device_name(lut: LatencyTable) -> str:
    device = lut.header["device"]
    where = device.get("gpu") or device.get("cpu") or ""
    threads = (
        f", {device.get('threads')} thread(s)"
        if device.get("backend") in ("ort-cpu", "torch-cpu", "xnnpack")
        else ""
    )
    return f"{device.get('backend')} ({where}{threads}, {device.get('precision')}, batch {device.get('batch')})"


def _plot(
    pred: list[float],
    meas: list[float],
    corrected: list[float] | None,
    result: dict[str, Any],
    path: Path,
) -> Path:
    """Predicted vs measured (raw and drift-corrected) with the +-10% band (Agg, atomic)."""
    from dnatool.utils.plots import new_figure, save_png

    fig = new_figure(figsize=(5, 5))
    ax = fig.add_subplot()
    every = pred + meas + (corrected or [])
    lo, hi = min(every) * 0.9, max(every) * 1.1
    ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="y = x")
    for f in (0.9, 1.1):
        ax.plot([lo, hi], [lo * f, hi * f], "k:", lw=0.8)
    ax.scatter(meas, pred, s=14, marker="o", facecolors="none", edgecolors="C0", label="raw")
    if corrected is not None:
        ax.scatter(corrected, pred, s=14, marker="x", color="C1", label="drift-corrected")
    ax.legend(loc="upper left", fontsize=7)
    d = result.get("drift_corrected") or result
    ax.set(
        xlim=(lo, hi),
        ylim=(lo, hi),
        xlabel="measured (ms)",
        ylabel="predicted (ms)",
        title=f"{result['device']}\n{result['verdict_class']}: "
        f"{d['within_10pct']:.0%} within 10%, MAPE {d['mape']:.1%}",
    )
    ax.title.set_fontsize(8)
    return save_png(fig, path, dpi=110)

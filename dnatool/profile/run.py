"""`dnatool profile`: measure every planned network (resumable), then solve entries and calibrate.

Order of work: the plan (`measure.plan`) lists every network by a stable key; those already in
the table's `samples` are skipped on `--resume`; the rest run in shuffled order with the reference
network interleaved (whole calibration networks in A B A B rounds with it). `finalize` turns
samples into entries (per-block NNLS), adds params and MACs per entry, fits the calibration on
the whole networks, records its hold-out check and the per-call overhead, and marks the table
complete.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from dnatool.arch.space import SearchSpace
from dnatool.errors import BadInput
from dnatool.profile import calibrate, measure
from dnatool.profile.lut import (
    LatencyTable,
    head_key,
    layer_keys,
    load_lut,
    new_header,
    space_digest,
    space_keys,
    stem_key,
)
from dnatool.profile.measure import Protocol
from dnatool.profile.samples import SampleKey
from dnatool.utils.events import Report, quiet
from dnatool.utils.locks import locked


def open_table(
    out: Path, space: SearchSpace, backend: Any, protocol: Protocol, resume: bool, force: bool
) -> LatencyTable:
    """A fresh table, or the unfinished/finished one at `out` when resuming on the same device."""
    device = backend.fingerprint()
    if out.exists() and resume:
        table = load_lut(out, force=force, device=device, allow_incomplete=True)
        if table.header.get("space_digest") != space_digest(space):
            raise BadInput(
                f"{out} was measured for another space ({table.header.get('space')!r}); "
                "choose another --out"
            )
        return table
    if out.exists() and not force:
        raise BadInput(f"{out} exists; use --resume to complete it or --force to overwrite it")
    return LatencyTable(out, new_header(space, device, protocol.to_dict()))


@locked("out")  # one writer per table
def profile_space(
    space: SearchSpace,
    backend: Any,
    out: str | Path,
    protocol: Protocol | None = None,
    resume: bool = False,
    force: bool = False,
    report: Report = quiet,
    jobs: int = 1,
) -> dict[str, Any]:
    """Measure what is missing, finalize, and return a summary (measured / reused / seconds).
    `jobs`: processes that prepare programs before timing, for backends whose preparation is
    slow (xnnpack's lowering)."""
    start = time.perf_counter()
    protocol = protocol or Protocol()
    table = open_table(Path(out), space, backend, protocol, resume, force)
    protocol = Protocol.from_dict(table.header["protocol"])
    if hasattr(backend, "use_timing_cache"):
        backend.use_timing_cache(Path(out).with_suffix(".timing.cache"))
    units = measure.plan(space, protocol, table.batch)
    todo = [key for key in units if key not in table.samples]
    np.random.default_rng([protocol.seed, 3]).shuffle(todo)
    report("start", task="profile", total=len(units), done=len(units) - len(todo))
    report(
        "log",
        message=f"profile: {len(todo)} networks to measure, {len(units) - len(todo)} already in {out}",
    )
    if todo and hasattr(backend, "lower_all"):
        ref = measure.reference_choices(space, protocol)
        builds = [units[key] for key in todo]
        backend.lower_all(
            [*builds, lambda: measure.whole_net(space, ref, table.batch)], jobs, report
        )
    _measure_all(table, space, backend, protocol, units, todo, report)
    finalize(table, space)
    table.save()
    cal = table.header["calibration"]
    return {
        "lut": str(table.path),
        "entries": len(table.entries),
        "measured": len(todo),
        "reused": len(units) - len(todo),
        "seconds": measure.elapsed(start),
        "calibration": {
            k: cal[k]
            for k in ("a", "b", "holdout", "holdout_constant", "uncalibrated_mape", "constrained")
            if k in cal
        },
        "check": table.header["check"],
        "overhead": table.header["overhead"],
        "drift": table.header.get("drift"),
    }


def _measure_all(
    table: LatencyTable,
    space: SearchSpace,
    backend: Any,
    protocol: Protocol,
    units: dict[str, Any],
    todo: list[str],
    report: Report,
) -> None:
    reference = None
    refs = sum(1 for key in table.samples if SampleKey.parse(key).kind == "ref")
    for i, key in enumerate(todo + ["<end>"]):
        if i % protocol.reference_every == 0 or key == "<end>":
            if reference is None:
                ref_choices = measure.reference_choices(space, protocol)
                reference = backend.prepare(*measure.whole_net(space, ref_choices, table.batch))
            table.samples[str(SampleKey.ref(refs))] = measure.time_runner(
                reference, protocol
            ).to_dict()
            refs += 1
        if key == "<end>":
            break
        kind = SampleKey.parse(key).kind
        if kind == "net":  # whole networks: A B A B with the reference
            module, shape = units[key]()
            paired = measure.time_paired(backend.prepare(module, shape), reference, protocol)
            table.samples[key] = {**paired.to_dict(), "ref": refs - 1}
            ms = paired.ms
        else:
            timing = measure.measure_unit(backend, units[key], protocol)
            table.samples[key] = {**timing.to_dict(), "ref": refs - 1}
            ms = timing.median
        table.save()
        report("advance", task="profile", status=f"{kind} {ms:.3f} ms")


def finalize(table: LatencyTable, space: SearchSpace) -> None:
    """Samples -> entries (with params / MACs), calibration, drift; mark the table complete."""
    ms = drift_corrected(table.samples)
    entries = _solve_entries(table, space, ms)
    table.entries = {
        key: {**entries[key], **costs}
        for key, costs in entry_costs(space, table.batch, table.dtype).items()
    }
    keys = {key: SampleKey.parse(key) for key in table.samples}
    nets = [
        (sample.choices_list(), ms[key]) for key, sample in keys.items() if sample.kind == "net"
    ]
    raw = [table.raw_total_ms(space, choices) for choices, _ in nets]
    table.header["calibration"] = calibrate.calibrate(
        raw, [ms for _, ms in nets], seed=table.header["protocol"]["seed"]
    )
    refs = [table.samples[key]["ms"] for key, sample in keys.items() if sample.kind == "ref"]
    if refs:
        med = statistics.median(refs)
        table.header["drift"] = {
            "reference_ms": med,
            "measurements": len(refs),
            "spread": (max(refs) - min(refs)) / med,
            "correction": "each network scaled by reference median / median of the "
            "four reference runs around it; whole networks: reference median x their "
            "median per-round ratio to the reference",
        }
    table.header["check"] = table.header["calibration"]["check"]
    table.header["overhead"] = overhead(table, space, ms)
    table.header["complete"] = True


OVERHEAD_SHARE = 0.02  # per-call overhead above this share of the fastest network: "too fast"


def overhead(table: LatencyTable, space: SearchSpace, ms: dict[str, float]) -> dict[str, Any]:
    """The runtime's per-call cost (an empty network at the stem's input) against the fastest and
    slowest architectures the table predicts: where it is not negligible, whole networks are too
    fast for per-op latencies to add up, and the table's figures are no claim of accuracy."""
    from dnatool.profile.strata import extremes, latency_costs

    costs = latency_costs(space, table)
    lo_index, hi_index = extremes(costs)
    fastest, slowest = costs.total(lo_index), costs.total(hi_index)
    per_call = ms.get(str(SampleKey.stem(overhead=True)))
    result: dict[str, Any] = {"fastest_ms": fastest, "slowest_ms": slowest}
    if per_call is not None:
        share = per_call / fastest if fastest > 0 else float("inf")
        result.update(
            per_call_ms=per_call,
            share_of_fastest=share,
            negligible=bool(share < OVERHEAD_SHARE),
            rule=f"per-call overhead < {OVERHEAD_SHARE:.0%} of the fastest network",
        )
    return result


def drift_corrected(samples: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Median latency of every sample, rescaled to the reference network's median conditions.

    On a shared machine the load of other processes changes during a run; the reference network
    measured before and after each network tells by how much, and the ratio is undone. Whole
    networks measured in rounds with the reference (a `ratio`) are the reference's median times
    that ratio.
    """
    keys = {key: SampleKey.parse(key) for key in samples}
    refs = {k.index: samples[key]["ms"] for key, k in keys.items() if k.kind == "ref"}
    if not refs:
        return {key: s["ms"] for key, s in samples.items()}
    median = statistics.median(refs.values())
    result = {}
    for key, s in samples.items():
        if "ratio" in s:
            result[key] = s["ratio"] * median
            continue
        i = s.get("ref", -10)
        around = [
            refs[j] for j in range(i - 1, i + 3) if j in refs
        ]  # median: one burst cannot skew it
        result[key] = s["ms"] * median / statistics.median(around) if around else s["ms"]
    return result


def _solve_entries(
    table: LatencyTable, space: SearchSpace, ms: dict[str, float]
) -> dict[str, dict[str, Any]]:
    """Stem and head entries: their time less the empty network at their input; layer entries:
    per block, least squares over the sampled paths (each less its block's input overhead)."""
    samples = table.samples
    entries = {}
    names = [(SampleKey.stem(), stem_key(space, table.batch, table.dtype))] + [
        (SampleKey.head(space, w), head_key(space, table.batch, table.dtype, w))
        for w in space.in_widths(len(space.blocks))
    ]
    for sample, key in names:
        s = samples[str(sample)]
        entries[key] = {
            "mean": max(ms[str(sample)] - ms[str(sample.input_overhead())], 0.0),
            "std": s["std"],
            "n": s["n"],
        }
    paths = [
        (key, sample)
        for key, sample in ((key, SampleKey.parse(key)) for key in samples)
        if sample.kind == "block" and not sample.overhead
    ]
    for k in range(len(space.blocks)):
        rows, targets = [], []
        for key, sample in paths:
            if sample.block == k:
                assert sample.choice is not None
                rows.append(
                    layer_keys(space, k, sample.choice, table.batch, table.dtype, sample.width)
                )
                targets.append(ms[key] - ms[str(sample.input_overhead())])
        entries.update(calibrate.solve_ops(rows, targets))
    return entries


def entry_costs(space: SearchSpace, batch: int, dtype: str) -> dict[str, dict[str, Any]]:
    """Params and MACs (batch 1) of every entry: layers by THE per-layer counter search uses
    (`nn.counts.op_counts`, the same timm module on the meta device), stem and head counted on
    the modules that were timed."""
    from dnatool.nn.counts import op_counts
    from dnatool.nn.timm_adapter import count_macs, count_params

    costs = {}
    for key, (k, spec, width, res) in space_keys(space, batch, dtype).items():
        if spec is None:
            kind = "stem" if k < 0 else "head"
            module, _ = measure.stem_net(space, 1) if k < 0 else measure.head_net(space, 1, width)
            counts = count_params(module), count_macs(module, (1, width, res, res))
        else:
            kind, counts = spec.type, op_counts(width, spec.to_str(), space.act, res)
        costs[key] = {
            "kind": kind,
            "block": k,
            "spec": spec.to_str() if spec else kind,
            "params": int(counts[0]),
            "macs": int(counts[1]),
            "input": [batch, width, res, res],
        }
    return costs

"""Do searched winners run as fast as the table says? Predicted vs measured along the front.

`dnatool profile validate` checks networks spread over the whole latency range; a search winner
sits on the Pareto front, where the table's errors could pile up (all the largest kernels, or
all the smallest). This script searches one run under N latency budgets spread evenly between
the fastest and the best-scoring architecture on the table, measures every winner's whole
network on the table's backend with the protocol of `dnatool search --verify` and `profile
validate` (A B A B rounds with the table's reference network, medians of round medians) and
reports, raw and drift-corrected, the share within +-5% / +-10%, MAPE, Spearman and Kendall,
with the same figures for a constant predictor (the median measured latency).

Without `--run`, the score lists are SYNTHETIC (`write_synthetic_run`: realistic shape, nothing
learned); the latencies are always measured.

    python benchmarks/search_verify.py --lut LUT --space dna-mbconv --budgets 10 --json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from dnatool.arch.space import load_space
from dnatool.profile.calibrate import accuracy, constant_baseline
from dnatool.rate.score_lists import load_score_lists, run_space
from dnatool.search.engine import search
from dnatool.search.run import load_table, search_run
from dnatool.search.synthetic import write_synthetic_run


def along_front(run: Path, lut: Path, budgets: int) -> dict:
    space = run_space(run)
    table = load_table(lut)
    loose = search(space, load_score_lists(run, space), {"latency_ms": 1e12}, lut=table, top=1)
    lo, hi = loose.front[0]["latency_ms"], loose.front[-1]["latency_ms"]
    rows = []
    for i, budget in enumerate(np.linspace(lo, hi, budgets)):
        res, _, _ = search_run(
            run, {"latency_ms": float(budget)}, lut=lut, out=run / f"search_{i}.json", verify=True
        )
        v = res.extra["verify"]
        if "skipped" in v:
            raise SystemExit(f"cannot measure on this table's backend here: {v['skipped']}")
        rows.append({"budget_ms": float(budget), **v})
        print(
            f"budget {budget:.3f} ms: predicted {v['predicted_ms']:.3f} ms, "
            f"measured {v['measured_ms']:.3f} ms ({100 * v['error']:+.1f}%"
            + (
                f"; drift {v['drift']:.3f}, corrected {v['drift_corrected_ms']:.3f} ms "
                f"({100 * v['drift_corrected_error']:+.1f}%)"
                if "drift" in v
                else ""
            )
            + ")",
            flush=True,
        )
    pred = [r["predicted_ms"] for r in rows]
    raw = [r["measured_ms"] for r in rows]
    result = {
        "lut": str(lut),
        "device": table.header["device"],
        "space": space.name,
        "budgets": budgets,
        "protocol": rows[0]["protocol"],
        **accuracy(pred, raw),
        "constant": constant_baseline(raw),
        "rows": rows,
    }
    if all("drift_corrected_ms" in r for r in rows):
        # The table's reference network measured round by round beside each winner: the
        # machine's own drift (clock, load, other tenants) divided out, as `profile validate` does.
        corrected = [r["drift_corrected_ms"] for r in rows]
        result["drift_range"] = [min(r["drift"] for r in rows), max(r["drift"] for r in rows)]
        result["drift_corrected"] = {
            **accuracy(pred, corrected),
            "constant": constant_baseline(corrected),
        }
        # the target for winners: >= 90% within 10%, drift-corrected
        result["target_met"] = result["drift_corrected"]["within_10pct"] >= 0.9
    return result


def _line(figures: dict) -> str:
    rank = "n/a" if figures["spearman"] is None else f"{figures['spearman']:.2f}"
    tau = "n/a" if figures["kendall"] is None else f"{figures['kendall']:.2f}"
    const = figures["constant"]
    return (
        f"{100 * figures['within_5pct']:.0f}% within 5%, {100 * figures['within_10pct']:.0f}% "
        f"within 10%, MAPE {100 * figures['mape']:.1f}%, Spearman {rank}, Kendall {tau}; "
        f"a constant: {100 * const['within_10pct']:.0f}% within 10%, MAPE {100 * const['mape']:.1f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lut", required=True, type=Path, help="a table of `dnatool profile`")
    parser.add_argument("--space", default=None, help="space of the synthetic run (no --run)")
    parser.add_argument("--run", type=Path, default=None, help="a rated run (default: synthetic)")
    parser.add_argument("--budgets", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    run = args.run
    if run is None:
        space = load_space(args.space or load_table(args.lut).header["space"])
        run = Path(tempfile.mkdtemp(prefix="search_verify_")) / "synthetic"
        write_synthetic_run(run, space)
    result = along_front(run, args.lut, args.budgets)
    result["scores"] = "rated run" if args.run else "SYNTHETIC score lists"
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    else:
        print(f"{result['budgets']} winners, raw: {_line(result)}")
        if "drift_corrected" in result:
            lo, hi = result["drift_range"]
            print(
                f"reference drift {lo:.3f}-{hi:.3f}; drift-corrected: {_line(result['drift_corrected'])}"
            )


if __name__ == "__main__":
    main()

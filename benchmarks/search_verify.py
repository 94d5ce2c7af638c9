"""Do searched winners run as fast as the table says? Predicted vs measured along the front.

`dnatool profile --validate` checks random architectures; a search winner is not random: it sits
on the Pareto front, where the table's errors could pile up (all the largest kernels, or all the
smallest). This script searches one run under N latency budgets spread evenly between the
fastest and the slowest architecture on the table, measures every winner's whole network on the
table's backend (`dnatool search --verify`) and reports the share within +-5% / +-10% and MAPE.

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
            + (f", drift {v['drift']:.3f}" if "drift" in v else "")
            + ")",
            flush=True,
        )
    errors = np.abs([r["error"] for r in rows])
    corrected = [r["drift_corrected_error"] for r in rows if "drift_corrected_error" in r]
    drift = {}
    if len(corrected) == len(rows):
        # The table's reference network re-measured beside each winner: the machine's own drift
        # (clock, load, other tenants) divided out, as `dnatool profile --validate` reports it.
        c = np.abs(corrected)
        drift = {
            "drift_range": [min(r["drift"] for r in rows), max(r["drift"] for r in rows)],
            "drift_corrected_within_5pct": float(np.mean(c <= 0.05)),
            "drift_corrected_within_10pct": float(np.mean(c <= 0.10)),
            "drift_corrected_mape": float(np.mean(c)),
        }
    return {
        **drift,
        "lut": str(lut),
        "device": table.header["device"],
        "space": space.name,
        "budgets": budgets,
        "within_5pct": float(np.mean(errors <= 0.05)),
        "within_10pct": float(np.mean(errors <= 0.10)),
        "mape": float(np.mean(errors)),
        "rows": rows,
    }


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
        print(
            f"{result['budgets']} winners: {100 * result['within_5pct']:.0f}% within 5%, "
            f"{100 * result['within_10pct']:.0f}% within 10%, MAPE {100 * result['mape']:.1f}%"
        )
        if "drift_corrected_mape" in result:
            lo, hi = result["drift_range"]
            print(
                f"reference drift {lo:.3f}-{hi:.3f}; drift-corrected: "
                f"{100 * result['drift_corrected_within_5pct']:.0f}% within 5%, "
                f"{100 * result['drift_corrected_within_10pct']:.0f}% within 10%, "
                f"MAPE {100 * result['drift_corrected_mape']:.1f}%"
            )


if __name__ == "__main__":
    main()

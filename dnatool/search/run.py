"""Search a rated run directory and write `search.json` + `pareto.png` (the CLI and demo entry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnatool.rate.score_lists import load_score_lists, run_space
from dnatool.search.engine import SearchResult, search
from dnatool.utils.events import Report
from dnatool.utils.locks import locked


def load_table(path: str | Path | None) -> Any:
    """The latency table of `dnatool profile` (imported only when a table is used)."""
    if path is None:
        return None
    from dnatool.profile.lut import load_lut

    return load_lut(path)


@locked(lambda a: a["out"] or Path(a["run"]) / "search.json")  # one writer per result
def search_run(
    run: str | Path,
    budgets: dict[str, float],
    *,
    lut: str | Path | None = None,
    out: str | Path | None = None,
    space_ref: str | None = None,
    report: Report | None = None,
    verify: bool = False,
    **options: Any,
) -> tuple[SearchResult, Path, Path]:
    """Search RUN's score lists under `budgets`; `options` go to `engine.search`."""
    from dnatool.errors import BadInput
    from dnatool.search import result as R

    table = load_table(lut)
    if verify and table is None:
        raise BadInput("--verify needs --lut (the table names the backend to measure on)")
    space = run_space(run, space_ref)
    if options.get("algorithm") == "evolution" and "state_path" not in options:
        from dnatool.search.evolution import state_paths

        options["state_path"] = state_paths(out or Path(run) / "search.json")[0]
    res = search(space, load_score_lists(run, space), budgets, lut=table, report=report, **options)
    if verify:
        res.extra["verify"] = verify_winner(
            table, space, res.winner["arch"], res.winner["latency_ms"]
        )
    inputs: dict[str, Any] = {"run": str(run), "space": space_ref or space.name}
    if lut is not None:
        from dnatool.utils.io import file_sha256

        inputs["lut"] = {"path": str(lut), "sha256": file_sha256(lut)}
    header = getattr(table, "header", None) or {}
    note = "SYNTHETIC latency table" if header.get("synthetic") else ""
    path, png = R.write(res, out or Path(run) / "search.json", inputs, note=note)
    return res, path, png


def verify_winner(
    table: Any, space: Any, arch_dict: dict[str, Any], predicted: float
) -> dict[str, Any]:
    """Measure the winner's whole network on the table's backend: predicted against measured.

    The protocol of `dnatool profile validate`: A B A B rounds with the table's reference
    network, so `drift` (reference now / when the table was made) shows a loaded machine and
    `drift_corrected_error` divides it out round by round. When the backend cannot measure here
    (runtime or device missing, imported or synthetic table, another machine) the answer is
    `{"skipped": reason}`: the search result stands without it.
    """
    from dnatool.arch.spec import ArchSpec
    from dnatool.profile import validate as V

    reason = V.unavailable_reason(table)
    if reason:
        return {"skipped": reason}
    paired = V.measure_paired(
        table, ArchSpec.from_dict(arch_dict), V.reference_runner(table, space)
    )
    return V.paired_figures(predicted, paired, V.table_reference_ms(table))


def demo_search(
    run: str | Path,
    lut: str | Path,
    out_dir: str | Path,
    report: Report | None = None,
    fraction: float = 0.5,
) -> dict[str, Any]:
    """The demo's search: a latency budget `fraction` of the way from the fastest to the slowest
    architecture on the table (so it is always feasible), the winner also written as an arch file."""
    from dnatool.utils import io

    out_dir = Path(out_dir)
    space = run_space(run)
    loose = search(
        space, load_score_lists(run, space), {"latency_ms": 1e12}, lut=load_table(lut), top=1
    )
    lo, hi = loose.front[0]["latency_ms"], loose.front[-1]["latency_ms"]
    budget = lo + fraction * (hi - lo)
    res, path, png = search_run(
        run, {"latency_ms": budget}, lut=lut, out=out_dir / "search.json", report=report
    )
    arch_file = io.write_json(out_dir / "arch.json", res.winner["arch"])
    return {
        "search_json": str(path),
        "arch_file": str(arch_file),
        "pareto_png": str(png),
        "budget_ms": budget,
        "latency_ms": res.winner["latency_ms"],
        "score": res.winner["score"],
    }

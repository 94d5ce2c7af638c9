"""`dnatool search` and `dnatool bench search` end to end on SYNTHETIC score lists and table."""

from __future__ import annotations

import json

import pytest

from dnatool.arch.resolve import resolve_arch
from dnatool.arch.space import load_space
from dnatool.search.engine import search
from dnatool.search.synthetic import (
    SyntheticLatencyTable,
    synthetic_score_lists,
    write_synthetic_lut,
    write_synthetic_run,
)

SUMMARY = {
    "arch",
    "score",
    "latency_ms",
    "params",
    "macs",
    "front_size",
    "evaluated_space_size",
    "seconds",
}


@pytest.fixture
def rated_run(tmp_path):
    space = load_space("tiny")
    run = write_synthetic_run(tmp_path / "run", space, seed=3)
    lut = write_synthetic_lut(tmp_path / "lut.json", space, seed=3)
    return run, lut


def test_search_cli_writes_a_result_every_tool_reads(cli, rated_run, tmp_path):
    run, lut = rated_run
    out = tmp_path / "res" / "search.json"
    res = cli(
        "search",
        str(run),
        "--latency",
        "350us",
        "--params",
        "90k",
        "--lut",
        str(lut),
        "--top",
        "3",
        "--out",
        str(out),
        "--json",
    )
    assert res.code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert SUMMARY <= set(summary)
    assert summary["latency_ms"] <= 0.35 and summary["params"] <= 90_000
    assert summary["evaluated_space_size"] == 25_600
    data = json.loads(out.read_text())
    assert data["winner"]["score"] == summary["score"] == data["top"][0]["score"]
    assert [t["score"] for t in data["top"]] == sorted(t["score"] for t in data["top"])
    assert len(data["top"]) == 3 and len(data["front"]) == summary["front_size"]
    assert resolve_arch(str(out)).arch_def == summary["arch"]["arch_def"]
    assert (out.parent / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def test_infeasible_budget_is_one_line_exit_2(cli, rated_run):
    run, lut = rated_run
    res = cli("search", str(run), "--latency", "1us", "--lut", str(lut))
    assert res.code == 2
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith(
        "Error: no architecture fits latency_ms <= 0.001 ms: the smallest achievable"
    )
    assert "Traceback" not in res.stderr


def test_dfs_baseline_agrees_with_exact_search():
    space = load_space("tiny")
    lists, table = synthetic_score_lists(space, seed=4), SyntheticLatencyTable(seed=4)
    for budget in (0.35, 0.37, 0.4):
        exact = search(space, lists, {"latency_ms": budget}, lut=table, top=1)
        dfs = search(space, lists, {"latency_ms": budget}, lut=table, algorithm="dfs")
        assert dfs.winner == exact.winner


def test_dfs_algorithm_as_in_the_readme(cli, rated_run, tmp_path):
    """`--algorithm dfs` without --top: the walk's single answer, equal to the exact winner."""
    from dnatool.profile.lut import load_lut

    run, lut = rated_run
    out = tmp_path / "dfs.json"
    res = cli(
        "search",
        str(run),
        "--latency",
        "350us",
        "--lut",
        str(lut),
        "--algorithm",
        "dfs",
        "--out",
        str(out),
        "--json",
    )
    assert res.code == 0, res.stderr
    data = json.loads(out.read_text())
    assert data["algorithm"] == "dfs" and len(data["top"]) == 1
    space = load_space("tiny")
    exact = search(
        space, synthetic_score_lists(space, seed=3), {"latency_ms": 0.35}, lut=load_lut(lut)
    )
    assert data["winner"] == exact.winner


def test_margin_as_a_percentage(cli, rated_run, tmp_path):
    run, lut = rated_run
    out = tmp_path / "margin.json"
    res = cli(
        "search",
        str(run),
        "--latency",
        "400us",
        "--lut",
        str(lut),
        "--margin",
        "5%",
        "--out",
        str(out),
        "--json",
    )
    assert res.code == 0, res.stderr
    data = json.loads(out.read_text())
    assert data["margin"] == 0.05 and data["requested_budget"]["latency_ms"] == 0.4
    assert data["budget"]["latency_ms"] == pytest.approx(0.4 * 0.95)
    assert json.loads(res.stdout)["latency_ms"] <= 0.4 * 0.95


def test_verify_without_the_backend_still_writes_the_result(cli, rated_run, tmp_path):
    """The SYNTHETIC table's backend cannot run anywhere: search.json, the plot and the summary
    are written, verify says why it was skipped (stderr too), and the exit code is 0."""
    run, lut = rated_run
    out = tmp_path / "v" / "search.json"
    res = cli(
        "search",
        str(run),
        "--latency",
        "350us",
        "--lut",
        str(lut),
        "--verify",
        "--out",
        str(out),
        "--json",
    )
    assert res.code == 0, res.stderr
    skipped = json.loads(res.stdout)["verify"]["skipped"]
    assert "backend 'synthetic'" in skipped and "\n" not in skipped
    assert json.loads(out.read_text())["verify"] == {"skipped": skipped}
    assert f"verify skipped: {skipped}" in " ".join(res.stderr.split())
    assert (out.parent / "pareto.png").is_file()


def test_verify_with_a_missing_runtime_is_skipped(rated_run, tmp_path, monkeypatch):
    """A torch-cuda table on a machine without CUDA: the search stands, verify names the reason."""
    from dnatool.profile.backends.torch_backend import TorchCudaBackend
    from dnatool.search.run import search_run

    run, lut = rated_run
    data = json.loads(lut.read_text())
    data["header"]["device"]["backend"] = "torch-cuda"
    (tmp_path / "cuda.json").write_text(json.dumps(data))
    monkeypatch.setattr(TorchCudaBackend, "missing", staticmethod(lambda: "no CUDA device"))
    res, path, _ = search_run(
        run, {"latency_ms": 0.35}, lut=tmp_path / "cuda.json", out=tmp_path / "s.json", verify=True
    )
    expected = {"skipped": "backend torch-cuda is not available here: no CUDA device"}
    assert res.extra["verify"] == expected and json.loads(path.read_text())["verify"] == expected


def test_bench_search_says_when_no_walk_finished(monkeypatch):
    """With no finished walk nothing was compared: same_optimum is None, not all([]) == True."""
    from dnatool.search import bench

    monkeypatch.setattr(bench, "time_dfs", lambda problem, timeout: (timeout, None, False))
    result = bench.bench_search("tiny", [0.3, 0.6], dfs_timeout=1.0)
    assert result["same_optimum"] is None and result["dfs_finished"] == 0
    assert result["speedup_is_lower_bound"] is True


def test_bench_search_json(cli):
    res = cli(
        "bench",
        "search",
        "--space",
        "tiny",
        "--fractions",
        "0.2,0.5",
        "--dfs-timeout",
        "20",
        "--json",
    )
    assert res.code == 0, res.stderr
    data = json.loads(res.stdout)
    assert {"space_size", "exact_seconds", "dfs_seconds", "speedup", "same_optimum"} <= set(data)
    assert (
        data["space_size"] == 25_600 and data["same_optimum"] is True and data["dfs_finished"] == 2
    )
    assert data["speedup"] == pytest.approx(data["dfs_seconds"] / data["exact_seconds"])


def test_demo_stage_search(rated_run, tmp_path):
    from dnatool.demo import DemoContext, stage_search
    from dnatool.errors import RunFailure

    run, lut = rated_run
    with pytest.raises(RunFailure, match="profile"):
        stage_search(DemoContext(out=tmp_path, results={"train": {"run": str(run)}}))
    ctx = DemoContext(
        out=tmp_path, results={"train": {"run": str(run)}, "profile": {"lut": str(lut)}}
    )
    result = stage_search(ctx)
    assert result["latency_ms"] <= result["budget_ms"]
    assert resolve_arch(result["arch_file"]) == resolve_arch(result["search_json"])
    assert json.loads(open(result["search_json"]).read())["winner"]["score"] == result["score"]

"""`dnatool demo` end to end, as `make demo` runs it: every stage, the stated figures, reuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dnatool.retrain.recipe import load_retrain_recipe

STAGES = ["space", "arch", "teacher", "train", "rate", "profile", "search", "retrain", "export"]
STATED_TOP1 = 90.0  # recipes/retrain-tiny.yaml: >= 90% top-1 on the digits validation split
PARITY = 1e-4  # max abs diff of the ONNX export against torch
# What a finished stage leaves behind and a rerun must not rewrite (the expensive work).
REUSED = [
    "teacher/checkpoint.pt",
    "supernet/supernet/block_0.pt",
    "supernet/scores/block_0.npz",
    "profile/tiny-w_ort-cpu.json",
    "retrain/checkpoint.pt",
]


def _mtimes(out: Path) -> dict[str, int]:
    return {name: (out / name).stat().st_mtime_ns for name in REUSED}


@pytest.mark.slow
def test_demo_runs_every_stage_and_a_rerun_reuses_them(cli, tmp_path):
    """About 70-90 s for the first run on an idle 2-core machine; the rerun reuses the runs."""
    out = tmp_path / "demo"
    first = cli("demo", "--out", str(out))
    assert first.code == 0, first.stderr
    summary = json.loads((out / "demo.json").read_text())
    assert list(summary) == STAGES

    epochs = load_retrain_recipe("retrain-tiny").epochs
    retrain, teacher = summary["retrain"], summary["teacher"]
    assert retrain["top1"] >= STATED_TOP1, retrain
    assert retrain["teacher_top1"] == teacher["top1"] >= STATED_TOP1
    assert retrain["arch_file"] == summary["search"]["arch_file"]  # the winner, not the random net

    search = summary["search"]
    assert 0 < search["latency_ms"] <= search["budget_ms"]
    result = json.loads(Path(search["search_json"]).read_text())
    assert result["winner"]["latency_ms"] == search["latency_ms"]
    assert result["budget"]["latency_ms"] == search["budget_ms"]
    # tiny-w: cells of different widths, so the search ran the coupled (per-width) solver
    assert result["evaluated_space_size"] == summary["space"]["distinct"] == 110_592
    assert result["coupled"] and summary["space"]["coupled"]
    from dnatool.arch.resolve import resolve_arch
    from dnatool.nn.summary import summarize

    counted = summarize(resolve_arch(search["arch_file"]))
    assert (result["winner"]["params"], result["winner"]["macs"]) == (
        counted["params"],
        counted["macs"],
    )

    export = summary["export"]
    assert export["trained"] and export["max_abs_diff"] <= PARITY
    assert Path(export["onnx"]).stat().st_size > 0

    before = _mtimes(out)
    second = cli("demo", "--out", str(out))
    assert second.code == 0, second.stderr
    assert _mtimes(out) == before
    assert f"{out / 'teacher'} finished {epochs}/{epochs} epochs already, reused" in second.stderr
    assert f"{out / 'retrain'} finished {epochs}/{epochs} epochs already, reused" in second.stderr
    assert "scores already there, skipped" in second.stderr
    assert "validation are complete, reused" in second.stderr
    assert not [line for line in second.stderr.splitlines() if line.startswith("epoch ")]
    again = json.loads((out / "demo.json").read_text())
    assert again["search"] == search and again["retrain"] == retrain

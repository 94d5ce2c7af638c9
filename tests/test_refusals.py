"""Bad input found by kill / abuse tests, each refused in one line with exit 2 (issue 19)."""

from __future__ import annotations

import pytest

from dnatool.arch.space import load_space
from dnatool.errors import BadInput


def _one_line_exit_2(result) -> str:
    assert result.code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    return lines[0]


@pytest.mark.parametrize("cut", ["truncated", "empty"])
def test_cut_score_list_is_one_line_exit_2(cli, tmp_path, cut):
    """A truncated list ended `search` in a 47-line BadZipFile traceback, an empty one in
    "Error: aborted" with exit 130 (numpy's EOFError read as Ctrl-D by click)."""
    from dnatool.rate.score_lists import scores_path
    from dnatool.search.synthetic import write_synthetic_run

    run = write_synthetic_run(tmp_path / "run", load_space("tiny"), seed=1)
    path = scores_path(run, 1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if cut == "truncated" else b"")
    line = _one_line_exit_2(cli("search", str(run), "--params", "90k"))
    assert f"score list {path} is not a readable .npz file" in line
    assert "run `dnatool rate`" in line


class _Crafted:
    """A pickle that runs code on load: `os.mkdir(marker)`."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.mkdir, (self.marker,)


def test_teacher_weights_pickle_is_exit_2_like_every_loader(cli, tmp_path):
    """`teacher_weights=<pickle>` went through timm's loader and exited 1 with torch's advice to
    load it unsafely; it is dnatool's one checkpoint refusal now."""
    import pickle

    marker = tmp_path / "ran"
    weights = tmp_path / "b0.pth"
    weights.write_bytes(pickle.dumps({"state_dict": _Crafted(str(marker))}, protocol=2))
    result = cli(
        "train",
        "dna-tiny",
        "-o",
        "teacher=efficientnet_b0",
        "-o",
        f"teacher_weights={weights}",
        "--out",
        str(tmp_path / "run"),
    )
    line = _one_line_exit_2(result)
    assert f"{weights} is not a loadable checkpoint: it asks to import posix.mkdir" in line
    assert "weights_only" not in line and not marker.exists()


def test_teacher_weights_of_another_model_are_refused_in_one_line(tmp_path):
    import timm
    import torch

    from dnatool.nn.teacher import load_teacher_model

    torch.save(timm.create_model("tf_efficientnet_lite0").state_dict(), tmp_path / "lite0.pth")
    with pytest.raises(BadInput, match="do not fit timm model 'efficientnet_b0'"):
        load_teacher_model("efficientnet_b0", weights=str(tmp_path / "lite0.pth"))


@pytest.mark.parametrize("mean", [-50.0, float("nan"), None])
def test_latency_table_with_a_negative_or_non_finite_entry_is_refused(cli, tmp_path, mean):
    """A table entry of -50 ms was used silently (it makes the costliest path look cheapest)."""
    import json

    from dnatool.search.synthetic import write_synthetic_lut, write_synthetic_run

    space = load_space("tiny")
    run = write_synthetic_run(tmp_path / "run", space, seed=1)
    lut = write_synthetic_lut(tmp_path / "lut.json", space, seed=1)
    data = json.loads(lut.read_text())
    key = sorted(data["entries"])[3]
    data["entries"][key]["mean"] = mean
    lut.write_text(json.dumps(data))
    line = _one_line_exit_2(cli("search", str(run), "--lut", str(lut), "--latency", "1ms"))
    assert f"latency table {lut}: entry {key!r} has mean {mean!r} ms (not >= 0)" in line

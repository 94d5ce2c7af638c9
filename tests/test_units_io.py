from __future__ import annotations

import random

import pytest
import torch

from dnatool.errors import BadInput
from dnatool.utils import io, runs
from dnatool.utils.units import parse_count, parse_latency_ms


@pytest.mark.parametrize(
    "text,ms", [("10ms", 10.0), ("800us", 0.8), ("1.5s", 1500.0), ("3 ms", 3.0), ("2e3ns", 2e-3)]
)
def test_latency_units(text, ms):
    assert parse_latency_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize(
    "text,value", [("5.3M", 5.3e6), ("400M", 4e8), ("1.2G", 1.2e9), ("350000", 3.5e5)]
)
def test_count_units(text, value):
    assert parse_count(text) == pytest.approx(value)


@pytest.mark.parametrize(
    "text", ["10 parsecs", "ms", "-3ms", "0ms", "", "1e400ms", "1e-400ms", "1e308s"]
)
def test_bad_latencies(text):
    with pytest.raises(BadInput):
        parse_latency_ms(text)


@pytest.mark.parametrize("text", ["10", "0.8", "1e3"])
def test_latency_without_a_unit_is_refused_with_a_hint(text):
    """`--latency 10` was read as 10 ms: on an accelerator quoted in us that is 1000x off."""
    with pytest.raises(BadInput, match=f"bad latency '{text}': give a unit, e.g. {text}ms"):
        parse_latency_ms(text)


@pytest.mark.parametrize("text", ["5.3X", "M", "-2M", "0", "", "1e400", "1e300T", "1e-400"])
def test_bad_counts(text):
    with pytest.raises(BadInput):
        parse_count(text)


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "data.json"
    io.write_json(path, {"a": 1})

    def explode(handle):
        handle.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        io.atomic_write(path, explode)
    assert io.read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_checkpoint_round_trip_and_refusals(tmp_path):
    path = io.save_checkpoint(tmp_path / "c.pt", "supernet", {"state": {"w": torch.ones(2)}})
    assert torch.equal(io.load_checkpoint(path, "supernet")["state"]["w"], torch.ones(2))
    with pytest.raises(BadInput, match="expected 'model'"):
        io.load_checkpoint(path, "model")
    torch.save({"w": torch.ones(1)}, tmp_path / "foreign.pt")
    with pytest.raises(BadInput, match="not a dnatool checkpoint"):
        io.load_checkpoint(tmp_path / "foreign.pt")
    # corrupt files fail in many places inside the unpickler (IndexError, KeyError,
    # UnicodeDecodeError, ...): every one must be the same one-line refusal
    for seed in range(400):
        (tmp_path / "junk.pt").write_bytes(random.Random(seed).randbytes(64))
        with pytest.raises(BadInput, match="not a loadable checkpoint"):
            io.load_checkpoint(tmp_path / "junk.pt")
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BadInput, match="not a loadable checkpoint"):
        io.load_checkpoint(tmp_path / "cut.pt")


def test_manifest_records_stage_inputs_and_results(tmp_path):
    (tmp_path / "in.txt").write_text("x")
    run = runs.start_run(tmp_path / "run", "train", {"lr": 0.1}, inputs=[tmp_path / "in.txt"])
    runs.finish_run(run, ["a.pt"], {"loss": 0.5})
    manifest = runs.read_manifest(run)
    assert manifest["stage"] == "train" and manifest["recipe"] == {"lr": 0.1}
    assert manifest["inputs"][0]["sha256"] and manifest["outputs"] == ["a.pt"]
    assert manifest["results"] == {"loss": 0.5} and manifest["finished"]


class _Crafted:
    """A pickle that runs code on load: `os.mkdir(marker)`."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.mkdir, (self.marker,)


@pytest.mark.parametrize("protocol", [2, 4])
def test_crafted_pickle_is_refused_in_dnatools_words(tmp_path, protocol):
    """torch's message advises re-running with `weights_only=False`: the unsafe load the file
    wants. The refusal says what dnatool refused and why, and never relays that advice."""
    import pickle

    marker = tmp_path / "ran"
    path = tmp_path / "crafted.pt"
    path.write_bytes(
        pickle.dumps({"format": io.CHECKPOINT_FORMAT, "x": _Crafted(str(marker))}, protocol)
    )
    with pytest.raises(BadInput) as err:
        io.load_checkpoint(path)
    message = str(err.value)
    assert not marker.exists()
    assert message.startswith(f"{path} is not a loadable checkpoint: ")
    assert "\n" not in message and "weights_only" not in message and "likely" not in message
    assert "add_safe_globals" not in message and "False" not in message
    if protocol == 2:
        assert "it asks to import posix.mkdir" in message and "never code" in message
    else:
        assert "unsupported pickle opcode" in message


def test_stage_lifecycle_refuses_what_would_lose_or_mix_work(tmp_path):
    """One lifecycle for every stage directory: a finished directory needs --resume; a resume may
    change only the recipe class's resumable keys and no hashed input; another stage's directory
    is refused either way; writes a kill cut are dropped on resume."""
    import dataclasses

    from dnatool.config import resumable

    @dataclasses.dataclass
    class Recipe:
        lr: float = 0.1
        epochs: int = resumable(3)

    stage = runs.Stage("demo", ("weights/*.pt",), "demo weights")
    out, data = tmp_path / "run", tmp_path / "data.bin"
    data.write_bytes(b"one")
    stage.open(out, Recipe(), {"data": data})
    stage.start(out, Recipe(), {"data": data})
    (out / "weights").mkdir()
    (out / "weights" / "w.pt").write_bytes(b"")
    (out / ".model.pt.x1.tmp").write_bytes(b"cut")
    with pytest.raises(BadInput, match="already holds demo weights: pass --resume"):
        stage.open(out, Recipe(), {"data": data})
    stage.open(out, Recipe(epochs=5), {"data": data}, resume=True)
    assert not (out / ".model.pt.x1.tmp").exists()
    with pytest.raises(BadInput, match=r"lr was 0.1, now 0.2 \(only epochs may change\)"):
        stage.open(out, Recipe(lr=0.2), {"data": data}, resume=True)
    data.write_bytes(b"two")
    with pytest.raises(BadInput, match="the data file .* changed since the run started"):
        stage.open(out, Recipe(), {"data": data}, resume=True)
    other = runs.Stage("other", (), "nothing")
    for resume in (False, True):
        with pytest.raises(BadInput, match="is a 'demo' run, not a other run"):
            other.open(out, resume=resume)
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInput, match="exists and is not a directory"):
        stage.open(tmp_path / "file")


def test_a_resume_accepts_the_same_generated_dataset_in_another_folder(tmp_path):
    """Runs record their data folder's path; a benchmark scored from another --out, or a run
    folder copied elsewhere, reads another copy of the same dataset (same digest): that resumes,
    a different dataset or a plain folder at another path does not."""
    import dataclasses

    from dnatool.data.cluttered import ClutterSpec, generate

    @dataclasses.dataclass
    class Recipe:
        data: str = ""

    small = ClutterSpec(train_per_class=1, val_per_class=1)
    for name, spec in (("a", small), ("b", small), ("c", dataclasses.replace(small, seed=1))):
        generate(tmp_path / name, spec)
    (tmp_path / "plain").mkdir()
    stage = runs.Stage("demo", (), "nothing")
    out = tmp_path / "run"
    stage.open(out, Recipe(str(tmp_path / "a")))
    stage.start(out, Recipe(str(tmp_path / "a")))
    stage.open(out, Recipe(str(tmp_path / "b")), resume=True)
    for other in ("c", "plain", "gone"):
        with pytest.raises(BadInput, match="different recipe: data was"):
            stage.open(out, Recipe(str(tmp_path / other)), resume=True)


def test_a_resume_accepts_the_same_teacher_run_in_another_folder(tmp_path):
    """A DNA supernet records its teacher run's path; an OUT copied elsewhere with its teacher
    (the same model.pt) resumes and rescores, another teacher or a missing one does not."""
    import dataclasses
    import shutil

    @dataclasses.dataclass
    class Recipe:
        teacher: str = ""

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "model.pt").write_bytes(b"weights")
    shutil.copytree(tmp_path / "t", tmp_path / "copy")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.pt").write_bytes(b"other weights")
    stage = runs.Stage("demo", (), "nothing")
    out = tmp_path / "run"
    stage.open(out, Recipe(str(tmp_path / "t")))
    stage.start(out, Recipe(str(tmp_path / "t")))
    stage.open(out, Recipe(str(tmp_path / "copy")), resume=True)
    for other in ("other", "gone", "tf_efficientnet_b0"):
        with pytest.raises(BadInput, match="different recipe: teacher was"):
            stage.open(
                out,
                Recipe(str(tmp_path / other) if other != "tf_efficientnet_b0" else other),
                resume=True,
            )

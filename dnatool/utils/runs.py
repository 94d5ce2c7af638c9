"""Run directories: each stage writes its artifacts plus a `manifest.json` (contracts.md).

`Stage` is the one lifecycle every stage that owns a directory follows (`train`, `retrain`,
`rate`): `open` refuses what would lose or mix work (a file in the way, a finished directory
without `--resume`, a resume of another stage, with a changed recipe or changed input files) and
drops the temp files of writes a kill interrupted; `start` / `finish` write the manifest.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dnatool import __version__
from dnatool.config import resume_conflict, to_dict
from dnatool.errors import BadInput
from dnatool.utils import io

MANIFEST = "manifest.json"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _describe_input(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    entry: dict[str, Any] = {"path": str(path)}
    if path.is_file():
        entry["sha256"] = io.file_sha256(path)
    return entry


def start_run(
    run_dir: str | os.PathLike,
    stage: str,
    recipe: dict[str, Any] | None = None,
    inputs: list[str | os.PathLike] | None = None,
    space: Any = None,
) -> Path:
    """Create (or reopen, for --resume) a run directory and write its manifest's start; `space`
    (a SearchSpace) is recorded by name and digest, so later stages refuse a changed space."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    old = read_manifest(run_dir) if (run_dir / MANIFEST).is_file() else {}
    manifest = {
        "stage": stage,
        "dnatool_version": __version__,
        "recipe": recipe or {},
        "inputs": [_describe_input(p) for p in inputs or []],
        "outputs": old.get("outputs", []) if old.get("stage") == stage else [],
        "results": old.get("results", {}) if old.get("stage") == stage else {},
        "started": old.get("started", _now()) if old.get("stage") == stage else _now(),
        "finished": None,
    }
    if space is not None:
        manifest["space"] = {"name": space.name, "digest": space.digest}
    io.write_json(run_dir / MANIFEST, manifest)
    return run_dir


def finish_run(run_dir: str | os.PathLike, outputs: list[str], results: dict[str, Any]) -> None:
    """Record outputs (relative paths) and key results, and stamp the end time."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    manifest["outputs"] = sorted(set(manifest.get("outputs", [])) | set(outputs))
    manifest["results"] = {**manifest.get("results", {}), **results}
    manifest["finished"] = _now()
    io.write_json(run_dir / MANIFEST, manifest)


def read_manifest(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    data = io.read_json(path, what="run manifest")
    if not isinstance(data, dict) or "stage" not in data:
        raise BadInput(f"{path} is not a dnatool run manifest")
    return data


def is_run(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST).is_file()


def is_finished(path: str | os.PathLike) -> bool:
    """A run whose manifest records its end (`finish_run`)."""
    return is_run(path) and bool(read_manifest(path).get("finished"))


def run_method(run_dir: str | os.PathLike) -> str | None:
    """The training method a run's recipe records (`dna`, `spos`; None when it names none)."""
    if not is_run(run_dir):
        return None
    recipe = read_manifest(run_dir).get("recipe") or {}
    method = recipe.get("method") if isinstance(recipe, dict) else None
    if method is None and isinstance(recipe, dict) and recipe.get("teacher"):
        return "dna"
    return method


@dataclasses.dataclass(frozen=True)
class Stage:
    """A stage's directory contract, declared once by the module that owns the stage.

    `holds`: glob patterns (relative to the directory) whose presence means the directory already
    holds this stage's work (none: a rerun replaces it); `work` names that work in the refusal. A resume compares the recipe
    (a dataclass) with the recorded one; its class's `resumable` field metadata says which keys
    may change.
    """

    name: str
    holds: tuple[str, ...]
    work: str

    def open(
        self,
        out: str | os.PathLike,
        recipe: Any = None,
        inputs: Mapping[str, str | os.PathLike] | None = None,
        resume: bool = False,
    ) -> Path:
        """Check `out` before any work starts (every rank alike), then drop interrupted writes."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise BadInput(f"--out {out} exists and is not a directory")
        if not resume and out.is_dir() and any(next(out.glob(p), None) for p in self.holds):
            raise BadInput(
                f"{out} already holds {self.work}: pass --resume to continue it or choose "
                "another --out"
            )
        old = read_manifest(out) if is_run(out) else None
        if old is not None and old.get("stage") != self.name:
            raise BadInput(
                f"{out} is a {old.get('stage')!r} run, not a {self.name} run: choose another --out"
            )
        if resume and old is not None:
            self._same_recipe(out, old.get("recipe") or {}, recipe)
            _same_inputs(out, old.get("inputs") or [], inputs or {})
        if resume and out.is_dir():
            for leftover in out.glob(".*.tmp"):  # atomic writes a kill cut; real files are intact
                leftover.unlink(missing_ok=True)
        return out

    def start(
        self,
        out: str | os.PathLike,
        recipe: Any = None,
        inputs: Mapping[str, str | os.PathLike] | None = None,
        space: Any = None,
    ) -> Path:
        """Write the manifest's start (rank 0 only)."""
        data = to_dict(recipe) if dataclasses.is_dataclass(recipe) else recipe
        return start_run(out, self.name, data, list((inputs or {}).values()), space)

    def _same_recipe(self, out: Path, old: dict[str, Any], recipe: Any) -> None:
        if not dataclasses.is_dataclass(recipe):
            return
        names = {f.name for f in dataclasses.fields(recipe)}
        new = to_dict(recipe)
        old = {k: v for k, v in old.items() if k in names}
        if "data" in old and same_dataset(old["data"], new.get("data")):
            old["data"] = new["data"]  # the same generated dataset in another folder
        if "teacher" in old and same_model_run(old["teacher"], new.get("teacher")):
            old["teacher"] = new["teacher"]  # the same trained teacher in another folder
        conflict = resume_conflict(type(recipe), old, new)
        if conflict:
            raise BadInput(f"--resume of {out} with a different recipe: {conflict}")


def same_dataset(old: Any, new: Any) -> bool:
    """Whether two data folders hold the same generated dataset (their `dataset.json` digests
    match): a run resumed with another copy of its data reads the same images. Both folders must
    exist; plain ImageFolders, with no digest, only match by path."""
    if not (isinstance(old, str) and isinstance(new, str)) or old == new:
        return False
    from dnatool.data.cluttered import read_dataset_spec

    specs = [read_dataset_spec(path) if Path(path).is_dir() else None for path in (old, new)]
    digests = [(spec or {}).get("digest") for spec in specs]
    return digests[0] is not None and digests[0] == digests[1]


def same_model_run(old: Any, new: Any) -> bool:
    """Whether two run folders hold the same trained model (`model.pt` and `arch.json` hash the
    same): a supernet resumed, or a benchmark rescored, after its teacher's run was copied with
    it to another folder. Both must exist; a name (a timm teacher) only matches itself."""
    if not (isinstance(old, str) and isinstance(new, str)) or old == new:
        return False
    runs = [Path(path) for path in (old, new)]
    if not all((run / "model.pt").is_file() for run in runs):
        return False
    return all(
        len({io.file_sha256(run / name) if (run / name).is_file() else None for run in runs}) == 1
        for name in ("model.pt", "arch.json")
    )


def _same_inputs(
    out: Path, old: list[dict[str, Any]], inputs: Mapping[str, str | os.PathLike]
) -> None:
    """Input files recorded with a sha256 must still hash the same."""
    hashes = {entry.get("path"): entry.get("sha256") for entry in old if isinstance(entry, dict)}
    for role, path in inputs.items():
        before = hashes.get(str(path))
        if before is not None and Path(path).is_file() and before != io.file_sha256(path):
            raise BadInput(
                f"--resume of {out}: the {role} file {path} changed since the run started "
                "(sha256 differs)"
            )

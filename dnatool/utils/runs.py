"""Run directories: each stage writes its artifacts plus a `manifest.json` (contracts.md)."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

from dnatool import __version__
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


def run_method(run_dir: str | os.PathLike) -> str | None:
    """The training method a run's recipe records (`dna`, `spos`; None when it names none)."""
    if not is_run(run_dir):
        return None
    recipe = read_manifest(run_dir).get("recipe") or {}
    method = recipe.get("method") if isinstance(recipe, dict) else None
    if method is None and isinstance(recipe, dict) and recipe.get("teacher"):
        return "dna"
    return method

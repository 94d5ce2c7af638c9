"""Trained model runs: what retrain writes and export, serve, backbones and teachers read.

A model run directory holds `arch.json` (the dnatool arch file), `model.pt` (a dnatool checkpoint
of kind "model": `state_dict`, `arch`, `preprocess`, `metrics`) and `manifest.json`.
`load_model` also accepts a bare ARCH, giving a randomly initialised network marked untrained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from dnatool.arch.resolve import RUN_ARCH_FILE, resolve_arch
from dnatool.arch.spec import ArchSpec
from dnatool.errors import BadInput
from dnatool.utils import io

MODEL_FILE = "model.pt"
DEFAULT_PREPROCESS = {
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "crop_pct": 0.875,
    "interpolation": "bicubic",
}


@dataclass
class LoadedModel:
    model: nn.Module
    arch: ArchSpec
    preprocess: dict[str, Any]
    trained: bool
    source: str
    metrics: dict[str, Any] = field(default_factory=dict)


def save_model_run(
    run_dir: str | Path,
    model: nn.Module,
    arch: ArchSpec,
    preprocess: dict[str, Any],
    metrics: dict[str, Any],
) -> Path:
    """Write weights and arch atomically; the manifest is the caller's (utils.runs)."""
    run_dir = Path(run_dir)
    io.write_text(run_dir / RUN_ARCH_FILE, arch.to_json())
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    io.save_checkpoint(
        run_dir / MODEL_FILE,
        "model",
        {"state_dict": state, "arch": arch.to_dict(), "preprocess": preprocess, "metrics": metrics},
    )
    return run_dir / MODEL_FILE


def is_model_run(path: str | Path) -> bool:
    return (Path(path) / MODEL_FILE).is_file() and (Path(path) / RUN_ARCH_FILE).is_file()


def model_run_arch(run_dir: str | Path, checkpoint: dict[str, Any] | None = None) -> ArchSpec:
    """THE arch of a model run: `model.pt`'s, checked equal to `arch.json` (which users and
    configs read) so that export, serving and backbones can never build different networks."""
    run_dir = Path(run_dir)
    data = checkpoint or io.load_checkpoint(run_dir / MODEL_FILE, "model")
    arch = ArchSpec.from_dict(data["arch"])
    stored = resolve_arch(str(run_dir / RUN_ARCH_FILE))
    if stored.to_dict() != arch.to_dict():
        raise BadInput(
            f"model run {run_dir}: {RUN_ARCH_FILE} and {MODEL_FILE} hold different architectures "
            f"(was {RUN_ARCH_FILE} edited? the weights are {MODEL_FILE}'s)"
        )
    return arch


def load_model(ref: Any, **build_options: Any) -> LoadedModel:
    """A model run (weights loaded) or any ARCH form (random init, `trained=False`)."""
    from dnatool.nn.timm_adapter import build_model

    path = Path(str(ref)) if isinstance(ref, (str, Path)) else None
    if path is not None and path.is_file() and path.suffix == ".pt":
        path = path.parent
    if path is not None and is_model_run(path):
        data = io.load_checkpoint(path / MODEL_FILE, "model")
        arch = model_run_arch(path, data)
        model = build_model(arch, **build_options)
        missing, unexpected = model.load_state_dict(data["state_dict"], strict=not build_options)
        preprocess = {
            **DEFAULT_PREPROCESS,
            "resolution": arch.resolution,
            **data.get("preprocess", {}),
        }
        return LoadedModel(model, arch, preprocess, True, str(path), data.get("metrics", {}))
    arch = resolve_arch(ref)
    preprocess = {**DEFAULT_PREPROCESS, "resolution": arch.resolution}
    return LoadedModel(build_model(arch, **build_options), arch, preprocess, False, str(ref))

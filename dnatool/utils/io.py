"""Atomic writes and safe loads: a kill at any moment leaves the old file or the new one, never half.

Every artifact (checkpoints, LUTs, score lists, manifests) goes through these functions.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from dnatool.errors import BadInput

CHECKPOINT_FORMAT = "dnatool.checkpoint"


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write through `write(fileobj)` into a temp file in the same folder, fsync, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Load JSON, turning a missing or malformed file into a one-line BadInput."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{what} {path} is not valid JSON: {exc}") from None


def save_checkpoint(path: str | os.PathLike, kind: str, payload: dict[str, Any]) -> Path:
    """torch.save a dict tagged as a dnatool checkpoint of `kind`, atomically."""
    import torch

    data = {"format": CHECKPOINT_FORMAT, "kind": kind, **payload}
    return atomic_write(path, lambda handle: torch.save(data, handle))


def torch_load(path: str | os.PathLike) -> Any:
    """`torch.load(weights_only=True)` of any file; whatever a corrupt or foreign file makes the
    unpickler raise becomes one BadInput line."""
    import warnings

    import torch

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt file can fail anywhere inside the unpickler
        raise BadInput(f"{path} is not a loadable checkpoint: {_refusal(exc)}") from None


SAFE_LOAD = "dnatool loads only tensors and plain containers, never code from a file"


def _refusal(exc: Exception) -> str:
    """Why a load failed, in dnatool's words: torch's own message advises re-running with
    `weights_only=False` (the unsafe load a crafted file wants), so it is never relayed."""
    import re

    text = str(exc).strip()
    if not re.search(r"[A-Za-z]", text):  # a bare offset or magic number says nothing
        return f"corrupt, or not written by torch.save ({type(exc).__name__})"
    if "Weights only load failed" not in text:
        return text.splitlines()[0]
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it asks to import {found.group(1)}; {SAFE_LOAD}"
    found = re.search(r"Unsupported operand (\d+)", text)
    if found:
        return f"unsupported pickle opcode {found.group(1)} (corrupt, or not written by torch.save)"
    found = re.search(r"but got (<class '[\w.]+'>|[\w.]+)", text)
    made = f" ({found.group(1)})" if found else ""
    return f"it builds objects other than tensors and plain containers{made}; {SAFE_LOAD}"


def load_checkpoint(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """torch.load with weights_only=True; refuse files that are not dnatool checkpoints."""
    data = torch_load(path)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise BadInput(f"{path} is not a dnatool checkpoint")
    if kind is not None and data.get("kind") != kind:
        raise BadInput(f"{path} is a dnatool {data.get('kind')!r} checkpoint, expected {kind!r}")
    return data


def file_sha256(path: str | os.PathLike) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

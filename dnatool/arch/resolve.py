"""Every ARCH form of contracts.md turned into one ArchSpec.

Accepted: an ArchSpec or arch dict; a timm arch_def list, or an object holding one with ArchSpec
options (`{"arch_def": [...], "stem": 48, "head": 1536}`), either also as JSON text; a path to a
dnatool arch file, a timm arch_def JSON file (list or object), a `search.json` (its winner), or a
run directory holding an `arch.json` (trained model runs); a built-in name (`efficientnet_b0`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dnatool.arch.spec import ARCH_FORMAT, ArchSpec, check_fields
from dnatool.errors import BadInput

SEARCH_FORMAT = "dnatool.search"  # search.json's tag (written by dnatool.search.result)

RUN_ARCH_FILE = "arch.json"

EFFICIENTNET_B0 = [
    ["ds_r1_k3_s1_e1_c16_se0.25"],
    ["ir_r2_k3_s2_e6_c24_se0.25"],
    ["ir_r2_k5_s2_e6_c40_se0.25"],
    ["ir_r3_k3_s2_e6_c80_se0.25"],
    ["ir_r3_k5_s1_e6_c112_se0.25"],
    ["ir_r4_k5_s2_e6_c192_se0.25"],
    ["ir_r1_k3_s1_e6_c320_se0.25"],
]
BUILTIN = {"efficientnet_b0": EFFICIENTNET_B0}


def resolve_arch(arch: Any, **options: Any) -> ArchSpec:
    """Turn any ARCH form into an ArchSpec; `options` fill stem/head/resolution for arch_defs."""
    if isinstance(arch, ArchSpec):
        return arch
    if isinstance(arch, list):
        return ArchSpec.from_arch_def(arch, **options)
    if isinstance(arch, dict):
        return _from_obj(arch, "arch object", options)
    text = str(arch)
    if text in BUILTIN:
        return ArchSpec.from_arch_def(BUILTIN[text], name=text, **options)
    if text.lstrip().startswith(("[", "{")):  # before any path check: too long for a file name
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadInput(f"ARCH string is not valid JSON: {exc}") from None
        return _from_obj(data, "ARCH string", options)
    return _from_path(Path(text), options)


def _from_path(path: Path, options: dict[str, Any]) -> ArchSpec:
    if path.is_dir():
        return _from_dir(path, options)
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadInput(f"arch file {path} is not valid JSON: {exc}") from None
        return _from_obj(data, f"arch file {path}", options)
    raise BadInput(
        f"ARCH {str(path)!r} is not a file, a run directory, a JSON arch_def or a built-in name "
        f"({', '.join(BUILTIN)})"
    )


def _from_obj(data: Any, what: str, options: dict[str, Any]) -> ArchSpec:
    if isinstance(data, list):
        return ArchSpec.from_arch_def(data, **options)
    if not isinstance(data, dict):
        raise BadInput(f"{what} holds neither an arch object nor an arch_def list")
    if data.get("format") == ARCH_FORMAT:
        return ArchSpec.from_dict(data)
    if "winner" in data:
        if data.get("format") != SEARCH_FORMAT:
            raise BadInput(
                f"{what} has a winner but is not a dnatool search result "
                f"(format {data.get('format')!r}, expected {SEARCH_FORMAT!r})"
            )
        winner = data["winner"]
        if not isinstance(winner, dict) or not isinstance(winner.get("arch"), dict):
            raise BadInput(f"{what}: the search result's winner has no arch")
        return ArchSpec.from_dict(winner["arch"])
    if isinstance(data.get("arch"), dict):
        return ArchSpec.from_dict(data["arch"])
    if isinstance(data.get("arch_def"), list):
        check_fields(set(data), what)
        extra = {k: v for k, v in data.items() if k != "arch_def"}
        return ArchSpec.from_arch_def(data["arch_def"], **{**extra, **options})
    raise BadInput(f"{what} is not a dnatool arch, a search result or an arch_def")


def _from_dir(path: Path, options: dict[str, Any]) -> ArchSpec:
    candidate = path / RUN_ARCH_FILE
    if not candidate.is_file():
        raise BadInput(f"run directory {path} has no {RUN_ARCH_FILE} (not a model run?)")
    return resolve_arch(str(candidate), **options)

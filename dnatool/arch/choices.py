"""Architectures of a space as choice lists: read from arch files, search results or plain lists.

A choice list is one `(cell, path)` per block (`SearchSpace.to_arch`). `dnatool rate RUN --archs
FILE` and anything else that names architectures of a space reads them here: an arch whose
`meta.choices` belong to the space, or any arch whose searchable stages are layers of the space
(matched block by block), or `[[cell, [ops...]], ...]` directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dnatool.arch.space import Choice, SearchSpace
from dnatool.arch.spec import ArchSpec
from dnatool.errors import BadInput


def choices_key(choices: list[Choice]) -> str:
    """A compact, stable text of one architecture (JSON of the choice list)."""
    return json.dumps([[c, list(p)] for c, p in choices], separators=(",", ":"))


def parse_choices(data: Any, space: SearchSpace, where: str = "choices") -> list[Choice]:
    """`[[cell, [ops...]], ...]`, one entry per block, checked against the space."""
    try:
        choices = [(int(c), tuple(int(op) for op in p)) for c, p in data]
    except (TypeError, ValueError):
        raise BadInput(f"{where}: expected [[cell, [ops...]], ...], one per block") from None
    space.to_arch(choices)  # one-line refusal of a wrong block count
    space.chain_widths(choices)  # and of cells / ops out of range
    return choices


def arch_choices(space: SearchSpace, arch: ArchSpec, where: str = "arch") -> list[Choice]:
    """The choices of `arch` in `space`: its recorded `meta.choices` when they rebuild the same
    network, else its searchable stages matched layer by layer against the space."""
    recorded = arch.meta.get("choices") if isinstance(arch.meta, dict) else None
    if recorded is not None:
        try:
            choices = parse_choices(recorded, space, where)
        except BadInput:
            choices = None
        if choices is not None and space.to_arch(choices).stages == arch.stages:
            return choices
    stages = arch.stages[len(space.fixed) :]
    if len(stages) != len(space.blocks) or arch.stages[: len(space.fixed)] != space.fixed:
        raise BadInput(f"{where} is not an architecture of space {space.name!r} (stages differ)")
    return [_match_block(space, k, stage, where) for k, stage in enumerate(stages)]


def _match_block(space: SearchSpace, k: int, stage: tuple, where: str) -> Choice:
    block = space.blocks[k]
    for c, cell in enumerate(block.cells):
        if cell.layers != len(stage):
            continue
        path = []
        for i, spec in enumerate(stage):
            ops = [o for o in range(len(block.ops)) if space.layer_spec(k, c, o, i) == spec]
            if not ops:
                break
            path.append(ops[0])
        if len(path) == len(stage):
            return c, tuple(path)
    raise BadInput(f"{where}: block {k} is no path of space {space.name!r}")


def read_archs(path: str | Path, space: SearchSpace) -> list[list[Choice]]:
    """Architectures listed in a JSON file: a list whose items are choice lists, arch objects or
    paths to arch files / search results; or one arch file; or a search result (its `top`)."""
    from dnatool.arch.resolve import SEARCH_FORMAT, resolve_arch

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"--archs file {path} is not readable JSON: {exc}") from None
    if isinstance(data, dict) and data.get("format") == SEARCH_FORMAT:
        items = [entry.get("choices") for entry in data.get("top") or [data.get("winner", {})]]
    elif isinstance(data, list) and data and _is_choice_list(data):
        items = [data]
    elif isinstance(data, list):
        items = data
    else:
        items = [data]
    if not items:
        raise BadInput(f"--archs file {path} lists no architecture")
    out = []
    for i, item in enumerate(items):
        where = f"{path} item {i}"
        if isinstance(item, list) and _is_choice_list(item):
            out.append(parse_choices(item, space, where))
        else:
            out.append(arch_choices(space, resolve_arch(item), where))
    return out


def _is_choice_list(item: list) -> bool:
    """`[[cell, [ops...]], ...]` (not a list of such lists)."""
    return all(
        isinstance(e, (list, tuple))
        and len(e) == 2
        and isinstance(e[0], int)
        and isinstance(e[1], (list, tuple))
        and all(isinstance(op, int) for op in e[1])
        for e in item
    )

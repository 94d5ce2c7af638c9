"""The latency lookup table: one key function, a header that names the device, entries per op.

Keys follow ProxylessNAS / OFA (op type, input and output shape, kernel, stride, expansion, SE) plus
activation, batch and dtype; `layer_keys` is the single function both measuring and predicting
use, so a table can never be read with keys it was not written with. The header carries the
device fingerprint (nn-Meter names predictors by hardware + backend + version), the measurement
protocol and the calibration `measured = a * sum(entries) + b` fitted on whole networks.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dnatool.arch.space import Choice, SearchSpace
from dnatool.arch.spec import BlockSpec
from dnatool.errors import BadInput
from dnatool.utils import io

LUT_FORMAT = "dnatool.lut"
SCHEMA = 1
MATCH_FIELDS = (
    "backend",
    "cpu",
    "gpu",
    "driver",
    "runtime",
    "runtime_version",
    "provider",
    "threads",
    "batch",
    "precision",
    "mode",
    "clock",
)


def op_key(
    kind: str,
    batch: int,
    in_ch: int,
    out_ch: int,
    in_res: int,
    kernel: int = 0,
    stride: int = 1,
    exp: float = 1.0,
    se: float = 0.0,
    act: str = "swish",
    dtype: str = "fp32",
    extra: str = "",
) -> str:
    """The canonical key of one op configuration (stable text: tables store it verbatim)."""
    out_res = math.ceil(in_res / stride)
    key = (
        f"{kind}|{batch}x{in_ch}x{in_res}x{in_res}->{out_ch}x{out_res}x{out_res}"
        f"|k{kernel}|s{stride}|e{exp:g}|se{se:g}|{act}|{dtype}"
    )
    return f"{key}|{extra}" if extra else key


def block_key(block: BlockSpec, in_ch: int, in_res: int, act: str, batch: int, dtype: str) -> str:
    return op_key(
        block.type,
        batch,
        in_ch,
        block.out,
        in_res,
        block.kernel,
        block.stride,
        block.exp,
        block.se,
        act,
        dtype,
    )


@functools.lru_cache(maxsize=65536)
def layer_keys(
    space: SearchSpace, k: int, choice: Choice, batch: int = 1, dtype: str = "fp32"
) -> tuple[str, ...]:
    """THE key function: the entry keys of the layers of one path of block k, in order."""
    width, res = space.block_in_width(k), space.block_in_resolution(k)
    keys = []
    for block in space.layer_blocks(k, choice):
        keys.append(block_key(block, width, res, space.act, batch, dtype))
        width, res = block.out, math.ceil(res / block.stride)
    return tuple(keys)


def block_layer_keys(
    space: SearchSpace, k: int, batch: int = 1, dtype: str = "fp32"
) -> tuple[tuple[str, ...], tuple[str | None, ...]]:
    """Per op of block k, its key as the first layer of a cell and as a later layer.

    A layer's key depends only on its op and on whether it opens its cell (stride, input shape),
    so the uniform paths of the deepest cell, read through `layer_keys`, name every key of the
    block; the later-layer key is None when no cell of block k has a second layer.
    """
    block = space.blocks[k]
    deepest = max(range(len(block.cells)), key=lambda c: block.cells[c].layers)
    depth = block.cells[deepest].layers
    first, later = [], []
    for op in range(len(block.ops)):
        keys = layer_keys(space, k, (deepest, (op,) * depth), batch, dtype)
        first.append(keys[0])
        later.append(keys[1] if depth > 1 else None)
    return tuple(first), tuple(later)


def stem_key(space: SearchSpace, batch: int = 1, dtype: str = "fp32") -> str:
    """The stem conv plus the fixed stages, measured as one piece of the network."""
    fixed = "+".join(b.to_str() for stage in space.fixed for b in stage)
    out = space.block_in_width(0)
    res = space.block_in_resolution(0)
    return op_key(
        "stem",
        batch,
        space.in_chans,
        out,
        space.resolution,
        3,
        space.resolution // res,
        act=space.act,
        dtype=dtype,
        extra=f"c{space.stem}+{fixed}" if fixed else f"c{space.stem}",
    )


def head_key(space: SearchSpace, batch: int = 1, dtype: str = "fp32") -> str:
    """conv_head + BN/act + global pool + classifier after the last block."""
    last = len(space.blocks)
    res = math.ceil(space.block_in_resolution(last - 1) / space.blocks[-1].stride)
    return op_key(
        "head",
        batch,
        space.blocks[-1].width,
        space.num_classes,
        res,
        1,
        res,
        act=space.act,
        dtype=dtype,
        extra=f"c{space.head}",
    )


def space_keys(
    space: SearchSpace, batch: int = 1, dtype: str = "fp32"
) -> dict[str, tuple[int, BlockSpec | None, int, int]]:
    """Every key the space can reach: key -> (block index, spec, input width, input size).

    The stem has block index -1 and the head len(blocks); both have spec None.
    """
    keys: dict[str, tuple[int, BlockSpec | None, int, int]] = {
        stem_key(space, batch, dtype): (-1, None, space.in_chans, space.resolution)
    }
    for k, block in enumerate(space.blocks):
        for cell_index, cell in enumerate(block.cells):
            for op in range(len(block.ops)):
                choice = (cell_index, (op,) * cell.layers)
                width, res = space.block_in_width(k), space.block_in_resolution(k)
                for key, spec in zip(
                    layer_keys(space, k, choice, batch, dtype), space.layer_blocks(k, choice)
                ):
                    keys.setdefault(key, (k, spec, width, res))
                    width, res = spec.out, math.ceil(res / spec.stride)
    last = len(space.blocks)
    keys[head_key(space, batch, dtype)] = (
        last,
        None,
        space.blocks[-1].width,
        math.ceil(space.block_in_resolution(last - 1) / space.blocks[-1].stride),
    )
    return keys


def space_digest(space: SearchSpace) -> str:
    data = json.dumps(
        {
            **space.describe(),
            "fixed": [[b.to_str() for b in s] for s in space.fixed],
            "stem": space.stem,
            "head": space.head,
            "act": space.act,
        },
        sort_keys=True,
    )
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _choice(choice: Any) -> Choice:
    return int(choice[0]), tuple(int(op) for op in choice[1])


@dataclass
class LatencyTable:
    """A loaded or growing table; prediction is `fixed_latency_ms + sum_k path_latency_ms`."""

    path: Path
    header: dict[str, Any]
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return int(self.header["device"].get("batch", 1))

    @property
    def dtype(self) -> str:
        return str(self.header["device"].get("precision", "fp32"))

    @property
    def slope(self) -> float:
        return float((self.header.get("calibration") or {}).get("a", 1.0))

    @property
    def intercept(self) -> float:
        return float((self.header.get("calibration") or {}).get("b", 0.0))

    def entry(self, key: str) -> dict[str, Any]:
        try:
            return self.entries[key]
        except KeyError:
            raise BadInput(
                f"latency table {self.path} has no entry {key!r} "
                f"(it was measured for space {self.header.get('space')!r})"
            ) from None

    def raw_path_ms(self, space: SearchSpace, k: int, choice: Choice) -> float:
        keys = layer_keys(space, k, _choice(choice), self.batch, self.dtype)
        return sum(self.entry(key)["mean"] for key in keys)

    def path_latency_ms(self, space: SearchSpace, k: int, choice: Choice) -> float:
        """Calibrated latency of one path of block k (includes the slope, not the intercept).

        Summed layer by layer in path order, each layer scaled by the slope, so that the sums of
        `layer_latency_ms` along a path give the same float.
        """
        keys = layer_keys(space, k, _choice(choice), self.batch, self.dtype)
        return sum(self.slope * self.entry(key)["mean"] for key in keys)

    def layer_latency_ms(self, space: SearchSpace, k: int) -> np.ndarray:
        """float64 (2, n_ops): calibrated latency of each op of block k as the first layer of a
        cell / as a later layer (NaN when no cell has one), from `block_layer_keys`."""
        rows = block_layer_keys(space, k, self.batch, self.dtype)
        return np.array(
            [
                [self.slope * self.entry(key)["mean"] if key else math.nan for key in row]
                for row in rows
            ],
            dtype=np.float64,
        )

    def layer_costs(self, space: SearchSpace, k: int) -> np.ndarray | None:
        """int64 (2, n_ops, 2): [first / later layer][op][params, MACs] of block k from the
        entries (the layout of `search.costs.layer_table`), or None when an entry has no counts
        (SYNTHETIC tables). Search then needs neither torch nor timm to count them."""
        rows = block_layer_keys(space, k, self.batch, self.dtype)
        out = np.zeros((2, len(rows[0]), 2), dtype=np.int64)
        for pos, row in enumerate(rows):
            for op, key in enumerate(row):
                if key is None:
                    continue
                entry = self.entry(key)
                if "params" not in entry or "macs" not in entry:
                    return None
                out[pos, op] = entry["params"], entry["macs"]
        return out

    def fixed_costs(self, space: SearchSpace) -> tuple[int, int] | None:
        """(params, MACs) of the stem, fixed stages and head from the entries, or None."""
        entries = [
            self.entry(stem_key(space, self.batch, self.dtype)),
            self.entry(head_key(space, self.batch, self.dtype)),
        ]
        if any("params" not in e or "macs" not in e for e in entries):
            return None
        return sum(int(e["params"]) for e in entries), sum(int(e["macs"]) for e in entries)

    def raw_fixed_ms(self, space: SearchSpace) -> float:
        return (
            self.entry(stem_key(space, self.batch, self.dtype))["mean"]
            + self.entry(head_key(space, self.batch, self.dtype))["mean"]
        )

    def fixed_latency_ms(self, space: SearchSpace) -> float:
        """Stem, fixed stages, head and classifier, plus the calibration intercept."""
        return self.slope * self.raw_fixed_ms(space) + self.intercept

    def predict_ms(self, space: SearchSpace, choices: list[Choice]) -> float:
        return self.fixed_latency_ms(space) + sum(
            self.path_latency_ms(space, k, c) for k, c in enumerate(choices)
        )

    def raw_total_ms(self, space: SearchSpace, choices: list[Choice]) -> float:
        return self.raw_fixed_ms(space) + sum(
            self.raw_path_ms(space, k, c) for k, c in enumerate(choices)
        )

    def path_cost(self, space: SearchSpace, k: int, choice: Choice, what: str) -> int:
        """Params or MACs ("params" / "macs") of one path, from the same keys."""
        keys = layer_keys(space, k, _choice(choice), self.batch, self.dtype)
        return sum(int(self.entry(key)[what]) for key in keys)

    def fixed_cost(self, space: SearchSpace, what: str) -> int:
        """Params or MACs ("params" / "macs") of the stem, fixed stages and head."""
        costs = self.fixed_costs(space)
        if costs is None:
            raise BadInput(f"latency table {self.path} stores no params / MACs")
        return costs[("params", "macs").index(what)]

    def to_dict(self) -> dict[str, Any]:
        return {"header": self.header, "entries": self.entries, "samples": self.samples}

    def save(self) -> Path:
        """Atomic write: a kill leaves the previous complete file or the new one."""
        return io.write_json(self.path, self.to_dict())


def new_header(
    space: SearchSpace, device: dict[str, Any], protocol: dict[str, Any]
) -> dict[str, Any]:
    return {
        "format": LUT_FORMAT,
        "schema": SCHEMA,
        "space": space.name,
        "space_digest": space_digest(space),
        "resolution": space.resolution,
        "device": device,
        "protocol": protocol,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "complete": False,
        "calibration": None,
    }


def device_mismatch(stored: dict[str, Any], current: dict[str, Any]) -> str | None:
    """The first fingerprint field that differs, as a readable phrase (None when they match)."""
    for name in MATCH_FIELDS:
        if stored.get(name) != current.get(name):
            return f"{name} {stored.get(name)!r} in the table, {current.get(name)!r} here"
    return None


def load_lut(
    path: str | Path,
    force: bool = False,
    device: dict[str, Any] | None = None,
    allow_incomplete: bool = False,
) -> LatencyTable:
    """Read a table; refuse a foreign format, an unfinished run, or (given `device`) another device.

    Search reads tables for a target that need not be this machine, so the device check happens
    only when a fingerprint of the machine about to measure is passed in; `force` skips it.
    """
    data = io.read_json(path, "latency table")
    header = data.get("header") if isinstance(data, dict) else None
    if not isinstance(header, dict) or header.get("format") != LUT_FORMAT:
        raise BadInput(f"{path} is not a dnatool latency table")
    if header.get("schema") != SCHEMA:
        raise BadInput(
            f"latency table {path} has schema {header.get('schema')!r}; this dnatool reads {SCHEMA}"
        )
    if not header.get("complete") and not allow_incomplete:
        raise BadInput(
            f"latency table {path} is unfinished; finish it with `dnatool profile ... --resume`"
        )
    if device is not None and not force:
        reason = device_mismatch(header.get("device", {}), device)
        if reason:
            raise BadInput(
                f"latency table {path} was measured elsewhere ({reason}); use --force to use it anyway"
            )
    return LatencyTable(
        Path(path), header, dict(data.get("entries", {})), dict(data.get("samples", {}))
    )

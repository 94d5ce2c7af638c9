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
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dnatool.arch.paths import grid_arrays
from dnatool.arch.space import Choice, Layer, SearchSpace
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
    "conversion",
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
        extra=f"h{block.heads}" if block.heads is not None else "",
    )


def layer_key(layer: Layer, act: str, batch: int = 1, dtype: str = "fp32") -> str:
    """The key of one layer of the space's walk: its block string at its input shape."""
    return block_key(layer.spec, layer.in_width, layer.in_res, act, batch, dtype)


@functools.lru_cache(maxsize=65536)
def layer_keys(
    space: SearchSpace,
    k: int,
    choice: Choice,
    batch: int = 1,
    dtype: str = "fp32",
    in_width: int | None = None,
) -> tuple[str, ...]:
    """THE key function: the entry keys of the layers of one path of block k, in order, with
    block k's input width `in_width` (needed only where the previous block has several widths)."""
    return tuple(
        layer_key(layer, space.act, batch, dtype)
        for layer in space.path_layers(k, choice, in_width)
    )


def stem_key(space: SearchSpace, batch: int = 1, dtype: str = "fp32") -> str:
    """The stem conv plus the fixed stages, measured as one piece of the network."""
    fixed = "+".join(b.to_str() for stage in space.fixed for b in stage)
    out = space.in_widths(0)[0]
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


def head_key(
    space: SearchSpace, batch: int = 1, dtype: str = "fp32", width: int | None = None
) -> str:
    """conv_head + BN/act + global pool + classifier after the last block, whose width it takes
    (`width`, needed only when the last block's cells differ in width)."""
    in_width, res = space.head_input(width)
    return op_key(
        "head",
        batch,
        in_width,
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

    The stem has block index -1 and the head len(blocks) (one per width the last block can end
    in); both have spec None.
    """
    keys: dict[str, tuple[int, BlockSpec | None, int, int]] = {
        stem_key(space, batch, dtype): (-1, None, space.in_chans, space.resolution)
    }
    for k in range(len(space.blocks)):
        grid = space.layer_grid(k)
        layers = [layer for state in grid.first for cell in state for layer in cell]
        layers += [layer for rows in grid.later for row in rows for layer in row]
        for layer in (x for x in layers if x is not None):  # None: a fabric's missing routes
            keys.setdefault(
                layer_key(layer, space.act, batch, dtype),
                (k, layer.spec, layer.in_width, layer.in_res),
            )
    last = len(space.blocks)
    for width in space.in_widths(last):
        keys[head_key(space, batch, dtype, width)] = (
            last,
            None,
            width,
            space.block_in_resolution(last, width=width),
        )
    return keys


def space_digest(space: SearchSpace) -> str:
    """The digest a table records for its space (`SearchSpace.digest`)."""
    return space.digest


class _NoCounts(Exception):
    """An entry without params / MACs (SYNTHETIC tables)."""


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

    def check_space(self, space: SearchSpace) -> None:
        """Refuse, in one line, to price a space the table was not measured for."""
        digest = self.header.get("space_digest")
        if digest != space.digest:
            raise BadInput(
                f"latency table {self.path} was measured for space "
                f"{self.header.get('space')!r} (digest {digest}), not for {space.name!r} "
                f"(digest {space.digest}); profile that space or pass its --space"
            )

    def _ms(self, key: str) -> float:
        return self.slope * self.entry(key)["mean"]

    def raw_path_ms(
        self, space: SearchSpace, k: int, choice: Choice, in_width: int | None = None
    ) -> float:
        keys = layer_keys(space, k, _choice(choice), self.batch, self.dtype, in_width)
        return sum(self.entry(key)["mean"] for key in keys)

    def path_latency_ms(
        self, space: SearchSpace, k: int, choice: Choice, in_width: int | None = None
    ) -> float:
        """Calibrated latency of one path of block k (includes the slope, not the intercept).

        Summed layer by layer in path order, each layer scaled by the slope, so that the sums of
        `layer_latency_ms` along a path give the same float.
        """
        keys = layer_keys(space, k, _choice(choice), self.batch, self.dtype, in_width)
        return sum(self._ms(key) for key in keys)

    def layer_latency_ms(self, space: SearchSpace, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated latency of every layer of block k's grid (`arch.paths.grid_arrays`):
        `first (S, C, O)` per input state, cell and op, `later (C, L - 1, O)` per cell, depth and op."""
        return grid_arrays(
            space, k, lambda layer: self._ms(layer_key(layer, space.act, self.batch, self.dtype))
        )

    def layer_costs(self, space: SearchSpace, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """[params, MACs] of every layer of block k's grid from the entries (int64, last axis 2),
        or None when an entry has no counts (SYNTHETIC tables). Search then needs neither torch
        nor timm to count them."""
        try:
            return grid_arrays(
                space,
                k,
                lambda layer: self._counts(layer_key(layer, space.act, self.batch, self.dtype)),
                np.int64,
            )
        except _NoCounts:
            return None

    def _counts(self, key: str) -> tuple[int, int]:
        entry = self.entry(key)
        if "params" not in entry or "macs" not in entry:
            raise _NoCounts
        return int(entry["params"]), int(entry["macs"])

    def stem_costs(self, space: SearchSpace) -> tuple[int, int] | None:
        try:
            return self._counts(stem_key(space, self.batch, self.dtype))
        except _NoCounts:
            return None

    def head_costs(self, space: SearchSpace, width: int | None = None) -> tuple[int, int] | None:
        try:
            return self._counts(head_key(space, self.batch, self.dtype, width))
        except _NoCounts:
            return None

    def fixed_costs(self, space: SearchSpace, width: int | None = None) -> tuple[int, int] | None:
        """(params, MACs) of the stem, fixed stages and head (after a last block of `width`)."""
        stem, head = self.stem_costs(space), self.head_costs(space, width)
        if stem is None or head is None:
            return None
        return stem[0] + head[0], stem[1] + head[1]

    def raw_fixed_ms(self, space: SearchSpace, width: int | None = None) -> float:
        return (
            self.entry(stem_key(space, self.batch, self.dtype))["mean"]
            + self.entry(head_key(space, self.batch, self.dtype, width))["mean"]
        )

    def stem_latency_ms(self, space: SearchSpace) -> float:
        """Stem and fixed stages, plus the calibration intercept: the part no choice changes."""
        return self._ms(stem_key(space, self.batch, self.dtype)) + self.intercept

    def head_latency_ms(self, space: SearchSpace, width: int | None = None) -> float:
        """Head and classifier after a last block of `width`."""
        return self._ms(head_key(space, self.batch, self.dtype, width))

    def fixed_latency_ms(self, space: SearchSpace, width: int | None = None) -> float:
        """Stem, fixed stages, head and classifier, plus the calibration intercept."""
        return self.slope * self.raw_fixed_ms(space, width) + self.intercept

    def predict_ms(self, space: SearchSpace, choices: list[Choice]) -> float:
        widths = space.chain_widths(choices)
        return self.fixed_latency_ms(space, widths[-1]) + sum(
            self.path_latency_ms(space, k, c, widths[k]) for k, c in enumerate(choices)
        )

    def raw_total_ms(self, space: SearchSpace, choices: list[Choice]) -> float:
        widths = space.chain_widths(choices)
        return self.raw_fixed_ms(space, widths[-1]) + sum(
            self.raw_path_ms(space, k, c, widths[k]) for k, c in enumerate(choices)
        )

    def path_cost(
        self, space: SearchSpace, k: int, choice: Choice, what: str, in_width: int | None = None
    ) -> int:
        """Params or MACs ("params" / "macs") of one path, from the same keys."""
        keys = layer_keys(space, k, _choice(choice), self.batch, self.dtype, in_width)
        return sum(int(self.entry(key)[what]) for key in keys)

    def fixed_cost(self, space: SearchSpace, what: str, width: int | None = None) -> int:
        """Params or MACs ("params" / "macs") of the stem, fixed stages and head."""
        costs = self.fixed_costs(space, width)
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


def check_failure(header: dict[str, Any]) -> str | None:
    """Why a table failed its own hold-out check (None when it passed or records no check)."""
    check = header.get("check")
    if isinstance(check, dict) and check.get("passed") is False:
        return str(check.get("reason") or "hold-out check failed")
    return None


def refuse_failed(path: str | Path) -> None:
    """BadInput, in one line, for a table that failed its own hold-out check (`search`)."""
    header = load_lut(path).header
    reason = check_failure(header)
    if reason:
        raise BadInput(
            f"latency table {path} failed its own hold-out check ({reason}); "
            "measure it again (-o calibration_nets=30, --clock cpu on a busy machine) or "
            "pass --force to search with it anyway"
        )


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
    entries = dict(data.get("entries", {}))
    for key, entry in entries.items():  # a latency is a finite number >= 0, or the search is off
        mean = entry.get("mean") if isinstance(entry, dict) else None
        if not isinstance(mean, (int, float)) or not math.isfinite(mean) or mean < 0:
            raise BadInput(f"latency table {path}: entry {key!r} has mean {mean!r} ms (not >= 0)")
    return LatencyTable(Path(path), header, entries, dict(data.get("samples", {})))

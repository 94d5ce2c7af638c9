"""Architectures as timm block strings, parsed strictly.

timm's `decode_arch_def` silently ignores tokens it does not know (`ir_r2_k3_x9` builds a network);
dnatool parses the same grammar strictly and names the offending token, then hands the canonical
strings to timm. An `ArchSpec` is stem + stages of block strings + head: exactly timm's
`EfficientNet(block_args=decode_arch_def(arch_def), stem_size, num_features)`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from dnatool.errors import BadInput

ARCH_FORMAT = "dnatool.arch"
ARCH_VERSION = 1

BLOCK_TYPES = ("ds", "dsa", "ir", "er", "cn", "uir")
ACTIVATIONS = {"re": "relu", "r6": "relu6", "hs": "hard_swish", "sw": "swish", "mi": "mish"}
MODEL_ACTIVATIONS = ("swish", "silu", "relu", "relu6", "hard_swish", "mish", "gelu")
_INT_KEYS = ("r", "k", "a", "p", "s", "c", "gs")
_FLOAT_KEYS = ("e", "se")
_TOKEN = re.compile(r"([a-z]+)(\d[\d.]*)")


@dataclass(frozen=True)
class BlockSpec:
    """One timm block string, e.g. `ir_r2_k3_s2_e6_c24_se0.25`, decoded into fields."""

    type: str
    out: int
    repeat: int = 1
    kernel: int = 3
    stride: int = 1
    exp: float = 1.0
    se: float = 0.0
    exp_kernel: int | None = None
    pw_kernel: int | None = None
    group_size: int | None = None
    act: str | None = None
    skip: bool | None = None

    def to_str(self) -> str:
        """The canonical timm string; `parse_block(spec.to_str()) == spec` always holds."""
        parts = [self.type, f"r{self.repeat}", f"k{self.kernel}"]
        parts += [f"a{self.exp_kernel}"] if self.exp_kernel is not None else []
        parts += [f"p{self.pw_kernel}"] if self.pw_kernel is not None else []
        parts += [f"s{self.stride}", f"e{_num(self.exp)}", f"c{self.out}"]
        parts += [f"se{_num(self.se)}"] if self.se else []
        parts += [f"gs{self.group_size}"] if self.group_size is not None else []
        parts += [f"n{_act_code(self.act)}"] if self.act else []
        parts += ["skip" if self.skip else "noskip"] if self.skip is not None else []
        return "_".join(parts)


def _num(value: float) -> str:
    """Shortest text that reads back as the same float, positional (`6`, `0.25`, `1.2345678`):
    the block grammar has no exponents, and `:g` would round to 6 significant digits."""
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _act_code(act: str) -> str:
    return {name: code for code, name in ACTIVATIONS.items()}[act]


def parse_block(text: str) -> BlockSpec:
    """Parse one block string strictly; the error names the bad token and the whole string."""
    if not isinstance(text, str) or not text:
        raise BadInput(f"block string must be a non-empty string, got {text!r}")
    kind, *tokens = text.split("_")
    if kind not in BLOCK_TYPES:
        raise BadInput(f"unknown block type {kind!r} in {text!r} (known: {', '.join(BLOCK_TYPES)})")
    fields: dict[str, Any] = {}
    for token in tokens:
        key, value = _parse_token(token, text)
        if key in fields:
            raise BadInput(f"repeated token {token!r} in block string {text!r}")
        fields[key] = value
    if "out" not in fields:
        raise BadInput(f"block string {text!r} has no output width token (c<N>)")
    spec = BlockSpec(type=kind, **fields)
    _check_ranges(spec, text)
    return spec


def _parse_token(token: str, text: str) -> tuple[str, Any]:
    if token in ("skip", "noskip"):
        return "skip", token == "skip"
    if token.startswith("n") and token[1:] in ACTIVATIONS:
        return "act", ACTIVATIONS[token[1:]]
    match = _TOKEN.fullmatch(token)
    if not match or match.group(1) not in _INT_KEYS + _FLOAT_KEYS:
        raise BadInput(f"unknown token {token!r} in block string {text!r}")
    key, raw = match.groups()
    names = {
        "r": "repeat",
        "k": "kernel",
        "a": "exp_kernel",
        "p": "pw_kernel",
        "s": "stride",
        "c": "out",
        "gs": "group_size",
        "e": "exp",
        "se": "se",
    }
    try:
        value: Any = float(raw) if key in _FLOAT_KEYS else int(raw)
    except ValueError:
        raise BadInput(f"bad number in token {token!r} of block string {text!r}") from None
    return names[key], value


def _check_ranges(spec: BlockSpec, text: str) -> None:
    checks = [
        (spec.repeat >= 1, "repeat r must be >= 1"),
        (spec.kernel >= 1 and spec.kernel % 2 == 1, "kernel k must be odd"),
        (spec.stride in (1, 2), "stride s must be 1 or 2"),
        (spec.exp > 0, "expansion e must be > 0"),
        (spec.out >= 1, "width c must be >= 1"),
        (0 <= spec.se < 1, "se ratio must be in [0, 1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise BadInput(f"{message} in block string {text!r}")


@dataclass(frozen=True)
class ArchSpec:
    """A standalone network: stem, stages of blocks, head. Lossless to and from timm's arch_def."""

    stages: tuple[tuple[BlockSpec, ...], ...]
    stem: int = 32
    head: int = 1280
    act: str = "swish"
    resolution: int = 224
    num_classes: int = 1000
    in_chans: int = 3
    name: str = "custom"
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.stages or any(not stage for stage in self.stages):
            raise BadInput("an architecture needs at least one stage and no empty stage")
        if self.act not in MODEL_ACTIVATIONS:
            raise BadInput(
                f"unknown activation {self.act!r} (known: {', '.join(MODEL_ACTIVATIONS)})"
            )
        for stage in self.stages:
            for block in stage[1:]:
                if block.stride != 1:
                    raise BadInput(
                        f"only the first block of a stage may have a stride (timm ignores "
                        f"{block.to_str()!r}'s s{block.stride})"
                    )
        if not isinstance(self.name, str):
            raise BadInput(f"architecture field 'name' must be a string, got {self.name!r}")
        if not isinstance(self.meta, dict):
            raise BadInput(f"architecture field 'meta' must be an object, got {self.meta!r}")
        for name in ("stem", "head", "resolution", "num_classes", "in_chans"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BadInput(
                    f"architecture field {name!r} must be a positive integer, got {value!r}"
                )

    @property
    def arch_def(self) -> list[list[str]]:
        """timm's arch_def: a list of stages, each a list of block strings."""
        return [[block.to_str() for block in stage] for stage in self.stages]

    @property
    def stage_widths(self) -> list[int]:
        return [stage[-1].out for stage in self.stages]

    @property
    def stage_strides(self) -> list[int]:
        """Cumulative stride at each stage output (the stem has stride 2)."""
        strides, total = [], 2
        for stage in self.stages:
            total *= stage[0].stride
            strides.append(total)
        return strides

    @classmethod
    def from_arch_def(cls, arch_def: Any, **options: Any) -> ArchSpec:
        """From a list of stages of block strings, with stem/head/act/resolution as options."""
        if not isinstance(arch_def, list) or not all(isinstance(s, list) for s in arch_def):
            raise BadInput("an arch_def must be a list of stages, each a list of block strings")
        check_fields(set(options) | {"arch_def"}, "arch options")
        stages = tuple(tuple(parse_block(text) for text in stage) for stage in arch_def)
        return cls(stages=stages, **options)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "format": ARCH_FORMAT,
            "version": ARCH_VERSION,
            "name": self.name,
            "resolution": self.resolution,
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "stem": self.stem,
            "head": self.head,
            "act": self.act,
            "arch_def": self.arch_def,
        }
        if self.meta:
            data["meta"] = self.meta
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> ArchSpec:
        """Strict: the format tag, a known version, and no unknown fields."""
        if not isinstance(data, dict) or data.get("format") != ARCH_FORMAT:
            raise BadInput(f'not a dnatool arch file (expected "format": "{ARCH_FORMAT}")')
        if data.get("version") != ARCH_VERSION:
            raise BadInput(
                f"unsupported arch file version {data.get('version')!r} (this dnatool reads {ARCH_VERSION})"
            )
        check_fields(set(data) - {"format", "version"}, "arch file")
        if "arch_def" not in data:
            raise BadInput("arch file has no 'arch_def'")
        options = {k: v for k, v in data.items() if k not in ("format", "version", "arch_def")}
        return cls.from_arch_def(data["arch_def"], **options)

    def replace(self, **changes: Any) -> ArchSpec:
        return dataclasses.replace(self, **changes)


def check_fields(keys: set[Any], what: str) -> None:
    """Refuse keys that are neither `arch_def` nor an ArchSpec option, naming the first."""
    known = {"arch_def"} | {f.name for f in dataclasses.fields(ArchSpec)} - {"stages"}
    unknown = sorted(str(key) for key in keys - known)
    if unknown:
        raise BadInput(
            f"unknown field {unknown[0]!r} in {what} (known: {', '.join(sorted(known))})"
        )

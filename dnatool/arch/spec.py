"""Architectures as timm block strings, parsed strictly.

timm's `decode_arch_def` silently ignores tokens it does not know (`ir_r2_k3_x9` builds a network);
dnatool parses the same grammar strictly and names the offending token, then hands the canonical
strings to timm. An `ArchSpec` is stem + stages of block strings + head: exactly timm's
`EfficientNet(block_args=decode_arch_def(arch_def), stem_size, num_features)`.

Values timm would crash on (`a0` divides by zero, a group size that does not divide its channels
trips an assertion) or that no machine could build (`c99999999999`) are refused up front, one line
naming the token and the bound:

- width `c`, `stem`, `head`, `in_chans`: 1..8192 (`MAX_WIDTH`); `num_classes`: 1..1,000,000
- kernels `k`, `a` (expansion / uir start), `p` (projection / uir end): odd, 1..31 (`MAX_KERNEL`;
  timm reads `a0` / `p0` as a zero-size conv, even kernels misalign the residual)
- repeats `r`: 1..64 (`MAX_REPEAT`); stride `s`: 1 or 2 (timm's builder asserts it)
- expansion `e`: > 0 and <= 64 (`MAX_EXP`); SE ratio `se`: 0..1, and it must leave at least one
  channel in the squeeze (timm rounds `in_chs * se`; 0 channels divides by zero)
- group size `gs`: >= 1 and a divisor of the channels it groups, whose group count must split the
  grouped conv's input and output (timm asserts; `gs0`, timm's dense conv, is refused so that
  `gs` always means a group size)
- `resolution`: 8..4096 (`MIN_RESOLUTION`, `MAX_RESOLUTION`)

Besides timm's own types, two hybrid CNN-transformer layers (BossNAS's HyTra ops, timm ByobNet
blocks made by `nn/hybrid.py`): `rc` ResConv, a ResNet bottleneck (ratio `e`) whose kxk conv
(`k`) follows a depthwise kxk position-encoding conv that does the striding, and `ra` ResAtt, the
same with multi-head self-attention (`h` heads) in place of the dense kxk conv. They take only
`r k s e c` (and `h`, 1..64 heads dividing the bottleneck width, for `ra`); any other token is
refused. Two vision-transformer layers (timm `vision_transformer` modules, `nn/vit.py`): `vt` a
pre-norm transformer layer on the H x W tokens of its input map (`c` width, `h` heads dividing
it, `e` MLP ratio, `k1 s1` only; a width change enters through a linear projection), and `pe` a
patch embedding (timm `PatchEmbed`, a k x k conv of stride k = `s`, with a learned position
embedding).

Bounds needing the block's input width (`gs`, `se`) are checked when the blocks form an ArchSpec.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from dnatool.errors import BadInput

ARCH_FORMAT = "dnatool.arch"
ARCH_VERSION = 1

BLOCK_TYPES = ("ds", "dsa", "ir", "er", "cn", "uir", "rc", "ra", "vt", "pe")
TOKEN_TYPES = ("vt", "pe")  # vision-transformer layers, built by nn/vit.py
# built by nn/hybrid.py and nn/vit.py, not by timm's EfficientNet builder
HYBRID_TYPES = ("rc", "ra", *TOKEN_TYPES)
ACTIVATIONS = {"re": "relu", "r6": "relu6", "hs": "hard_swish", "sw": "swish", "mi": "mish"}
MODEL_ACTIVATIONS = ("swish", "silu", "relu", "relu6", "hard_swish", "mish", "gelu")
_INT_KEYS = ("r", "k", "a", "p", "s", "c", "gs", "h")
_FLOAT_KEYS = ("e", "se")
_TOKEN = re.compile(r"([a-z]+)(\d[\d.]*)")
_KEYS = {  # token key -> BlockSpec field
    "r": "repeat",
    "k": "kernel",
    "a": "exp_kernel",
    "p": "pw_kernel",
    "s": "stride",
    "c": "out",
    "gs": "group_size",
    "h": "heads",
    "e": "exp",
    "se": "se",
}

MAX_WIDTH = 8192  # c, stem, head, in_chans
MAX_KERNEL = 31  # k, a, p (odd)
MAX_REPEAT = 64  # r
MAX_EXP = 64.0  # e
MAX_SE = 1.0  # se
MAX_HEADS = 64  # h
STRIDES = (1, 2)  # s: timm's builder asserts stride in (1, 2)
MIN_RESOLUTION, MAX_RESOLUTION = 8, 4096
MAX_CLASSES = 1_000_000
FIELD_RANGES = {  # ArchSpec integer fields: (min, max)
    "stem": (1, MAX_WIDTH),
    "head": (1, MAX_WIDTH),
    "in_chans": (1, MAX_WIDTH),
    "num_classes": (1, MAX_CLASSES),
    "resolution": (MIN_RESOLUTION, MAX_RESOLUTION),
}


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
    heads: int | None = None

    @property
    def bottleneck(self) -> int:
        """Width inside an `rc` / `ra` bottleneck, as timm's ByobNet rounds `out * e`."""
        return make_divisible(self.out * self.exp)

    def to_str(self) -> str:
        """The canonical timm string; `parse_block(spec.to_str()) == spec` always holds."""
        parts = [self.type, f"r{self.repeat}", f"k{self.kernel}"]
        parts += [f"a{self.exp_kernel}"] if self.exp_kernel is not None else []
        parts += [f"p{self.pw_kernel}"] if self.pw_kernel is not None else []
        parts += [f"s{self.stride}"]
        parts += [] if self.type == "pe" else [f"e{_num(self.exp)}"]  # a patch conv expands nothing
        parts += [f"c{self.out}"]
        parts += [f"h{self.heads}"] if self.heads is not None else []
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


def make_divisible(
    value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9
) -> int:
    """timm's `make_divisible`: nearest multiple of `divisor`, never more than 10% below (the
    expanded width of ir / er / uir blocks, needed to check `gs` and `se` as timm will)."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < round_limit * value else new


def parse_block(text: str) -> BlockSpec:
    """Parse one block string strictly; the error names the bad token and the whole string."""
    if not isinstance(text, str) or not text:
        raise BadInput(f"block string must be a non-empty string, got {text!r}")
    kind, *tokens = text.split("_")
    if kind not in BLOCK_TYPES:
        raise BadInput(f"unknown block type {kind!r} in {text!r} (known: {', '.join(BLOCK_TYPES)})")
    fields: dict[str, Any] = {}
    written: dict[str, str] = {}
    for token in tokens:
        key, value = _parse_token(token, text)
        if key in fields:
            raise BadInput(f"repeated token {token!r} in block string {text!r}")
        fields[key], written[key] = value, token
    if "out" not in fields:
        raise BadInput(f"block string {text!r} has no output width token (c<N>)")
    if kind == "vt":
        fields.setdefault("kernel", 1)
    if kind == "pe":
        fields.setdefault("kernel", fields.get("stride", 1))
    if kind in HYBRID_TYPES:
        _check_hybrid_tokens(kind, fields, written, text)
    elif "heads" in fields:
        raise BadInput(
            f"token {written['heads']!r} in {text!r}: heads are for `ra` and `vt` blocks only"
        )
    spec = BlockSpec(type=kind, **fields)
    check_block(spec, text, written)
    return spec


_HYBRID_FIELDS = {"rc": {"repeat", "kernel", "stride", "exp", "out"}}
_HYBRID_FIELDS["ra"] = _HYBRID_FIELDS["rc"] | {"heads"}
_HYBRID_FIELDS["vt"] = _HYBRID_FIELDS["ra"]
_HYBRID_FIELDS["pe"] = {"repeat", "kernel", "stride", "out"}


def _check_hybrid_tokens(kind: str, fields: dict[str, Any], written: dict[str, str], text: str):
    """`rc` / `ra` / `vt` / `pe` take only the tokens they use (timm would ignore the others
    silently); a `vt` layer mixes tokens only (k1 s1), a patch embedding's kernel is its stride."""
    extra = [f for f in fields if f not in _HYBRID_FIELDS[kind]]
    if extra:
        raise BadInput(f"token {written[extra[0]]!r} in {text!r}: `{kind}` blocks do not take it")
    if kind in ("ra", "vt") and "heads" not in fields:
        raise BadInput(f"block string {text!r} has no heads token (h<N>); `{kind}` blocks need one")
    if kind == "vt" and (fields["kernel"] != 1 or fields.get("stride", 1) != 1):
        raise BadInput(
            f"block string {text!r}: `vt` layers take k1 s1 only (tokens keep their grid)"
        )
    if kind == "pe" and (
        fields["kernel"] != fields.get("stride", 1) or fields.get("repeat", 1) != 1
    ):
        raise BadInput(
            f"block string {text!r}: a `pe` patch embedding is one layer whose kernel equals its "
            "stride (k2_s2: 2 x 2 patches)"
        )


def _parse_token(token: str, text: str) -> tuple[str, Any]:
    if token in ("skip", "noskip"):
        return "skip", token == "skip"
    if token.startswith("n") and token[1:] in ACTIVATIONS:
        return "act", ACTIVATIONS[token[1:]]
    match = _TOKEN.fullmatch(token)
    if not match or match.group(1) not in _INT_KEYS + _FLOAT_KEYS:
        raise BadInput(f"unknown token {token!r} in block string {text!r}")
    key, raw = match.groups()
    try:
        value: Any = float(raw) if key in _FLOAT_KEYS else int(raw)
    except ValueError:
        raise BadInput(f"bad number in token {token!r} of block string {text!r}") from None
    return _KEYS[key], value


def check_block(
    spec: BlockSpec, text: str | None = None, written: dict[str, str] | None = None
) -> None:
    """Refuse a block whose values are out of bounds, naming the token as written and the bound."""
    written = written or {}
    for field_name, label, ok, bound in _block_bounds(spec):
        if not ok:
            key = next(k for k, f in _KEYS.items() if f == field_name)
            token = written.get(field_name) or f"{key}{_num(getattr(spec, field_name))}"
            raise BadInput(
                f"block {text or spec.to_str()!r}: {label} {token} is out of range ({bound})"
            )


def _block_bounds(spec: BlockSpec) -> list[tuple[str, str, bool, str]]:
    """(field, what it is, within bounds, the bound) for every value the block sets."""
    bounds = [
        (
            ("repeat", "repeat", spec.repeat == 1, "1: a patch embedding is one layer")
            if spec.type == "pe"
            else ("repeat", "repeat", 1 <= spec.repeat <= MAX_REPEAT, f"1..{MAX_REPEAT}")
        ),
        (
            ("kernel", "kernel", spec.kernel == spec.stride, "equal to the stride")
            if spec.type == "pe"
            else ("kernel", "kernel", spec.kernel == 1, "1: a transformer layer mixes tokens")
            if spec.type == "vt"
            else ("kernel", "kernel", _odd_kernel(spec.kernel), f"odd, 1..{MAX_KERNEL}")
        ),
        (
            ("stride", "stride", spec.stride == 1, "1: tokens keep their grid")
            if spec.type == "vt"
            else ("stride", "stride", spec.stride in STRIDES, " or ".join(map(str, STRIDES)))
        ),
        ("exp", "expansion", 0 < spec.exp <= MAX_EXP, f"> 0 and <= {MAX_EXP:g}"),
        ("out", "width", 1 <= spec.out <= MAX_WIDTH, f"1..{MAX_WIDTH}"),
        ("se", "SE ratio", 0 <= spec.se <= MAX_SE, f"0..{MAX_SE:g}"),
    ]
    for name in ("exp_kernel", "pw_kernel"):
        if getattr(spec, name) is not None:
            bounds.append(
                (name, "kernel", _odd_kernel(getattr(spec, name)), f"odd, 1..{MAX_KERNEL}")
            )
    if spec.group_size is not None:
        bounds.append(("group_size", "group size", spec.group_size >= 1, ">= 1"))
    if spec.heads is not None:
        split = spec.out if spec.type == "vt" else spec.bottleneck
        what = "width" if spec.type == "vt" else "bottleneck"
        ok = 1 <= spec.heads <= MAX_HEADS and split % spec.heads == 0
        bounds.append(("heads", "heads", ok, f"1..{MAX_HEADS}, dividing the {split}-wide {what}"))
    return bounds


def _odd_kernel(kernel: int) -> bool:
    return 1 <= kernel <= MAX_KERNEL and kernel % 2 == 1


def grouped_convs(block: BlockSpec, in_chs: int) -> list[tuple[int, int, int]]:
    """(in, out, channels divided by `gs`) of each conv timm groups in this block (timm's
    `num_groups(gs, channels)` in `_efficientnet_blocks`; torch needs in and out divisible too)."""
    mid = make_divisible(in_chs * block.exp)
    if block.type == "cn":
        return [(in_chs, block.out, in_chs)]
    if block.type in ("ds", "dsa"):
        return [(in_chs, in_chs, in_chs)]
    if block.type == "er":  # the grouped expansion conv
        return [(in_chs, mid, mid)]
    if block.type == "uir":  # a: start dw conv on the input, k: mid dw, p: end dw on the output
        start = [(in_chs, in_chs, in_chs)] if block.exp_kernel else []
        end = [(block.out, block.out, block.out)] if block.pw_kernel else []
        return start + [(mid, mid, mid)] + end
    return [(mid, mid, mid)]  # ir: the depthwise conv


def squeezed_channels(block: BlockSpec, in_chs: int) -> tuple[int, int]:
    """(channels entering SE, channels it reduces them to) as timm computes them: SE sits on the
    input of ds blocks and on the expanded width of the others, with ratio se / e."""
    if block.type in ("ds", "dsa"):
        return in_chs, round(in_chs * block.se)
    mid = make_divisible(in_chs * block.exp)
    return mid, round(mid * (block.se / block.exp))


def check_block_input(block: BlockSpec, in_chs: int) -> None:
    """Refuse `gs` / `se` values timm cannot build with this input width (assertion, zero-size
    conv)."""
    text = block.to_str()
    gs = block.group_size
    for conv_in, conv_out, channels in grouped_convs(block, in_chs) if gs else []:
        if channels % gs or conv_in % (channels // gs) or conv_out % (channels // gs):
            raise BadInput(
                f"block {text!r}: group size gs{gs} is out of range (it must divide the "
                f"{channels} channels it groups into groups that split a {conv_in} -> {conv_out} "
                f"conv, with {in_chs} input channels)"
            )
    if block.se and block.type != "cn":  # timm's ConvBnAct has no SE
        channels, reduced = squeezed_channels(block, in_chs)
        if reduced < 1:
            raise BadInput(
                f"block {text!r}: SE ratio se{_num(block.se)} is out of range (it squeezes "
                f"{channels} channels to {reduced}; at least 1 is needed)"
            )


def stride_stages(blocks: Sequence[BlockSpec]) -> list[tuple[BlockSpec, ...]]:
    """A run of layers as timm stages: a later layer that strides opens a new stage (timm strides
    only a stage's first block and would silently run the others at stride 1)."""
    cuts = [0] + [i for i, block in enumerate(blocks) if i and block.stride != 1]
    return [tuple(blocks[a:b]) for a, b in zip(cuts, [*cuts[1:], len(blocks)], strict=True)]


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
        for name, (low, high) in FIELD_RANGES.items():
            _check_field(name, getattr(self, name), low, high)
        self._check_blocks()

    def _check_blocks(self) -> None:
        """Every block within bounds, and `gs` / `se` possible with the width entering it."""
        in_chs = self.stem
        for stage in self.stages:
            for block in stage:
                check_block(block)
                check_block_input(block, in_chs)
                if block.repeat > 1:
                    check_block_input(block, block.out)
                in_chs = block.out

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


def _check_field(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadInput(f"architecture field {name!r} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise BadInput(f"architecture field {name!r}: {value} is out of range ({low}..{high})")


def check_fields(keys: set[Any], what: str) -> None:
    """Refuse keys that are neither `arch_def` nor an ArchSpec option, naming the first."""
    known = {"arch_def"} | {f.name for f in dataclasses.fields(ArchSpec)} - {"stages"}
    unknown = sorted(str(key) for key in keys - known)
    if unknown:
        raise BadInput(
            f"unknown field {unknown[0]!r} in {what} (known: {', '.join(sorted(known))})"
        )

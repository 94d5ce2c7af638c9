"""The typed key of a latency table's samples: the one place their names are written and parsed.

A table stores each measured network under a text key (JSON has string keys); everything else
works on `SampleKey`. The text is lossless and stable, so a resumed run finds what is done and
schema-1 tables keep loading: `stem`, `head`, `overhead|stem`, `overhead|head`, `overhead|K`,
`block|K|CELL|OPS`, `net|[[cell, [ops]], ...]` and `ref|I`. A coupled interface (a block or head
that can see several input widths) adds `@WIDTH` after the block index or `head`; a block or
head with one possible input width keeps the plain name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from dnatool.arch.space import Choice, SearchSpace
from dnatool.errors import BadInput

Kind = Literal["stem", "head", "block", "net", "ref"]
KINDS = ("stem", "head", "block", "net", "ref")


@dataclass(frozen=True)
class SampleKey:
    """One measured network of a table.

    `kind`: stem | head | block (one sampled path of one block) | net (a whole network, for
    calibration) | ref (the interleaved reference network, for drift). `overhead`: the empty
    network at the input of a stem, head or block, whose time is the runtime's per-call cost
    there. `width`: the input width of a coupled block or head (None where only one exists).
    """

    kind: Kind
    overhead: bool = False
    block: int | None = None
    width: int | None = None
    choice: Choice | None = None
    choices: tuple[Choice, ...] | None = None
    index: int | None = None

    # ---- constructors: how `profile` names what it measures ----------------------------------

    @staticmethod
    def stem(overhead: bool = False) -> SampleKey:
        return SampleKey("stem", overhead=overhead)

    @staticmethod
    def head(space: SearchSpace, width: int | None = None, overhead: bool = False) -> SampleKey:
        last = len(space.blocks)
        return SampleKey("head", overhead, width=_coupled(space, last, space.head_input(width)[0]))

    @staticmethod
    def block_input(space: SearchSpace, k: int, width: int) -> SampleKey:
        """The empty network at block k's input (its per-call overhead)."""
        return SampleKey("block", True, block=k, width=_coupled(space, k, width))

    @staticmethod
    def path(space: SearchSpace, k: int, choice: Choice, width: int) -> SampleKey:
        return SampleKey("block", block=k, width=_coupled(space, k, width), choice=choice)

    @staticmethod
    def net(choices: list[Choice]) -> SampleKey:
        return SampleKey("net", choices=tuple((int(c), tuple(p)) for c, p in choices))

    @staticmethod
    def ref(index: int) -> SampleKey:
        return SampleKey("ref", index=index)

    # ---- what readers ask ------------------------------------------------------------------

    def input_overhead(self) -> SampleKey:
        """The empty network measured at this stem's, head's or block path's input."""
        if self.kind not in ("stem", "head", "block"):
            raise ValueError(f"a {self.kind} sample has no input overhead")
        return SampleKey(self.kind, True, block=self.block, width=self.width)

    def choices_list(self) -> list[Choice]:
        return list(self.choices or ())

    # ---- text ------------------------------------------------------------------------------

    def __str__(self) -> str:
        at = "" if self.width is None else f"@{self.width}"
        if self.kind == "net":
            return "net|" + choices_text(self.choices_list())
        if self.kind == "ref":
            return f"ref|{self.index}"
        if self.kind == "stem":
            return "overhead|stem" if self.overhead else "stem"
        if self.kind == "head":
            return f"overhead|head{at}" if self.overhead else f"head{at}"
        if self.overhead:
            return f"overhead|{self.block}{at}"
        assert self.choice is not None
        return f"block|{self.block}{at}|{choice_text(self.choice)}"

    @staticmethod
    def parse(text: str) -> SampleKey:
        """The key of a sample name; a malformed name is refused naming it."""
        try:
            return _parse(text)
        except (ValueError, TypeError, json.JSONDecodeError):
            raise BadInput(f"latency table: {text!r} is not a sample name") from None


def _parse(text: str) -> SampleKey:
    head, _, rest = text.partition("|")
    if text == "stem":
        return SampleKey.stem()
    if head.startswith("head") and not rest:
        return SampleKey("head", width=_width(head[4:]))
    if head == "net":
        data = json.loads(rest)
        return SampleKey.net([(int(c), tuple(int(op) for op in p)) for c, p in data])
    if head == "ref":
        return SampleKey.ref(int(rest))
    if head == "overhead":
        if rest == "stem":
            return SampleKey.stem(overhead=True)
        if rest.startswith("head"):
            return SampleKey("head", True, width=_width(rest[4:]))
        k, _, width = rest.partition("@")
        return SampleKey("block", True, block=int(k), width=int(width) if width else None)
    if head == "block":
        where, _, choice = rest.partition("|")
        k, _, width = where.partition("@")
        return SampleKey(
            "block",
            block=int(k),
            width=int(width) if width else None,
            choice=parse_choice_text(choice),
        )
    raise ValueError(text)


def _width(text: str) -> int | None:
    if not text:
        return None
    if not text.startswith("@"):
        raise ValueError(text)
    return int(text[1:])


def _coupled(space: SearchSpace, k: int, width: int) -> int | None:
    """The width to name: None where block k (or the head, k = #blocks) has one input width."""
    return None if len(space.in_widths(k)) == 1 else int(width)


def choices_text(choices: list[Choice]) -> str:
    """A whole network's choices as compact JSON (the text of a `net` sample)."""
    return json.dumps([[c, list(p)] for c, p in choices], separators=(",", ":"))


def choice_text(choice: Choice) -> str:
    """`cell|ops` with one digit per op, or comma-separated ops where some index has two digits."""
    ops = choice[1]
    sep = "" if all(op < 10 for op in ops) else ","
    return f"{choice[0]}|{sep.join(str(op) for op in ops)}"


def parse_choice_text(text: str) -> Choice:
    cell, path = text.split("|")
    ops = path.split(",") if "," in path else list(path)
    return int(cell), tuple(int(op) for op in ops)

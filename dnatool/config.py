"""Recipes: YAML turned into frozen dataclasses; the CLI only overrides (`-o key=value`).

Unknown keys get a did-you-mean, values are checked against the dataclass field types, and the
resolved recipe is what runs store in their manifest (like timm's `args.yaml`).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dnatool.errors import BadInput

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
T = TypeVar("T")


def find_recipe(ref: str) -> Path:
    """A recipe file path, or the name of a recipe shipped with dnatool (`dna-tiny`)."""
    path = Path(ref)
    if path.is_file():
        return path
    shipped = RECIPES_DIR / f"{ref}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    close = difflib.get_close_matches(ref, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (shipped: {', '.join(names)})"
    raise BadInput(f"recipe {ref!r} not found{hint}")


def load_recipe(
    ref: str | None,
    cls: type[T],
    overrides: tuple[str, ...] = (),
    defaults: dict[str, Any] | None = None,
) -> T:
    """YAML recipe (or none) + `key=value` overrides -> a checked instance of `cls`."""
    return from_dict(cls, recipe_data(ref, overrides, defaults))


def recipe_data(
    ref: str | None, overrides: tuple[str, ...] = (), defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The raw settings of a recipe and its overrides (callers that pick the dataclass from a
    key, such as `method`, read it here first)."""
    data: dict[str, Any] = dict(defaults or {})
    if ref is not None:
        path = find_recipe(ref)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise BadInput(f"recipe {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise BadInput(f"recipe {path} must be a mapping of settings")
        data.update(loaded)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"override {item!r} is not key=value")
        try:
            data[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise BadInput(f"override {item!r} is not valid YAML: {problem}") from None
    return data


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise BadInput(f"unknown recipe key {key!r}{hint}")
    values = {key: _coerce(key, value, hints[key]) for key, value in data.items()}
    return cls(**values)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Accept YAML's natural types for a field (ints for floats, lists for tuples)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(key, value, arg)
            except BadInput as exc:
                errors.append(str(exc))
        raise BadInput(errors[0])
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise BadInput(f"recipe key {key!r} must be a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(key, v, inner) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is float:
        wrong = BadInput(f"recipe key {key!r} must be a number, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise wrong
        try:
            return float(value)  # a string too: YAML 1.1 reads `1e-3` (no dot) as one
        except ValueError:
            raise wrong from None
    if hint in (int, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise BadInput(f"recipe key {key!r} must be {hint.__name__}, got {value!r}")
    if origin is dict and not isinstance(value, dict):
        raise BadInput(f"recipe key {key!r} must be a mapping, got {value!r}")
    return value


def to_dict(recipe: Any) -> dict[str, Any]:
    """The resolved recipe, JSON-ready, for manifests."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(recipe).items()
    }


def resumable(default: Any) -> Any:
    """A recipe field that `--resume` may change (it does not change what was already learnt):
    declared on the field, so resume checks never keep their own list of key names."""
    return dataclasses.field(default=default, metadata={"resumable": True})


def resumable_keys(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("resumable"))


def recorded_as_now(cls: type, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A recorded recipe (`cls` as a dict) with the keys it lacks and `new` has set to their
    defaults: a key added to `cls` later defaults to what older runs did."""
    defaults = {
        f.name: list(f.default) if isinstance(f.default, tuple) else f.default
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING
    }
    return {**{k: v for k, v in defaults.items() if k in new}, **old}


def resume_conflict(cls: type, old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first non-resumable key whose value differs between a run's recorded recipe and the
    new one, as a readable phrase (None when the run may be resumed). A key the recorded recipe
    lacks was added later, with a default that keeps what older runs did: it counts as that."""
    allowed = resumable_keys(cls)
    old = recorded_as_now(cls, old, new)
    for key in sorted(set(old) | set(new)):
        if key not in allowed and old.get(key) != new.get(key):
            may = f"only {', '.join(allowed)} may change" if allowed else "nothing may change"
            return f"{key} was {old.get(key)!r}, now {new.get(key)!r} ({may})"
    return None

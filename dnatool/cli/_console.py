"""Where output goes: tables and progress on stderr, exactly one JSON object on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

err = Console(stderr=True, soft_wrap=True)
out = Console()


def emit_json(obj: Any) -> None:
    """Print one JSON object on stdout (what `--json` promises scripts)."""
    sys.stdout.write(json.dumps(obj, default=_jsonable) + "\n")
    sys.stdout.flush()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def info(message: str) -> None:
    err.print(message, highlight=False)


@contextmanager
def progress() -> Iterator[Progress]:
    """A rich progress bar with ETA on stderr; plain, non-animated when stderr is not a TTY."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=err,
        disable=not err.is_terminal,
    )
    with bar:
        yield bar


class Reporter:
    """Turns library events `(name, fields)` into progress-bar updates and plain log lines."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.tasks: dict[str, Any] = {}
        self.plain = not err.is_terminal

    def __call__(self, event: str, **fields: Any) -> None:
        if event == "start":
            self.tasks[fields["task"]] = self.bar.add_task(
                fields["task"],
                total=fields.get("total"),
                status="",
                completed=fields.get("done", 0),
            )
        elif event == "advance":
            self.bar.update(
                self.tasks[fields["task"]],
                advance=fields.get("n", 1),
                status=fields.get("status", ""),
            )
        elif event == "log" and self.plain or event == "log" and fields.get("always"):
            info(fields["message"])
        elif event == "log":
            self.bar.console.print(fields["message"], highlight=False)

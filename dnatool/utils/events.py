"""The one progress-event protocol: library loops never print, they call `report(event, **fields)`.

Events: `start` (`task`, `total`), `advance` (`task`, optional `n`), `log` (`message`, optional
`always`). The CLI renders them (`cli/_console.Reporter`: rich bars, plain lines, or nothing with
`--json`); `quiet` drops them.
"""

from __future__ import annotations

from typing import Any, Protocol


class Report(Protocol):
    def __call__(self, event: str, **fields: Any) -> None: ...


def quiet(event: str, **fields: Any) -> None:
    """The report that drops every event."""

"""Options shared by several commands, so they are spelled and documented once."""

from __future__ import annotations

import click

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on stdout."
)

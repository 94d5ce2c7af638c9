"""Options shared by several commands, so they are spelled and documented once."""

from __future__ import annotations

from typing import Any

import click

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on stdout."
)


# ---- `dnatool profile` verbs: one spelling and one meaning per option across measure, validate,
# export-ops and import -----------------------------------------------------------------------


def space_option(default: str | None = None) -> Any:
    """--space: a search space name or YAML file."""
    return click.option(
        "--space",
        "space_name",
        default=default,
        show_default=default is not None,
        help="Search space name or YAML file.",
    )


out_option = click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Table to write [default: runs/profile/SPACE_DEVICE.json].",
)
resume_option = click.option(
    "--resume",
    is_flag=True,
    help="Complete an interrupted table (only what is missing is measured).",
)
force_option = click.option(
    "--force",
    is_flag=True,
    help="Go ahead despite a protective refusal: overwrite an existing output, or use a table "
    "measured on another machine or runtime.",
)
threads_option = click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="CPU threads of the runtime (ort-cpu, torch-cpu, xnnpack).",
)
seed_option = click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the networks chosen."
)
override_option = click.option(
    "-o",
    "--override",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a field of the measurement protocol (repeatable), e.g. -o pair_rounds=12.",
)
batch_option = click.option(
    "--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Batch size."
)

jobs_option = click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Processes preparing programs before timing starts (xnnpack lowers each network to an "
    "ExecuTorch program, 3-30 s each; they are cached). [default: CPU count]",
)


def jobs_or_default(jobs: int | None) -> int:
    import os

    return jobs or os.cpu_count() or 1

"""`dnatool`: the root group, lazy command loading and the one-line error formatter."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from dnatool import __version__
from dnatool.errors import BadInput, RunFailure

COMMANDS = {
    "doctor": "dnatool.cli.doctor:doctor",
    "space": "dnatool.cli.space:space",
    "arch": "dnatool.cli.arch:arch",
    "demo": "dnatool.cli.demo:demo",
    "profile": "dnatool.cli.profile:profile",
    "backbone": "dnatool.cli.backbone:backbone",
    "train": "dnatool.cli.train:train",
    "rate": "dnatool.cli.rate:rate",
    "search": "dnatool.cli.search:search",
    "bench": "dnatool.cli.bench:bench",
    "retrain": "dnatool.cli.retrain:retrain",
    "cascade": "dnatool.cli.cascade:cascade",
    "scale": "dnatool.cli.scale:scale",
    "export": "dnatool.cli.export:export",
    "serve": "dnatool.cli.serve:serve",
}


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs (keeps `--help` light)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dnatool")
def cli() -> None:
    """Hardware-aware block-wise NAS (DNA family): profile, train, rate, search, deploy."""


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; bad input exits 2 and failures exit 1, each with one line on stderr."""
    debug = os.environ.get("DNATOOL_DEBUG") == "1"
    try:
        _guarded(lambda: cli.main(args=argv, prog_name="dnatool", standalone_mode=False), debug)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.ClickException as exc:
        if debug:
            raise
        _fail(exc.format_message(), exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(0)


def run_script(script_main: Callable[[], int | None]) -> None:
    """The CLI's error contract for the scripts in `benchmarks/`: bad input one line and exit 2,
    failures one line and exit 1 (`DNATOOL_DEBUG=1`: the traceback)."""
    sys.exit(_guarded(script_main, os.environ.get("DNATOOL_DEBUG") == "1") or 0)


def _guarded(work: Callable[[], Any], debug: bool) -> Any:
    try:
        return work()
    except (click.exceptions.Abort, click.exceptions.Exit, click.ClickException):
        raise  # click's own (Abort and Exit are RuntimeErrors): the caller reports them
    except BadInput as exc:
        if debug:
            raise
        _fail(str(exc), 2)
    except (RunFailure, OSError, RuntimeError, ValueError, KeyError, ImportError) as exc:
        if debug:
            raise
        _fail(f"{type(exc).__name__}: {exc}" if not isinstance(exc, RunFailure) else str(exc), 1)


def _fail(message: str, code: int) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    click.echo(f"Error: {first}", err=True)
    sys.exit(code)

"""The evolutionary search's options (SPOS's released defaults), shared by `search` and `bench`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

DEFAULTS = {
    "population": 50,
    "select": 10,
    "mutations": 25,
    "crossovers": 25,
    "mutation_prob": 0.1,
    "generations": 20,
}
HELP = {
    "population": "candidates per generation",
    "select": "best so far that parent the next generation",
    "mutations": "mutants per generation",
    "crossovers": "crossovers per generation",
    "mutation_prob": "probability to re-draw each gene",
    "generations": "generations after the first population",
}


def evolution_options(command: Callable) -> Callable:
    """--population, --select, --mutations, --crossovers, --mutation-prob, --generations."""
    for name in reversed(DEFAULTS):
        default = DEFAULTS[name]
        kind = click.FloatRange(0, 1) if isinstance(default, float) else click.IntRange(min=0)
        command = click.option(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=default,
            show_default=True,
            help=f"Evolution: {HELP[name]}.",
        )(command)
    return command


seed_option = click.option(
    "--seed", type=int, default=0, show_default=True, help="Evolution: seed of every random draw."
)


def evolution_settings(values: dict[str, Any], seed: int = 0) -> Any:
    """EvolutionSettings from the options (a bad combination is one line, exit 2)."""
    from dnatool.search.evolution import EvolutionSettings

    return EvolutionSettings(**{k: values[k] for k in DEFAULTS}, seed=values.get("seed", seed))

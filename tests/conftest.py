"""Shared fixtures: a CLI runner that goes through `main()` (exit codes, one-line errors)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch

# Tests are many tiny ops: one thread avoids OpenMP oversubscription on the 2-core CI machine
# (subprocesses inherit it). Latency measurements set their own thread counts explicitly.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)
# Lowered xnnpack programs are cached; tests keep theirs out of the user's ~/.cache.
if "DNATOOL_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["DNATOOL_CACHE_DIR"] = tempfile.mkdtemp(prefix="dnatool-test-cache-")
    atexit.register(shutil.rmtree, os.environ["DNATOOL_CACHE_DIR"], ignore_errors=True)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run_cli(
    *args: str, cwd: str | None = None, env: dict | None = None, timeout: int = 600
) -> Result:
    """Run `python -m dnatool ARGS` in a subprocess, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "dnatool", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli():
    return run_cli


# The longest tests, first: CI runs the suites on 2 xdist workers (`-n 2 --dist worksteal`), and a
# long test that starts last is a tail that nothing runs beside.
LONGEST = (
    "test_readme_runs_as_written_in_order",
    "test_demo_runs_every_stage_and_a_rerun_reuses_them",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.name not in LONGEST)

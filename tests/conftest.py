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
    import tempfile

    os.environ["DNATOOL_CACHE_DIR"] = tempfile.mkdtemp(prefix="dnatool-test-cache-")


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

"""One writer per artifact: a second process writing the same table or stage directory is refused
in one line while the first holds it; a dead holder's lock is taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from dnatool.errors import BadInput
from dnatool.utils.locks import artifact_lock, lock_path

BUSY = "is being written by another dnatool process"

HOLDER = """
import sys, time
from dnatool.utils.locks import artifact_lock
with artifact_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


FORKING_HOLDER = """
import os, sys, time
from dnatool.utils.locks import artifact_lock
with artifact_lock(sys.argv[1]):
    ready_r, ready_w = os.pipe()
    worker = os.fork()
    if worker == 0:  # the fork hook has run by now: tell the parent, then idle like a worker
        os.write(ready_w, b"x")
        time.sleep(600)
        os._exit(0)
    os.read(ready_r, 1)  # under load the child may not have run yet
    print("held", worker, flush=True)
    time.sleep(600)
"""


def _hold_in_child(target, script: str = HOLDER) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True
    )
    proc.first_line = proc.stdout.readline().split()
    assert proc.first_line[0] == "held"
    return proc


def test_held_lock_refuses_in_one_line_and_a_killed_holders_lock_is_taken_over(tmp_path):
    target = tmp_path / "lut.json"
    proc = _hold_in_child(target)
    try:
        with pytest.raises(BadInput) as err:
            with artifact_lock(target):
                pass
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith(f"{target} {BUSY} (pid {proc.pid} since ")
        assert str(lock_path(target)) in message
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert lock_path(target).is_file()  # left behind by the killed holder, naming a dead pid
    with artifact_lock(target) as path:
        assert path == tmp_path / ".lut.json.lock"
        assert f"pid {os.getpid()} since" in path.read_text()
    assert not path.exists()  # removed on release


def test_lock_file_naming_a_dead_pid_is_taken_over(tmp_path):
    target = tmp_path / "run"
    lock_path(target).write_text("pid 999999999 since 2020-01-01T00:00:00+00:00: dnatool rate\n")
    with artifact_lock(target):
        pass


def test_a_forked_worker_does_not_keep_its_parents_lock(tmp_path):
    """DataLoader workers are forked: a SIGKILLed holder's lock must not live on in them."""
    target = tmp_path / "run"
    proc = _hold_in_child(target, FORKING_HOLDER)
    worker = int(proc.first_line[1])
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        with artifact_lock(target):
            pass
    finally:
        os.kill(worker, signal.SIGKILL)


def _tables(tmp_path):
    from dnatool.profile.ops_io import import_csv
    from dnatool.profile.run import profile_space

    out = tmp_path / "same.json"
    return [
        (out, lambda: profile_space(None, None, out)),
        (out, lambda: import_csv(None, tmp_path / "m.csv", out, "phone")),
    ]


def _runs(tmp_path):
    from dnatool.rate.scores import run_rate
    from dnatool.rate.spos import run_rate_spos
    from dnatool.retrain.train import run_retrain
    from dnatool.search.run import search_run
    from dnatool.search.spos import search_spos_run
    from dnatool.train.loop import run_train
    from dnatool.train.spos import run_spos

    run = tmp_path / "run"
    return [
        (run, lambda: run_train(None, run)),
        (run, lambda: run_spos(None, run)),
        (run / "scores", lambda: run_rate(run)),
        (run / "scores", lambda: run_rate_spos(run)),
        (run, lambda: run_retrain(None, None, run)),
        (run / "search.json", lambda: search_run(run, {})),
        (tmp_path / "s.json", lambda: search_run(run, {}, out=tmp_path / "s.json")),
        (run / "search.json", lambda: search_spos_run(run, {})),
    ]


@pytest.mark.parametrize("kind", ["tables", "runs"])
def test_every_stage_that_writes_takes_the_lock_first(tmp_path, kind):
    """profile / import (a table), train and rate (DNA and SPOS), retrain, search (DNA and SPOS,
    default and --out): each refuses before doing anything while its artifact is held (flock: a
    second holder in one process is refused as well)."""
    for target, stage in (_tables if kind == "tables" else _runs)(tmp_path):
        with artifact_lock(target):
            with pytest.raises(BadInput, match=BUSY):
                stage()


@pytest.mark.parametrize("verb", ["rate", "profile"])
def test_second_writer_on_the_command_line_is_one_line_exit_2(cli, tmp_path, verb):
    run = tmp_path / "run"
    run.mkdir()
    target, args = {
        "rate": (run / "scores", ["rate", str(run)]),
        "profile": (
            tmp_path / "same.json",
            ["profile", "measure", "--device", "ort-cpu", "--space", "tiny", "--quick"]
            + ["--out", str(tmp_path / "same.json")],
        ),
    }[verb]
    proc = _hold_in_child(target)
    try:
        result = cli(*args)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert result.code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {target} {BUSY} (pid {proc.pid}")

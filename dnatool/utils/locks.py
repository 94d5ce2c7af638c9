"""One writer per artifact: a lock file beside each stage directory or table it writes.

Atomic writes keep every single file whole, but two processes writing the same artifact (two
`profile --out same.json`, two `rate` on one run) still interleave: each resumes from what the
other half-wrote and the last one's files win, mixed with the other's. Each stage therefore holds
`.NAME.lock` beside its output (`RUN/.scores.lock` for `rate`, `.lut.json.lock` for a table) for
as long as it writes, and a second process is refused in one line naming the holder.

The lock is `flock` on that file: the kernel drops it when its holder exits, however it exits
(SIGKILL included), so a lock left by a dead process is taken over without a word; the pid in
the file only names the holder in the refusal. Forked children (DataLoader workers) close their
copies, so the lock ends with its holder. Under torchrun only rank 0 takes it (torchrun ends the
other ranks when rank 0 stops).
"""

from __future__ import annotations

import datetime as _dt
import functools
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from dnatool.errors import BadInput

F = TypeVar("F", bound=Callable[..., Any])
_HELD: set[int] = set()  # lock descriptors of this process


def _forget_in_child() -> None:
    """A forked child (DataLoader workers) closes its copies: a lock must end with its holder,
    not linger in workers for seconds after a SIGKILL (closing a copy keeps the parent's lock)."""
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def lock_path(target: str | os.PathLike) -> Path:
    """`DIR/.NAME.lock` for `DIR/NAME` (a stage directory or a table file)."""
    target = Path(os.path.abspath(target))
    return target.parent / f".{target.name}.lock"


@contextmanager
def artifact_lock(target: str | os.PathLike) -> Iterator[Path | None]:
    """Hold the lock of `target` for the block; BadInput (exit 2) while another process holds it.
    Yields the lock file (None on torchrun ranks other than 0, which take no lock)."""
    if os.environ.get("RANK", "0") != "0":
        yield None
        return
    path = lock_path(target)
    fd = _acquire(path, Path(target))
    try:
        yield path
    finally:
        _release(path, fd)


def locked(target: str | Callable[[dict[str, Any]], str | os.PathLike], *parts: str) -> Callable:
    """Decorator: run the function under `artifact_lock` of its argument named `target` (joined
    with `parts`), or of `target(arguments)` when it is a callable of the bound arguments."""

    def wrap(function: F) -> F:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = bound.arguments
            path = target(arguments) if callable(target) else arguments[target]
            with artifact_lock(Path(path, *parts)):
                return function(*args, **kwargs)

        return run  # type: ignore[return-value]

    return wrap


def _acquire(path: Path, target: Path) -> int:
    import fcntl

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot write {target}: {exc.strerror or exc}") from None
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise BadInput(f"cannot lock {target} ({path}): {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise BadInput(
                f"{target} is being written by another dnatool process ({holder}); "
                f"wait for it to finish (lock file {path})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):  # not unlinked by a holder releasing between open and flock
            _describe_self(fd)
            _HELD.add(fd)
            return fd
        os.close(fd)
    raise BadInput(f"cannot lock {target}: {path} keeps being replaced")


def _release(path: Path, fd: int) -> None:
    """Unlink while still holding the lock, so a waiter never takes a lock on a removed file."""
    import fcntl

    _HELD.discard(fd)
    try:
        if _same_file(fd, path):
            path.unlink()
    except OSError:
        pass
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        mine, now = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


def _describe_self(fd: int) -> None:
    """pid, start time and command line, for the refusal a second process prints."""
    started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    command = " ".join(["dnatool", *sys.argv[1:]])[:200].replace("\n", " ")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} since {started}: {command}\n".encode(), 0)


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 400, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text.splitlines()[0] if text else "pid unknown"

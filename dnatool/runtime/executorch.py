"""THE ExecuTorch lowering (XNNPACK delegate) and runner: the phone-CPU path (the `mobile` extra).

Export path as documented by ExecuTorch 1.x: `torch.export` -> `to_edge_transform_and_lower` with
`XnnpackPartitioner` -> `.to_executorch()` -> a `.pte` program run by `executorch.runtime` on
ExecuTorch's CPU threadpool. Used by the xnnpack backend and by `profile export-ops`.

Lowering dominates a table's time (3-6 s per short network, 20-30 s per whole one at 224 px, all
in ExecuTorch's graph passes; lowering many graphs as one multi-method program saves nothing), so
the backend keeps lowered programs in a `ProgramCache` keyed by the exported graph, the input shape
and the versions, and `lower_all` fills it with several processes before anything is timed (the
timing then runs on a quiet machine). Cached programs carry the weights of the module first
lowered under their key: they are for timing, never for shipping (`pte_bytes` is).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def missing() -> str | None:
    try:
        import executorch  # noqa: F401
    except ImportError:
        return "executorch is not installed (pip install 'dnatool[mobile]')"
    return None


def version() -> str:
    import importlib.metadata

    return importlib.metadata.version("executorch")


def pte_bytes(module: Any, input_shape: tuple[int, ...]) -> bytes:
    """Lower `module` (eval mode) to an XNNPACK-delegated ExecuTorch program (its own weights)."""
    return _lower(_export(module, input_shape))


def _lower(exported: Any) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    return (
        to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        .to_executorch()
        .buffer
    )


def _export(module: Any, input_shape: tuple[int, ...]) -> Any:
    import torch

    return torch.export.export(module.eval(), (torch.randn(*input_shape),))


def default_cache_dir() -> Path:
    """`$DNATOOL_CACHE_DIR/xnnpack`, else `$XDG_CACHE_HOME/dnatool/xnnpack` (~/.cache)."""
    root = os.environ.get("DNATOOL_CACHE_DIR")
    if root:
        return Path(root) / "xnnpack"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "dnatool" / "xnnpack"


class ProgramCache:
    """Lowered programs on disk, one file per (graph, input shape, torch and ExecuTorch versions);
    each file's name carries its content hash, so a damaged file is lowered again, never run."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.hits = self.misses = 0

    @staticmethod
    def key(exported: Any, input_shape: tuple[int, ...]) -> str:
        import torch

        params = sorted(
            (name, tuple(t.shape), str(t.dtype)) for name, t in exported.state_dict.items()
        )
        text = repr(
            (version(), torch.__version__, tuple(input_shape), exported.graph_module.code, params)
        )
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _find(self, key: str) -> bytes | None:
        for path in sorted(self.root.glob(f"{key}-*.pte")):
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest()[:16] == path.stem.split("-")[-1]:
                return data
            path.unlink(missing_ok=True)  # damaged: lower again
        return None

    def contains(self, module: Any, input_shape: tuple[int, ...]) -> bool:
        return self.has(_export(module, input_shape), input_shape)

    def has(self, exported: Any, input_shape: tuple[int, ...]) -> bool:
        return self._find(self.key(exported, input_shape)) is not None

    def program(self, module: Any, input_shape: tuple[int, ...]) -> bytes:
        """The lowered program of `module`'s graph at `input_shape` (lowered and kept on a miss)."""
        return self.program_of(_export(module, input_shape), input_shape)

    def program_of(self, exported: Any, input_shape: tuple[int, ...]) -> bytes:
        """`program` of an already exported graph (exporting is a large part of lowering)."""
        from dnatool.utils.io import write_bytes

        key = self.key(exported, input_shape)
        data = self._find(key)
        if data is not None:
            self.hits += 1
            return data
        self.misses += 1
        data = _lower(exported)
        write_bytes(self.root / f"{key}-{hashlib.sha256(data).hexdigest()[:16]}.pte", data)
        return data


def _lower_into(root: str, module: Any, input_shape: tuple[int, ...]) -> None:
    import torch

    torch.set_num_threads(1)
    ProgramCache(root).program(module, input_shape)


def lower_all(
    items: Sequence[tuple[Any, tuple[int, ...]]],
    cache: ProgramCache,
    jobs: int,
    advance: Callable[[], None] = lambda: None,
) -> int:
    """Lower every (module, input shape) not yet in `cache`, `jobs` processes at a time (one:
    in this process); returns how many were lowered."""
    exported = [(m, shape, _export(m, shape)) for m, shape in items]
    missing = [(m, shape, e) for m, shape, e in exported if not cache.has(e, shape)]
    for _ in range(len(items) - len(missing)):
        advance()
    if jobs <= 1 or len(missing) <= 1:  # lower what was exported once for the cache lookup
        for _, shape, graph in missing:
            cache.program_of(graph, shape)
            advance()
        return len(missing)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(_lower_into, str(cache.root), m, shape) for m, shape, _ in missing]
        for future in as_completed(futures):
            future.result()
            advance()
    return len(missing)


def set_threads(threads: int) -> int:
    """Size ExecuTorch's shared CPU threadpool (XNNPACK runs on it); returns the count it has.

    Its default is one thread per core; `--threads` must hold here as it does for onnxruntime.
    """
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)
    return int(portable_lib._threadpool_get_thread_count())


class XnnpackRunner:
    """Times `forward` of a loaded program. The runner owns the program: a method outlives
    neither it nor its buffer (executing a method of a freed program crashes the process)."""

    def __init__(
        self,
        pte: bytes,
        input_shape: tuple[int, ...],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        import torch
        from executorch.runtime import Runtime

        self.program = Runtime.get().load_program(pte)
        self.method = self.program.load_method("forward")
        self.x = torch.randn(*input_shape)
        self.clock = clock

    def run(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            start = self.clock()
            self.method.execute([self.x])
            times.append((self.clock() - start) * 1e3)
        return times

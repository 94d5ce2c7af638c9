"""THE onnxruntime session builder and runner, for latency tables, export and serving.

Sessions run on the CPU provider (the only one of the PyPI wheel) with all graph optimisations,
sequential execution and a fixed intra-op thread count (0: onnxruntime's choice, one per core).
`session_options` is the record of those settings that tables and export.json store, so a table's
prediction and an export's measured latency are comparable only when they name the same options.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dnatool.runtime.onnx import INPUT_NAME

PROVIDER = "CPUExecutionProvider"


def missing() -> str | None:
    """Why onnxruntime (with onnx and onnxslim, which every conversion needs) cannot run here."""
    for module in ("onnxruntime", "onnx", "onnxslim"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install 'dnatool[onnx]')"
    return None


def session_options(threads: int, spinning: bool = True) -> dict[str, Any]:
    """The settings `session` uses, as stored in table headers and export.json."""
    return {
        "provider": PROVIDER,
        "intra_op_threads": threads,
        "inter_op_threads": 1,
        "execution_mode": "sequential",
        "graph_optimization": "all",
        "spinning": spinning,
    }


def session(model: bytes | str | Path, threads: int = 1, spinning: bool = True) -> Any:
    """An onnxruntime CPU session with the settings of `session_options(threads, spinning)`.

    `spinning=False` stops idle intra-op threads from busy-waiting: a server needs those cycles
    for its HTTP threads; a latency measurement wants them spinning.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=[PROVIDER])


def version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)


class OrtRunner:
    """Times `session.run` with a prepared input, as an application calls it."""

    def __init__(
        self,
        session: Any,
        input_shape: tuple[int, ...] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        feed: np.ndarray | None = None,
    ) -> None:
        self.session = session
        self.clock = clock
        if feed is None:
            assert input_shape is not None
            feed = np.random.default_rng(0).standard_normal(input_shape, dtype=np.float32)
        self.feed = {INPUT_NAME: feed}

    def run(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            start = self.clock()
            self.session.run(None, self.feed)
            times.append((self.clock() - start) * 1e3)
        return times

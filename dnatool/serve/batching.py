"""Server-side dynamic batching: concurrent requests share one onnxruntime call.

One worker thread takes the oldest request from a bounded queue, adds whatever else is already
waiting, then waits at most `max_wait_s` for more until `max_batch` samples are gathered (Triton's
`max_queue_delay` policy), runs the concatenated batch once and hands each caller its slice. Per-call
overhead (Python, session setup, thread wake-ups) is paid once per batch instead of once per
request, and small convolutions use the cores better at larger batch. A full queue refuses new
requests at once (HTTP 503) instead of letting latency grow without bound.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dnatool.serve.protocol import ProtocolError

RunFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class _Item:
    x: np.ndarray
    done: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None


class DirectRunner:
    """No batching: each request runs on its own, in its own handler thread."""

    def __init__(self, run: RunFn) -> None:
        self.run = run
        self.batches = 0

    def submit(self, x: np.ndarray) -> np.ndarray:
        self.batches += 1
        return self.run(x)

    def close(self) -> None:
        pass


class Batcher:
    """Dynamic batching with a bounded queue, a maximum wait and a maximum batch."""

    def __init__(
        self, run: RunFn, max_batch: int = 32, max_wait_s: float = 0.002, max_queue: int = 256
    ) -> None:
        self.run, self.max_batch, self.max_wait_s = run, max_batch, max_wait_s
        self.queue: queue.Queue[_Item | None] = queue.Queue(maxsize=max_queue)
        self.batches = 0
        self._carry: _Item | None = None
        self._worker = threading.Thread(target=self._loop, name="dnatool-batcher", daemon=True)
        self._worker.start()

    def submit(self, x: np.ndarray) -> np.ndarray:
        """Block until this request's slice of a batch is computed."""
        item = _Item(x)
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            raise ProtocolError(503, "server busy: request queue is full, retry later") from None
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.result

    def close(self) -> None:
        """Finish every queued request, then stop the worker."""
        self.queue.put(None)
        self._worker.join()

    def _loop(self) -> None:
        while True:
            items, stop = self._gather()
            if items:
                self._run(items)
            if stop:
                return

    def _gather(self) -> tuple[list[_Item], bool]:
        first = self._carry or self.queue.get()
        self._carry = None
        if first is None:
            return [], True
        items, count = [first], len(first.x)
        deadline = time.perf_counter() + self.max_wait_s
        while count < self.max_batch:
            try:
                nxt = self.queue.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                break
            if nxt is None:
                return items, True
            if count + len(nxt.x) > self.max_batch:
                self._carry = nxt
                break
            items.append(nxt)
            count += len(nxt.x)
        return items, False

    def _run(self, items: list[_Item]) -> None:
        self.batches += 1
        try:
            out = self.run(np.concatenate([item.x for item in items]))
            bounds = np.cumsum([0] + [len(item.x) for item in items])
            for item, lo, hi in zip(items, bounds[:-1], bounds[1:], strict=True):
                item.result = out[lo:hi]
        except Exception as exc:  # noqa: BLE001 - every waiting caller must hear about it
            for item in items:
                item.error = exc
        for item in items:
            item.done.set()

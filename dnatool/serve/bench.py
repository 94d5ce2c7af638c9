"""`dnatool bench serve`: throughput and latency of `dnatool serve` with batching on and off.

Both servers run as real `dnatool serve` subprocesses (own interpreter, so the clients' GIL does
not slow the server), one after the other on the same model, in one bench run. N client threads
each keep one HTTP/1.1 connection and send batch-1 requests back to back (binary tensor data, as
tritonclient does) for a fixed time after a warm-up. Figures: requests per second, latency
percentiles, errors (non-200 answers or broken connections) and the mean batch the server ran
(from its statistics endpoint).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dnatool.errors import RunFailure
from dnatool.utils.events import quiet


def _default_model(folder: Path) -> str:
    """A random architecture of the `tiny` space (the demo's size), as an arch file."""
    from dnatool.arch.space import load_space

    space = load_space("tiny")
    arch = space.to_arch(space.sample(np.random.default_rng(0)), name="bench")
    path = folder / "bench.json"
    path.write_text(arch.to_json())
    return str(path)


def _start_server(
    onnx: Path, max_batch: int, max_wait_ms: float, threads: int
) -> tuple[subprocess.Popen, int]:
    cmd = [
        sys.executable,
        "-m",
        "dnatool",
        "serve",
        str(onnx),
        "--port",
        "0",
        "--name",
        "bench",
        "--max-batch",
        str(max_batch),
        "--max-wait-ms",
        str(max_wait_ms),
        "--threads",
        str(threads),
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        if "ready at http://" in line:
            port = int(line.split("ready at http://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
            return proc, port
    proc.kill()
    raise RunFailure("bench serve: the server did not start")


def _request_body(shape: tuple[int, ...]) -> tuple[bytes, dict[str, str]]:
    x = np.random.default_rng(0).standard_normal((1, *shape), dtype=np.float32)
    raw = x.tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return head + raw, {
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }


def _client(
    port: int,
    body: bytes,
    headers: dict[str, str],
    start: float,
    stop: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/v2/models/bench/infer", body, headers)
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        t1 = time.perf_counter()
        if t0 >= start:  # requests begun during warm-up are not counted
            (latencies.append((t1 - t0) * 1000.0) if ok else errors.append(1))
    conn.close()


def _stats(port: int) -> dict[str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/v2/models/bench/stats")
    data = json.loads(conn.getresponse().read())["model_stats"][0]
    conn.close()
    return data


def _load(
    port: int, body: bytes, headers: dict[str, str], clients: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """One phase: N clients for `seconds` after `warmup`; latencies, errors, batches run."""
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter() + warmup
    stop = start + seconds
    threads = [
        threading.Thread(target=_client, args=(port, body, headers, start, stop, latencies, errors))
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, start - time.perf_counter()))
    before = _stats(port)
    for thread in threads:
        thread.join()
    after = _stats(port)
    return {
        "latencies": latencies,
        "errors": len(errors),
        "seconds": seconds,
        "runs": after["execution_count"] - before["execution_count"],
        "samples": after["inference_count"] - before["inference_count"],
    }


def _summary(phases: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = np.asarray([t for p in phases for t in p["latencies"]] or [np.nan])
    seconds, runs = sum(p["seconds"] for p in phases), sum(p["runs"] for p in phases)
    count = sum(len(p["latencies"]) for p in phases)
    return {
        "rps": count / seconds,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "errors": sum(p["errors"] for p in phases),
        "mean_batch": sum(p["samples"] for p in phases) / runs if runs else 0.0,
    }


def _measure(
    onnx: Path,
    shape: tuple[int, ...],
    max_batch: int,
    max_wait_ms: float,
    threads: int,
    clients: int,
    seconds: float,
    rounds: int,
    warmup: float,
) -> tuple[dict, dict]:
    """Both servers up at once; on and off phases alternate so machine load hits both alike."""
    body, headers = _request_body(shape)
    servers = [
        _start_server(onnx, max_batch, max_wait_ms, threads),
        _start_server(onnx, 1, 0.0, threads),
    ]
    phases: list[list[dict[str, Any]]] = [[], []]
    try:
        for _ in range(rounds):
            for index, (_, port) in enumerate(servers):
                phases[index].append(_load(port, body, headers, clients, seconds / rounds, warmup))
    finally:
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            proc.wait(timeout=30)
    return _summary(phases[0]), _summary(phases[1])


def bench_serve(
    model_ref: str | None = None,
    clients: int = 16,
    seconds: float = 6.0,
    rounds: int = 3,
    warmup: float = 0.5,
    max_batch: int = 32,
    max_wait_ms: float = 2.0,
    threads: int = 0,
    report: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """Batching on vs off on the same ONNX model, same clients, same machine, one run."""
    import os

    from dnatool.serve import resolved_onnx
    from dnatool.serve.server import ModelApp

    say = report or quiet
    with (
        tempfile.TemporaryDirectory(prefix="dnatool-bench-") as tmp,
        resolved_onnx(model_ref or _default_model(Path(tmp)), report=say) as (onnx, _),
    ):
        shape = ModelApp(onnx, "probe", max_batch=1).sample_shape
        say(
            "log",
            message=f"bench serve: {clients} clients, batching on (max {max_batch}, wait "
            f"{max_wait_ms} ms) vs off, {rounds} alternating rounds, {seconds:g} s each",
        )
        on, off = _measure(
            onnx, shape, max_batch, max_wait_ms, threads, clients, seconds, rounds, warmup
        )
    return {
        "clients": clients,
        "batched_rps": round(on["rps"], 2),
        "unbatched_rps": round(off["rps"], 2),
        "ratio": round(on["rps"] / off["rps"], 3) if off["rps"] else None,
        "p50_ms": round(on["p50_ms"], 3),
        "p99_ms": round(on["p99_ms"], 3),
        "errors": on["errors"] + off["errors"],
        "unbatched_p50_ms": round(off["p50_ms"], 3),
        "unbatched_p99_ms": round(off["p99_ms"], 3),
        "mean_batch": round(on["mean_batch"], 2),
        "seconds": seconds,
        "rounds": rounds,
        "max_batch": max_batch,
        "max_wait_ms": max_wait_ms,
        "ort_threads": threads,
        "model": model_ref or "tiny-space random arch (32px)",
        "input_shape": [1, *shape],
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }

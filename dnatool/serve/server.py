"""`dnatool serve`: the Open Inference Protocol (KServe v2) REST API over onnxruntime.

Standard library HTTP (`ThreadingHTTPServer`, HTTP/1.1 keep-alive), one thread per connection;
inference goes through the dynamic batcher (or runs directly with `max_batch=1`). Routes:
`GET /v2`, `/v2/health/live`, `/v2/health/ready`, `/v2/models/{name}[/versions/1]`,
`.../ready`, `.../config` (Triton's model configuration, with the preprocessing) and
`POST .../infer`. Every refusal is a JSON `{"error": ...}` with a 4xx (503 when the queue is full)
and the server keeps serving. Loopback by default: there is no authentication.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from dnatool import __version__
from dnatool.serve.protocol import NAMES, ProtocolError, encode_response, parse_request

MODEL_ROUTE = re.compile(
    r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(?:/(ready|infer|config|stats))?/?$"
)
DRAIN_LIMIT = 64 << 20  # oversized bodies up to this are read and dropped, keeping the connection


@dataclass
class Limits:
    max_body_bytes: int = 32 << 20
    max_request_batch: int = 64
    socket_timeout_s: float = 30.0


class ModelApp:
    """One ONNX model behind the protocol: metadata, validation and inference."""

    def __init__(
        self,
        onnx_path: str | Path,
        name: str,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        max_queue: int = 256,
        limits: Limits | None = None,
        threads: int = 0,
        spinning: bool = False,
    ) -> None:
        from dnatool.export.onnx import ort_session, read_metadata
        from dnatool.serve.batching import Batcher, DirectRunner

        self.name, self.limits = name, limits or Limits()
        self.session = ort_session(str(onnx_path), threads=threads, spinning=spinning)
        self.metadata = read_metadata(onnx_path)
        self.input, self.output = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.sample_shape = tuple(int(d) for d in self.input.shape[1:])
        self.max_batch, self.max_wait_ms = max_batch, max_wait_ms
        runner = (
            DirectRunner(self._run)
            if max_batch <= 1
            else Batcher(self._run, max_batch, max_wait_ms / 1000.0, max_queue)
        )
        self.runner = runner
        self.ready = True
        self.inflight = self.inference_count = self.execution_count = 0
        self.batch_sizes: Counter[int] = Counter()
        self._lock = threading.Lock()

    def _run(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output.name], {self.input.name: x})[0]
        with self._lock:
            self.inference_count += len(x)
            self.execution_count += 1
            self.batch_sizes[len(x)] += 1
        return out

    def model_stats(self) -> dict[str, Any]:
        """Triton's statistics extension as counts: samples, runs, and runs per batch size."""
        with self._lock:
            batches = sorted(self.batch_sizes.items())
            inferences, executions = self.inference_count, self.execution_count
        return {
            "model_stats": [
                {
                    "name": self.name,
                    "version": "1",
                    "inference_count": inferences,
                    "execution_count": executions,
                    "batch_stats": [
                        {"batch_size": size, "compute_infer": {"count": count}}
                        for size, count in batches
                    ],
                }
            ]
        }

    def model_metadata(self) -> dict[str, Any]:
        def tensor(t: Any) -> dict[str, Any]:
            return {
                "name": t.name,
                "datatype": "FP32",
                "shape": [d if isinstance(d, int) else -1 for d in t.shape],
            }

        return {
            "name": self.name,
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": [tensor(self.input)],
            "outputs": [tensor(self.output)],
        }

    def model_config(self) -> dict[str, Any]:
        """Triton's model configuration as JSON (what `get_model_config` returns)."""
        params = {
            k: {"string_value": v}
            for k, v in self.metadata.items()
            if k in ("dnatool.preprocess", "dnatool.trained", "dnatool.arch")
        }
        meta = self.model_metadata()
        return {
            "name": self.name,
            "platform": "onnxruntime_onnx",
            "max_batch_size": self.limits.max_request_batch,
            "input": [
                {"name": t["name"], "data_type": "TYPE_FP32", "dims": t["shape"][1:]}
                for t in meta["inputs"]
            ],
            "output": [
                {"name": t["name"], "data_type": "TYPE_FP32", "dims": t["shape"][1:]}
                for t in meta["outputs"]
            ],
            "dynamic_batching": {"max_queue_delay_microseconds": int(self.max_wait_ms * 1000)}
            if self.max_batch > 1
            else None,
            "parameters": params,
        }

    def infer(self, body: bytes, header_length: int | None) -> tuple[bytes, int | None]:
        request = parse_request(body, header_length)
        x = self._check_input(request.inputs)
        wanted = request.outputs or [self.output.name]
        unknown = [n for n in wanted if n != self.output.name]
        if unknown:
            raise ProtocolError(
                400, f"unknown output {unknown[0]!r} (model has {self.output.name!r})"
            )
        result = self.runner.submit(x)
        return encode_response(self.name, request, {self.output.name: result})

    def _check_input(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        if set(inputs) != {self.input.name}:
            raise ProtocolError(
                400,
                f"model {self.name!r} takes exactly one input "
                f"{self.input.name!r}, got {sorted(inputs)}",
            )
        x = inputs[self.input.name]
        if x.dtype != np.float32:
            raise ProtocolError(
                400, f"input {self.input.name!r} must be FP32, got {NAMES[x.dtype]}"
            )
        if x.ndim != 1 + len(self.sample_shape) or tuple(x.shape[1:]) != self.sample_shape:
            raise ProtocolError(
                400,
                f"input {self.input.name!r} must have shape "
                f"[N, {', '.join(map(str, self.sample_shape))}], got {list(x.shape)}",
            )
        if not 1 <= x.shape[0] <= self.limits.max_request_batch:
            raise ProtocolError(
                413 if x.shape[0] else 400,
                f"batch of {x.shape[0]} is outside "
                f"1..{self.limits.max_request_batch} samples per request",
            )
        return np.ascontiguousarray(x, dtype=np.float32)

    def track(self, delta: int) -> None:
        with self._lock:
            self.inflight += delta


class Handler(BaseHTTPRequestHandler):
    """Routes the protocol's URLs to the ModelApp; every error is JSON."""

    protocol_version = "HTTP/1.1"
    server_version = f"dnatool/{__version__}"
    app: ModelApp  # set on the subclass made by make_server

    def setup(self) -> None:
        self.timeout = self.app.limits.socket_timeout_s
        super().setup()
        # Small responses: without this, Nagle's algorithm meets the client's delayed ACK (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # access logs would cost more than the tiny requests they describe

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self._headers_buffer.append(b"\r\n" + body)  # headers and body in one write
        self.flush_headers()

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"))

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _route(self) -> tuple[str, str | None] | None:
        path = self.path.split("?", 1)[0]
        if path in ("/v2", "/v2/", "/v2/health/live", "/v2/health/ready"):
            return path.rstrip("/"), None
        match = MODEL_ROUTE.match(path)
        if not match:
            return None
        name, version, action = match.groups()
        if name != self.app.name or version not in (None, "1"):
            raise ProtocolError(
                404,
                f"unknown model {name!r}"
                + (f" version {version}" if version else "")
                + f" (serving {self.app.name!r}, version 1)",
            )
        return f"model/{action or 'metadata'}", name

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        try:
            route = self._route()
            if route is None:
                raise ProtocolError(404, f"no route {self.path}")
            self._get(route[0])
        except ProtocolError as exc:
            self._error(exc.status, str(exc))

    def _get(self, route: str) -> None:
        app = self.app
        if route == "/v2":
            self._json(
                200,
                {"name": "dnatool", "version": __version__, "extensions": ["binary_tensor_data"]},
            )
        elif route == "/v2/health/live":
            self._json(200, {"live": True})
        elif route in ("/v2/health/ready", "model/ready"):
            self._json(200 if app.ready else 503, {"ready": app.ready})
        elif route == "model/metadata":
            self._json(200, app.model_metadata())
        elif route == "model/config":
            self._json(200, app.model_config())
        elif route == "model/stats":
            self._json(200, app.model_stats())
        else:
            raise ProtocolError(405, f"{route.split('/')[-1]} needs POST")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self.app.track(+1)
        try:
            body = self._read_body()
            route = self._route()
            if route is None or route[0] != "model/infer":
                raise ProtocolError(404 if route is None else 405, f"no POST route {self.path}")
            self._infer(body)
        except ProtocolError as exc:
            self._error(exc.status, str(exc))
        except Exception as exc:  # noqa: BLE001 - the server must answer and keep serving
            self._error(500, f"inference failed: {type(exc).__name__}: {exc}")
        finally:
            self.app.track(-1)

    def _infer(self, body: bytes) -> None:
        raw = self.headers.get("Inference-Header-Content-Length")
        try:
            header_length = int(raw) if raw is not None else None
        except ValueError:
            raise ProtocolError(
                400, f"Inference-Header-Content-Length {raw!r} is not an integer"
            ) from None
        out, out_header = self.app.infer(body, header_length)
        if out_header is None:
            self._send(200, out)
        else:
            self._send(
                200,
                out,
                "application/octet-stream",
                {"Inference-Header-Content-Length": str(out_header)},
            )

    def _content_length(self) -> int:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise ProtocolError(411, "chunked bodies are not accepted: send Content-Length")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            raise ProtocolError(411, "Content-Length required") from None
        if length < 0:
            self.close_connection = True
            raise ProtocolError(400, "negative Content-Length")
        return length

    def _read_body(self) -> bytes:
        length = self._content_length()
        if length > self.app.limits.max_body_bytes:
            self._drain_or_close(length)
            raise ProtocolError(
                413,
                f"request body of {length} bytes exceeds the limit of "
                f"{self.app.limits.max_body_bytes} bytes",
            )
        return self.rfile.read(length)

    def _drain_or_close(self, length: int) -> None:
        """Discard an unwanted body so the connection stays usable; close if it is huge."""
        if length > DRAIN_LIMIT:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)


def make_server(app: ModelApp, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve_forever(
    app: ModelApp, host: str = "127.0.0.1", port: int = 8000, drain_timeout_s: float = 10.0
) -> None:
    """Serve until SIGINT / SIGTERM, then stop accepting, finish in-flight requests and exit."""
    server = make_server(app, host, port)
    bound_host, bound_port = server.server_address[:2]
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(
        f"dnatool serve: model {app.name!r} ready at http://{bound_host}:{bound_port}"
        f"/v2/models/{app.name} (batching: "
        f"{'off' if app.max_batch <= 1 else f'max {app.max_batch}, wait {app.max_wait_ms} ms'})",
        file=sys.stderr,
        flush=True,
    )
    server.serve_forever(poll_interval=0.1)
    app.ready = False
    _wait_inflight(app, drain_timeout_s)
    app.runner.close()
    server.server_close()
    print("dnatool serve: stopped", file=sys.stderr, flush=True)


def _wait_inflight(app: ModelApp, timeout_s: float) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while app.inflight > 0 and time.monotonic() < deadline:
        time.sleep(0.01)

"""`dnatool serve`: the Open Inference Protocol (KServe v2) REST API over onnxruntime.

Standard library HTTP (`ThreadingHTTPServer`, HTTP/1.1 keep-alive), one thread per connection;
inference goes through the dynamic batcher (or runs directly with `max_batch=1`). Routes:
`GET /v2`, `/v2/health/live`, `/v2/health/ready`, `/v2/models/{name}[/versions/1]`,
`.../ready`, `.../config` (Triton's model configuration, with the preprocessing) and
`POST .../infer`. Every refusal is a JSON `{"error": ...}` with a 4xx (503 when the queue or the
memory budget is full) and the server keeps serving. Loopback by default: there is no
authentication.

Abuse limits (`Limits`): a request must arrive whole (headers and body) within
`request_timeout_s` of its first byte (408, or the connection is dropped), so a client trickling
bytes cannot hold a thread; request bodies held at once across all connections are bounded by
`max_inflight_bytes` (JSON bodies count `JSON_COST` times: decoding them into numbers takes
several times their size), beyond which requests get 503. On SIGINT / SIGTERM the server stops
accepting, answers every request it has begun to receive (with `Connection: close`), closes idle
keep-alive connections and exits 0.
"""

from __future__ import annotations

import io
import json
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from dnatool import __version__
from dnatool.errors import BadInput
from dnatool.serve.protocol import NAMES, ProtocolError, encode_response, parse_request

MODEL_ROUTE = re.compile(
    r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(?:/(ready|infer|config|stats))?/?$"
)
DRAIN_LIMIT = 64 << 20  # oversized bodies up to this are read and dropped, keeping the connection
JSON_COST = 8  # a JSON body's share of the memory budget, per byte: decoded numbers are larger
IDLE_GRACE_S = 1.0  # on shutdown, keep-alive connections idle this long are closed


@dataclass
class Limits:
    max_body_bytes: int = 32 << 20
    max_request_batch: int = 64
    socket_timeout_s: float = 30.0  # the idle wait for a keep-alive request, and each response
    request_timeout_s: float = 30.0  # a whole request, headers and body, from its first byte
    max_inflight_bytes: int = 128 << 20  # request bodies held at once, across connections


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
        from dnatool.export.onnx import read_metadata
        from dnatool.runtime.ort import session as ort_session
        from dnatool.serve.batching import Batcher, DirectRunner

        self.name, self.limits = name, limits or Limits()
        try:
            self.session = ort_session(str(onnx_path), threads=threads, spinning=spinning)
            self.metadata = read_metadata(onnx_path)
        except Exception as exc:  # noqa: BLE001 - onnxruntime and onnx raise their own types
            raise BadInput(
                f"{onnx_path} is not a loadable ONNX model: {_ort_reason(exc)}"
            ) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = inputs[0].shape[1:] if len(inputs) == 1 else []
        if len(inputs) != 1 or len(outputs) != 1 or not all(isinstance(d, int) for d in shape):
            raise BadInput(
                f"{onnx_path}: serve takes a model with one input of fixed sample shape "
                f"[N, C, H, W] and one output (as `dnatool export` writes), this one has "
                f"{len(inputs)} input(s) {[i.shape for i in inputs]} and {len(outputs)} output(s)"
            )
        self.input, self.output = inputs[0], outputs[0]
        self.sample_shape = tuple(int(d) for d in shape)
        self.max_batch, self.max_wait_ms = max_batch, max_wait_ms
        runner = (
            DirectRunner(self._run)
            if max_batch <= 1
            else Batcher(self._run, max_batch, max_wait_ms / 1000.0, max_queue)
        )
        self.runner = runner
        self.ready = True
        self.inference_count = self.execution_count = 0
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


def _ort_reason(exc: Exception) -> str:
    """onnxruntime's first line without its error code and path prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    return re.sub(r"^Load model from .* failed:\s*", "", text) or type(exc).__name__


class _DeadlineReader(io.RawIOBase):
    """A connection's reads: up to `idle_s` for a request's first bytes, then `request_s` for
    the whole request, headers and body; a per-read timeout alone lets a client that sends one
    byte at a time hold a thread forever."""

    def __init__(self, sock: socket.socket, idle_s: float, request_s: float) -> None:
        self.sock, self.idle_s, self.request_s = sock, idle_s, request_s
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def start_request(self) -> None:
        """The next bytes begin a request: its clock starts then."""
        self.deadline = None

    def readinto(self, buffer: Any) -> int:
        if self.deadline is None:
            self.sock.settimeout(self.idle_s)
        else:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"request not received within {self.request_s:g} s")
            self.sock.settimeout(left)
        count = self.sock.recv_into(buffer)
        if self.deadline is None and count:
            self.deadline = time.monotonic() + self.request_s
        return count


class ByteBudget:
    """Request-body bytes held at once across all connections; one request is always let in,
    so a body at the per-request limit is never refused on an idle server."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            if self.used and self.used + size > self.limit:
                return False
            self.used += size
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self.used -= size


class Handler(BaseHTTPRequestHandler):
    """Routes the protocol's URLs to the ModelApp; every error is JSON."""

    protocol_version = "HTTP/1.1"
    server_version = f"dnatool/{__version__}"
    app: ModelApp  # set on the subclass made by make_server
    server: Server

    def setup(self) -> None:
        super().setup()
        limits = self.app.limits
        self.rfile.close()  # replaced: reads go through the request deadline
        self.reader = _DeadlineReader(
            self.connection, limits.socket_timeout_s, limits.request_timeout_s
        )
        self.rfile = io.BufferedReader(self.reader)
        # Small responses: without this, Nagle's algorithm meets the client's delayed ACK (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.busy, self.closing, self.idle_since = False, False, time.monotonic()
        self.server.track(self, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self, False)

    def handle_one_request(self) -> None:
        self.reader.start_request()
        try:
            super().handle_one_request()
        finally:
            with self.server.lock:
                self.busy, self.idle_since = False, time.monotonic()

    def parse_request(self) -> bool:
        """The request line has arrived: the request is in flight (a shutdown answers it)."""
        with self.server.lock:
            self.busy = not self.closing
        if not self.busy:
            self.close_connection = True
            return False
        if len(self.raw_requestline.split()) == 2:  # HTTP/0.9: no headers follow, and the
            # answer has no status line or headers (the stdlib would wait for headers, then fail)
            self.close_connection = True
            self.connection.settimeout(self.app.limits.socket_timeout_s)
            self.wfile.write(b'{"error": "HTTP/0.9 is not supported: use HTTP/1.1"}\n')
            return False
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # access logs would cost more than the tiny requests they describe

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.connection.settimeout(self.app.limits.socket_timeout_s)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.server.stopping.is_set() or self.close_connection:
            self.send_header("Connection", "close")  # also ends this keep-alive connection
        self._headers_buffer.append(b"\r\n" + body)  # headers and body in one write
        self.flush_headers()

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj, allow_nan=False).encode("utf-8"), headers=headers)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message}, {"Retry-After": "1"} if status == 503 else None)

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
        held = 0
        try:
            length = self._content_length()
            held = self._reserve(length)
            body = self._read_body(length)
            route = self._route()
            if route is None or route[0] != "model/infer":
                raise ProtocolError(404 if route is None else 405, f"no POST route {self.path}")
            self._infer(body)
        except ProtocolError as exc:
            self._error(exc.status, str(exc))
        except Exception as exc:  # noqa: BLE001 - the server must answer and keep serving
            self._error(500, f"inference failed: {type(exc).__name__}: {exc}")
        finally:
            self.server.budget.give(held)

    def _reserve(self, length: int) -> int:
        """The body's share of the server's memory budget (0 and nothing held when refused)."""
        limits = self.app.limits
        if length > limits.max_body_bytes:
            self._drain_or_close(length)
            raise ProtocolError(
                413,
                f"request body of {length} bytes exceeds the limit of "
                f"{limits.max_body_bytes} bytes",
            )
        binary = self.headers.get("Inference-Header-Content-Length") is not None
        cost = length if binary else length * JSON_COST
        if not self.server.budget.take(cost):
            self._drain_or_close(length)
            raise ProtocolError(
                503,
                f"server busy: request bodies in flight use the memory budget of "
                f"{limits.max_inflight_bytes} bytes; retry later",
            )
        return cost

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

    def _read_body(self, length: int) -> bytes:
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            raise ProtocolError(
                408, f"request not received within {self.app.limits.request_timeout_s:g} s"
            ) from None
        if len(body) < length:
            self.close_connection = True
            raise ProtocolError(400, f"body ended after {len(body)} of {length} bytes")
        return body

    def _drain_or_close(self, length: int) -> None:
        """Discard an unwanted body so the connection stays usable; close if it is huge."""
        if length > DRAIN_LIMIT:
            self.close_connection = True
            return
        try:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 16))
                if not chunk:
                    break
                length -= len(chunk)
        except TimeoutError:
            self.close_connection = True


class Server(ThreadingHTTPServer):
    """The HTTP server, the connections it holds (for a graceful stop) and the memory budget."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[Handler], app: ModelApp) -> None:
        super().__init__(address, handler)
        self.app = app
        self.budget = ByteBudget(app.limits.max_inflight_bytes)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.connections: set[Handler] = set()

    def track(self, handler: Handler, open_: bool) -> None:
        with self.lock:
            (self.connections.add if open_ else self.connections.discard)(handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line per broken connection instead of socketserver's traceback."""
        exc = sys.exc_info()[1]
        print(
            f"dnatool serve: connection {client_address[0]}:{client_address[1]} failed: "
            f"{type(exc).__name__}: {exc}",
            file=sys.stderr,
            flush=True,
        )

    def accept_backlog(self) -> None:
        """Serve the connections the kernel completed before the stop (closing the listening
        socket would reset them, with their requests)."""
        self.socket.settimeout(0)
        while True:
            try:
                request, address = self.socket.accept()
            except OSError:
                return
            request.settimeout(None)
            self.process_request(request, address)

    def drain(self, timeout_s: float) -> bool:
        """Wait for every request begun to be answered; close keep-alive connections idle for
        IDLE_GRACE_S. True when every connection ended within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            now = time.monotonic()
            with self.lock:
                if not self.connections:
                    return True
                idle = [
                    h
                    for h in self.connections
                    if not h.busy and not h.closing and now - h.idle_since >= IDLE_GRACE_S
                ]
                for handler in idle:
                    handler.closing = True
            for handler in idle:
                try:
                    handler.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            time.sleep(0.01)
        return False


def make_server(app: ModelApp, host: str = "127.0.0.1", port: int = 8000) -> Server:
    handler = type("BoundHandler", (Handler,), {"app": app})
    return Server((host, port), handler, app)


def serve_forever(
    app: ModelApp, host: str = "127.0.0.1", port: int = 8000, drain_timeout_s: float = 10.0
) -> None:
    """Serve until SIGINT / SIGTERM, then stop accepting, finish in-flight requests and exit."""
    _return_big_buffers()
    server = make_server(app, host, port)
    bound_host, bound_port = server.server_address[:2]

    def stop(signum: int, frame: Any) -> None:
        if not server.stopping.is_set():
            server.stopping.set()
            app.ready = False
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
    server.accept_backlog()
    server.socket.close()  # from here on, new connections are refused (never reset mid-request)
    if not server.drain(drain_timeout_s):
        print(
            f"dnatool serve: requests still open after {drain_timeout_s:g} s, stopping anyway",
            file=sys.stderr,
            flush=True,
        )
    app.runner.close()
    print("dnatool serve: stopped", file=sys.stderr, flush=True)


def _return_big_buffers() -> None:
    """glibc raises its mmap threshold to the size of the first big buffer freed, so later
    request bodies come from arenas it never gives back (8 concurrent 31 MB bodies left 355 MB
    held); a fixed threshold keeps every big buffer mmapped and returned when freed."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD (glibc); other libcs lack it: no-op
    except (OSError, AttributeError):
        pass

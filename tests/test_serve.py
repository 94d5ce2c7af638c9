"""`dnatool serve` driven by a real Open Inference Protocol client (tritonclient), plus abuse."""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import numpy as np
import pytest

from dnatool.serve.protocol import InferRequest, ProtocolError, encode_response, parse_request


def _export_tiny(folder) -> str:
    from dnatool.arch.space import load_space
    from dnatool.export.onnx import calibrate_untrained, to_onnx_bytes
    from dnatool.nn.model_run import load_model

    space = load_space("tiny")
    loaded = load_model(space.to_arch(space.sample(np.random.default_rng(2)), name="served"))
    calibrate_untrained(loaded)
    path = folder / "tinynet.onnx"
    path.write_bytes(to_onnx_bytes(loaded))
    return str(path)


def _start(*args: str, env: dict | None = None) -> tuple[subprocess.Popen, int, str]:
    """Start `dnatool serve ARGS --port 0`; (process, port, host) from its ready line, which
    prints the address of the bound socket."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dnatool", "serve", *args, "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "ready at http://" in line:
            host, port = line.split("ready at http://")[1].split("/")[0].rsplit(":", 1)
            return proc, int(port), host
    raise AssertionError(f"server did not start: {''.join(lines)}")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> str:
    return _export_tiny(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(tiny_onnx):
    """A served tiny model: (onnx path, port, process, bound host); no --host given."""
    onnx_path = tiny_onnx
    proc, port, host = _start(onnx_path, "--max-request-mb", "1", "--max-wait-ms", "20")
    yield onnx_path, port, proc, host
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def reference(server):
    import onnxruntime as ort

    session = ort.InferenceSession(server[0], providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x})[0]


def _client(port: int):
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(f"127.0.0.1:{port}", concurrency=16)


def _infer(client, x: np.ndarray, binary: bool = True, dtype: str = "FP32"):
    import tritonclient.http as httpclient

    tensor = httpclient.InferInput("input", list(x.shape), dtype)
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("logits", binary_data=binary)]
    return client.infer("tinynet", [tensor], outputs=outputs).as_numpy("logits")


def _post(
    port: int, body: bytes, path: str = "/v2/models/tinynet/infer", headers: dict | None = None
) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body, headers or {"Content-Type": "application/json"})
    response = conn.getresponse()
    status, data = response.status, json.loads(response.read())
    conn.close()
    return status, data


def test_binds_loopback_unless_told_otherwise(server):
    assert server[3] == "127.0.0.1"


def test_health_and_metadata(server):
    client = _client(server[1])
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("tinynet")
    meta = client.get_model_metadata("tinynet")
    assert meta["name"] == "tinynet" and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    config = client.get_model_config("tinynet")
    assert (
        json.loads(config["parameters"]["dnatool.preprocess"]["string_value"])["resolution"] == 32
    )
    assert not client.is_model_ready("other")


def test_infer_binary_and_json_match_onnxruntime(server, reference):
    client = _client(server[1])
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(_infer(client, x, binary=True), reference(x), rtol=0, atol=1e-5)
    np.testing.assert_allclose(_infer(client, x, binary=False), reference(x), rtol=0, atol=1e-5)


def test_concurrent_requests_are_batched_and_correct(server, reference):
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((1, 3, 32, 32), dtype=np.float32) for _ in range(24)]
    before = _stats(server[1])
    results: list = [None] * len(xs)

    def work(i: int) -> None:
        results[i] = _infer(_client(server[1]), xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for x, got in zip(xs, results, strict=True):
        np.testing.assert_allclose(got, reference(x), rtol=0, atol=1e-5)
    after = _stats(server[1])
    assert after["inference_count"] - before["inference_count"] == len(xs)
    assert after["execution_count"] - before["execution_count"] < len(
        xs
    )  # some requests shared a run


def _stats(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/v2/models/tinynet/stats")
    data = json.loads(conn.getresponse().read())["model_stats"][0]
    conn.close()
    return data


def _batch_counts(stats: dict) -> dict[int, int]:
    return {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}


def test_lone_request_waits_at_most_max_wait(server, reference):
    """--max-wait-ms 20, --max-batch 32: a lone request runs alone instead of waiting for more."""
    before = _stats(server[1])
    x = np.random.default_rng(5).standard_normal((1, 3, 32, 32), dtype=np.float32)
    start = time.monotonic()
    status, body = _post(server[1], json.dumps(_json_request(x)).encode())
    elapsed = time.monotonic() - start
    assert status == 200
    got = np.array(body["outputs"][0]["data"], np.float32).reshape(body["outputs"][0]["shape"])
    np.testing.assert_allclose(got, reference(x), rtol=0, atol=1e-5)
    assert elapsed < 2.0  # generous: 20 ms of waiting, not until 32 samples arrive
    after = _stats(server[1])
    ran = Counter(_batch_counts(after))
    ran.subtract(_batch_counts(before))
    assert +ran == {1: 1} and after["execution_count"] - before["execution_count"] == 1


def _json_request(x: np.ndarray) -> dict:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }


def test_too_many_samples_per_request_get_413(server, reference):
    x = np.zeros((65, 3, 32, 32), np.float32)  # 65 x 12 KB: under --max-request-mb 1
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ]
        }
    ).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(head)),
    }
    status, body = _post(server[1], head + x.tobytes(), headers=headers)
    assert status == 413 and "1..64 samples per request" in body["error"]
    y = np.random.default_rng(6).standard_normal((64, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(_infer(_client(server[1]), y), reference(y), rtol=0, atol=1e-5)
    assert server[2].poll() is None


def _raw_exchange(port: int, request: bytes) -> tuple[int, dict]:
    """Send raw request bytes, read one response (the server closes after these refusals)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


def test_chunked_or_unsized_bodies_get_411(server, reference):
    path = "POST /v2/models/tinynet/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    status, body = _raw_exchange(server[1], f"{path}Transfer-Encoding: chunked\r\n\r\n".encode())
    assert status == 411 and "chunked" in body["error"]
    status, body = _raw_exchange(server[1], f"{path}\r\n".encode())
    assert status == 411 and "Content-Length required" in body["error"]
    x = np.random.default_rng(7).standard_normal((1, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(_infer(_client(server[1]), x), reference(x), rtol=0, atol=1e-5)


def test_bad_requests_get_4xx_and_server_keeps_serving(server, reference):
    from tritonclient.utils import InferenceServerException

    port = server[1]
    client = _client(port)
    assert _post(port, b"{not json")[0] == 400
    assert _post(port, json.dumps({"inputs": []}).encode())[0] == 400
    ragged = {
        "inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [1.0]}]
    }
    assert _post(port, json.dumps(ragged).encode())[0] == 400
    status, body = _post(port, b"x" * (2 << 20))
    assert status == 413 and "exceeds" in body["error"]
    assert _post(port, b"{}", path="/v2/models/nope/infer")[0] == 404
    assert _post(port, b"{}", path="/v2/nowhere")[0] == 404
    with pytest.raises(InferenceServerException, match="shape"):
        _infer(client, np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(InferenceServerException, match="FP32"):
        _infer(client, np.zeros((1, 3, 32, 32), np.float64), dtype="FP64")
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(_infer(client, x), reference(x), rtol=0, atol=1e-5)
    assert server[2].poll() is None


def test_protocol_binary_roundtrip_and_errors():
    x = np.arange(6, dtype=np.float32).reshape(1, 6)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "a",
                    "shape": [1, 6],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 24},
                }
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    ).encode()
    request = parse_request(head + x.tobytes(), len(head))
    np.testing.assert_array_equal(request.inputs["a"], x)
    body, header_length = encode_response("m", request, {"y": x * 2})
    assert json.loads(body[:header_length])["outputs"][0]["parameters"]["binary_data_size"] == 24
    assert np.frombuffer(body[header_length:], np.float32).tolist() == (x * 2).ravel().tolist()
    with pytest.raises(ProtocolError) as err:
        parse_request(head + x.tobytes()[:20], len(head))
    assert err.value.status == 400
    with pytest.raises(ProtocolError):
        parse_request(head, 10**6)
    plain = InferRequest(None, {}, None, set(), False)
    assert (
        json.loads(encode_response("m", plain, {"y": x})[0])["outputs"][0]["data"]
        == x.ravel().tolist()
    )


def test_batcher_queue_bound_gives_503():
    from dnatool.serve.batching import Batcher

    gate = threading.Event()
    batcher = Batcher(lambda x: (gate.wait(), x * 2)[1], max_batch=1, max_wait_s=0.0, max_queue=1)
    threads = [threading.Thread(target=batcher.submit, args=(np.ones((1, 2)),)) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.2)  # first is running (blocked), second fills the queue
    with pytest.raises(ProtocolError) as err:
        batcher.submit(np.ones((1, 2)))
    assert err.value.status == 503
    gate.set()
    for thread in threads:
        thread.join()
    assert batcher.submit(np.ones((1, 2))).tolist() == [[2.0, 2.0]]
    batcher.close()


def test_serve_arch_on_the_fly_and_graceful_shutdown(tmp_path):
    from dnatool.arch.space import load_space

    space = load_space("tiny")
    arch = tmp_path / "fly.json"
    arch.write_text(space.to_arch(space.sample(np.random.default_rng(4))).to_json())
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc, port, _ = _start(str(arch), "--max-batch", "1", env={**os.environ, "TMPDIR": str(tmp)})
    assert "fly.onnx" in [p.name for p in tmp.glob("dnatool-serve-*/*")]
    client = _client(port)
    assert client.get_model_metadata("fly")["name"] == "fly"
    out = client.infer("fly", [_input(np.zeros((1, 3, 32, 32), np.float32))]).as_numpy("logits")
    assert out.shape == (1, 10)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert "stopped" in proc.stderr.read()
    assert not list(tmp.glob("dnatool-serve-*"))  # the on-the-fly export went with the server


def test_sigterm_finishes_requests_in_flight_and_exits_0(server, reference):
    """Requests held by a long batching wait when SIGTERM arrives are all answered."""
    proc, port, _ = _start(server[0], "--max-wait-ms", "3000", "--max-batch", "32")
    rng = np.random.default_rng(8)
    xs = [rng.standard_normal((1, 3, 32, 32), dtype=np.float32) for _ in range(4)]
    sent = [threading.Event() for _ in xs]
    answers: list = [None] * len(xs)

    def work(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/v2/models/tinynet/infer", json.dumps(_json_request(xs[i])))
        sent[i].set()
        response = conn.getresponse()
        answers[i] = (response.status, json.loads(response.read()), time.monotonic())
        conn.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for thread in threads:
        thread.start()
    assert all(event.wait(30) for event in sent)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # accepted after the four
    conn.request("GET", "/v2/health/live")
    assert conn.getresponse().status == 200
    conn.close()
    time.sleep(0.3)  # let the handler threads queue their requests in the batcher
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=60)
    assert proc.wait(timeout=30) == 0
    assert "stopped" in proc.stderr.read()
    for x, (status, body, answered) in zip(xs, answers, strict=True):
        assert status == 200 and answered > signalled  # pending when the signal came
        out = body["outputs"][0]
        got = np.array(out["data"], np.float32).reshape(out["shape"])
        np.testing.assert_allclose(got, reference(x), rtol=0, atol=1e-5)


def test_sigterm_under_load_answers_every_request_sent(server, reference):
    """Four clients sending back to back on keep-alive connections when SIGTERM arrives: each
    request sent is answered (the last with `Connection: close`), none is reset."""
    proc, port, _ = _start(server[0], "--max-wait-ms", "5")
    body = json.dumps(_json_request(np.ones((1, 3, 32, 32), np.float32))).encode()
    answered = [0] * 4
    failures: list[str] = []
    closed = [threading.Event() for _ in answered]

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for _ in range(100_000):  # bounded: the server's `Connection: close` ends the loop
                conn.request("POST", "/v2/models/tinynet/infer", body)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(f"client {i}: status {response.status}")
                answered[i] += 1
                if response.getheader("Connection", "").lower() == "close":
                    closed[i].set()
                    return
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"client {i} after {answered[i]} answers: {exc!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(answered))]
    for thread in threads:
        thread.start()
    for _ in range(3000):  # every client has been answered a few times: the load is on
        if min(answered) >= 3 or failures:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=60)
    assert proc.wait(timeout=30) == 0
    assert "stopped" in proc.stderr.read()
    assert not failures and all(event.is_set() for event in closed), failures


@pytest.fixture(scope="module")
def strict(tiny_onnx):
    """An in-process server with small limits: 1 MB bodies, 1.5 MB of them at once, 1 s for a
    whole request (the idle wait stays 30 s, so only the request deadline can cut a client)."""
    from dnatool.serve.server import Limits, ModelApp, make_server

    limits = Limits(max_body_bytes=1 << 20, max_inflight_bytes=3 << 19, request_timeout_s=1.0)
    app = ModelApp(tiny_onnx, "tinynet", max_batch=1, limits=limits)
    httpd = make_server(app, port=0)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _closed_by_server(sock: socket.socket, trickle: bytes) -> bool:
    """Send `trickle` a byte at a time (0.1 s apart); True once the server closes the socket."""
    for byte in trickle:
        readable, _, _ = select.select([sock], [], [], 0.1)
        try:
            if readable and not sock.recv(4096):
                return True
            sock.sendall(bytes([byte]))
        except OSError:
            return True
    return False


def test_a_client_trickling_headers_is_cut_off(strict):
    """One byte every 0.1 s never trips a per-read timeout; the request deadline ends it."""
    with socket.create_connection(("127.0.0.1", strict.server_port), timeout=10) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        assert _closed_by_server(sock, b"X-Slow: " + b"a" * 200)


def test_a_short_body_gets_408_and_the_server_keeps_serving(strict):
    with socket.create_connection(("127.0.0.1", strict.server_port), timeout=10) as sock:
        sock.sendall(
            b"POST /v2/models/tinynet/infer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 1000\r\n\r\n" + b"{" * 10
        )
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 408 and "within 1 s" in json.loads(response.read())["error"]
    assert (
        _post(strict.server_port, json.dumps(_json_request(np.zeros((1, 3, 32, 32)))).encode())[0]
        == 200
    )


def test_request_bodies_in_flight_are_bounded_across_connections(strict):
    """A second 1 MB body while one is held (budget 1.5 MB) is refused at once with 503 instead
    of being read into memory; the budget comes back when the first request ends."""
    head = (
        b"POST /v2/models/tinynet/infer HTTP/1.1\r\nHost: x\r\n"
        b"Inference-Header-Content-Length: 10\r\nContent-Length: %d\r\n\r\n" % (1 << 20)
    )
    for _ in range(500):  # an earlier request's share comes back just after its answer is sent
        if not strict.budget.used:
            break
        time.sleep(0.01)
    held = socket.create_connection(("127.0.0.1", strict.server_port), timeout=10)
    held.sendall(head + b"x" * 100)  # the rest never comes while the second one asks
    for _ in range(500):
        if strict.budget.used:
            break
        time.sleep(0.01)
    assert strict.budget.used == 1 << 20
    with socket.create_connection(("127.0.0.1", strict.server_port), timeout=10) as sock:
        sock.sendall(head + b"x" * (1 << 20))
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 503 and response.getheader("Retry-After") == "1"
        assert "server busy" in json.loads(response.read())["error"]
    held.close()
    for _ in range(500):
        if not strict.budget.used:
            break
        time.sleep(0.01)
    assert strict.budget.used == 0
    x = np.random.default_rng(9).standard_normal((1, 3, 32, 32), dtype=np.float32)
    status, _ = _post(strict.server_port, json.dumps(_json_request(x)).encode())
    assert status == 200


def _read_to_close(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_http_0_9_request_line_is_answered_without_a_traceback(strict, capfd):
    """An HTTP/0.9 request line (no version, no headers) gets a JSON error body, as 0.9 answers
    have no status line; followed by a blank line it logged a traceback."""
    for request in (b"GET /v2/health/live\r\n", b"GET /v2/health/live\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", strict.server_port), timeout=10) as sock:
            sock.sendall(request)
            data = _read_to_close(sock)
        if request.endswith(b"\n\r\n") and not data:
            continue  # the blank line was never read: the close may reset the answer
        assert "HTTP/0.9 is not supported" in json.loads(data)["error"]
    assert _post(strict.server_port, b"{oops")[0] == 400  # the server keeps serving
    assert "Traceback" not in capfd.readouterr().err


def _strict_json(data: bytes):
    """JSON as the standard defines it: `NaN` and `Infinity` are not JSON."""

    def refuse(token: str):
        raise ValueError(f"not JSON: {token}")

    return json.loads(data, parse_constant=refuse)


def test_nan_outputs_are_null_in_valid_json(strict):
    """A NaN input makes NaN logits; the JSON answer writes them as null (binary: bit for bit)."""
    x = np.full((1, 3, 32, 32), np.nan, np.float32)
    conn = http.client.HTTPConnection("127.0.0.1", strict.server_port, timeout=30)
    conn.request("POST", "/v2/models/tinynet/infer", json.dumps(_json_request(x)))
    response = conn.getresponse()
    status, body = response.status, response.read()
    conn.close()
    assert status == 200
    out = _strict_json(body)["outputs"][0]
    assert out["shape"] == [1, 10] and out["data"] == [None] * 10
    plain = InferRequest(None, {}, None, set(), False)
    y = np.array([[1.5, np.nan, np.inf, -np.inf]], np.float32)
    assert _strict_json(encode_response("m", plain, {"y": y})[0])["outputs"][0]["data"] == [
        1.5,
        None,
        None,
        None,
    ]


def test_corrupt_onnx_is_one_line_exit_2(cli, tiny_onnx, tmp_path):
    """A cut .onnx ended `serve` in onnxruntime's InvalidProtobuf traceback."""
    data = open(tiny_onnx, "rb").read()
    for name, content in (("cut", data[: len(data) // 2]), ("empty", b"")):
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(content)
        result = cli("serve", str(path), "--port", "0")
        assert result.code == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"Error: {path} is not a loadable ONNX model: ")
        assert "ONNXRuntimeError" not in lines[0]


def _input(x: np.ndarray):
    import tritonclient.http as httpclient

    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor


@pytest.mark.slow
def test_bench_serve_json(cli):
    result = cli("bench", "serve", "--json", "--clients", "4", "--seconds", "1", "--rounds", "1")
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert {
        "clients",
        "batched_rps",
        "unbatched_rps",
        "ratio",
        "p50_ms",
        "p99_ms",
        "errors",
    } <= set(data)
    assert data["clients"] == 4 and data["errors"] == 0
    assert data["batched_rps"] > 0 and data["unbatched_rps"] > 0
    assert data["ratio"] == pytest.approx(data["batched_rps"] / data["unbatched_rps"], rel=1e-2)
    assert 0 < data["p50_ms"] <= data["p99_ms"]

"""Open Inference Protocol (KServe v2) tensors: JSON and the binary tensor data extension.

A request body is JSON, or (binary extension) a JSON header of `Inference-Header-Content-Length`
bytes followed by the raw little-endian tensors in input order, each announced by
`parameters.binary_data_size`. Responses mirror that: outputs asked for with
`parameters.binary_data` (or the request-level `binary_data_output`) travel as raw bytes; in a
JSON output, a non-finite value (NaN, +-Infinity, which JSON cannot write) is `null`.
Every malformed request becomes a `ProtocolError` with the HTTP status to answer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

DTYPES = {
    "FP32": np.float32,
    "FP16": np.float16,
    "FP64": np.float64,
    "INT64": np.int64,
    "INT32": np.int32,
    "INT16": np.int16,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


class ProtocolError(Exception):
    """A request the server refuses; `status` is the HTTP code (4xx, or 503 when busy)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str] | None  # None: every output
    binary_outputs: set[str]
    binary_all: bool


def _json(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(400, f"malformed JSON: {exc}") from None


def parse_request(body: bytes, header_length: int | None) -> InferRequest:
    """Decode a request body into named numpy arrays (shape and size checked)."""
    if header_length is not None and not 0 < header_length <= len(body):
        raise ProtocolError(
            400,
            f"Inference-Header-Content-Length {header_length} is outside the "
            f"body ({len(body)} bytes)",
        )
    split = len(body) if header_length is None else header_length
    header, binary = _json(body[:split]), memoryview(body)[split:]
    if (
        not isinstance(header, dict)
        or not isinstance(header.get("inputs"), list)
        or not header["inputs"]
    ):
        raise ProtocolError(400, "request must be a JSON object with a non-empty 'inputs' list")
    inputs, offset = {}, 0
    for item in header["inputs"]:
        name, array, offset = _tensor(item, binary, offset)
        inputs[name] = array
    if offset != len(binary):
        raise ProtocolError(400, f"{len(binary) - offset} bytes of binary data left unread")
    params = header.get("parameters") or {}
    outputs, binary_outputs = _requested_outputs(header.get("outputs"))
    request_id = header.get("id")
    return InferRequest(
        str(request_id) if request_id is not None else None,
        inputs,
        outputs,
        binary_outputs,
        bool(isinstance(params, dict) and params.get("binary_data_output")),
    )


def _tensor(item: Any, binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ProtocolError(400, "each input needs a 'name'")
    name, shape, datatype = item["name"], item.get("shape"), item.get("datatype")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise ProtocolError(400, f"input {name!r}: 'shape' must be a list of non-negative integers")
    if datatype not in DTYPES:
        raise ProtocolError(
            400,
            f"input {name!r}: unsupported datatype {datatype!r} (supported: {', '.join(DTYPES)})",
        )
    dtype, count = np.dtype(DTYPES[datatype]).newbyteorder("<"), math.prod(shape)
    size = (item.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if (
            not isinstance(size, int)
            or size != count * dtype.itemsize
            or offset + size > len(binary)
        ):
            raise ProtocolError(
                400,
                f"input {name!r}: binary_data_size {size!r} does not match "
                f"shape {shape} of {datatype} or the data sent",
            )
        array = np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(shape)
        return name, array, offset + size
    return name, _from_json_data(name, item.get("data"), shape, datatype), offset


def _from_json_data(name: str, data: Any, shape: list[int], datatype: str) -> np.ndarray:
    if data is None:
        raise ProtocolError(400, f"input {name!r} has neither 'data' nor binary_data_size")
    try:
        array = np.asarray(data, dtype=DTYPES[datatype])
    except (TypeError, ValueError, OverflowError):
        raise ProtocolError(
            400, f"input {name!r}: 'data' is not a list of {datatype} numbers"
        ) from None
    if array.size != math.prod(shape):
        raise ProtocolError(400, f"input {name!r}: {array.size} values do not fill shape {shape}")
    return array.reshape(shape)


def _requested_outputs(outputs: Any) -> tuple[list[str] | None, set[str]]:
    if outputs is None:
        return None, set()
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise ProtocolError(400, "'outputs' must be a list of objects with a 'name'")
    binary = {o["name"] for o in outputs if (o.get("parameters") or {}).get("binary_data")}
    return [o["name"] for o in outputs], binary


def encode_response(
    model: str, request: InferRequest, outputs: dict[str, np.ndarray]
) -> tuple[bytes, int | None]:
    """Response body and, when any output is binary, the JSON header's length."""
    entries, chunks = [], []
    for name, array in outputs.items():
        array = np.ascontiguousarray(array)
        entry: dict[str, Any] = {
            "name": name,
            "datatype": NAMES[array.dtype],
            "shape": list(array.shape),
        }
        if request.binary_all or name in request.binary_outputs:
            raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_values(array)
        entries.append(entry)
    head: dict[str, Any] = {"model_name": model, "model_version": "1", "outputs": entries}
    if request.id is not None:
        head["id"] = request.id
    header = json.dumps(head, allow_nan=False).encode("utf-8")
    return (header + b"".join(chunks), len(header)) if chunks else (header, None)


def _json_values(array: np.ndarray) -> list[Any]:
    """An output's values for a JSON body. JSON has no NaN or Infinity (Python's `NaN` token is
    not JSON): non-finite values become `null`, the rest of the output is intact; binary outputs
    carry them bit for bit."""
    flat = array.reshape(-1)
    if flat.dtype.kind != "f" or np.isfinite(flat).all():
        return flat.tolist()
    values = flat.astype(object)
    values[~np.isfinite(flat)] = None
    return values.tolist()

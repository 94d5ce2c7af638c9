"""Triton Inference Server model repositories: `DIR/<name>/1/model.onnx` + `config.pbtxt`.

The config follows Triton's `model_config.proto`: platform, `max_batch_size` (dims are then given
without the batch axis), input / output names, types and dims, and `dynamic_batching`. A TensorRT
plan, where one was built, goes in a sibling model `<name>_trt` (platform `tensorrt_plan`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from dnatool.errors import BadInput
from dnatool.utils import io

ONNX_TYPES = {
    1: "TYPE_FP32",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    7: "TYPE_INT64",
    6: "TYPE_INT32",
    3: "TYPE_INT8",
    2: "TYPE_UINT8",
    9: "TYPE_BOOL",
}
PLATFORMS = {".onnx": ("onnxruntime_onnx", "model.onnx"), ".plan": ("tensorrt_plan", "model.plan")}


def onnx_io(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Inputs and outputs of an ONNX file as {name, data_type, dims (batch axis dropped)}."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}

    def describe(value: Any) -> dict[str, Any]:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim][1:]
        return {
            "name": value.name,
            "data_type": ONNX_TYPES.get(tensor.elem_type, "TYPE_FP32"),
            "dims": dims,
        }

    inputs = [describe(v) for v in graph.input if v.name not in initializers]
    return inputs, [describe(v) for v in graph.output]


def config_text(
    name: str,
    platform: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    max_batch_size: int = 32,
    max_queue_delay_us: int = 2000,
) -> str:
    """`config.pbtxt` in protobuf text format."""

    def tensors(kind: str, items: list[dict[str, Any]]) -> str:
        body = ",\n".join(
            f'  {{\n    name: "{t["name"]}"\n    data_type: {t["data_type"]}\n'
            f"    dims: [ {', '.join(str(d) for d in t['dims'])} ]\n  }}"
            for t in items
        )
        return f"{kind} [\n{body}\n]\n"

    preferred = sorted({b for b in (4, 8, 16, max_batch_size) if b <= max_batch_size})
    return (
        f'name: "{name}"\nplatform: "{platform}"\nmax_batch_size: {max_batch_size}\n'
        + tensors("input", inputs)
        + tensors("output", outputs)
        + "dynamic_batching {\n"
        + f"  preferred_batch_size: [ {', '.join(str(b) for b in preferred)} ]\n"
        + f"  max_queue_delay_microseconds: {max_queue_delay_us}\n}}\n"
        + "instance_group [\n  {\n    count: 1\n    kind: KIND_AUTO\n  }\n]\n"
    )


def write_model(
    repo: str | Path,
    name: str,
    model_file: str | Path,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    max_batch_size: int = 32,
) -> Path:
    """One model of the repository: version 1 holds the file, config.pbtxt sits beside it."""
    model_file = Path(model_file)
    if model_file.suffix not in PLATFORMS:
        raise BadInput(f"Triton: no platform for {model_file.name} (known: .onnx, .plan)")
    platform, target_name = PLATFORMS[model_file.suffix]
    model_dir = Path(repo) / name
    target = model_dir / "1" / target_name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target_name}.tmp")
    shutil.copyfile(model_file, tmp)
    tmp.replace(target)
    io.write_text(
        model_dir / "config.pbtxt", config_text(name, platform, inputs, outputs, max_batch_size)
    )
    return model_dir


def write_repository(
    repo: str | Path,
    onnx_path: str | Path,
    name: str | None = None,
    plan_path: str | Path | None = None,
    max_batch_size: int = 32,
) -> dict[str, Any]:
    """The ONNX model (and the TensorRT plan, if given) as a Triton model repository."""
    name = name or Path(onnx_path).stem
    inputs, outputs = onnx_io(onnx_path)
    models = {name: str(write_model(repo, name, onnx_path, inputs, outputs, max_batch_size))}
    if plan_path is not None:
        trt_name = f"{name}_trt"
        models[trt_name] = str(
            write_model(repo, trt_name, plan_path, inputs, outputs, max_batch_size)
        )
    return {"repository": str(repo), "models": models}


def load_model_config_proto() -> Any:
    """Triton's ModelConfig message class, from tritonclient's bundled `model_config_pb2`.

    tritonclient ships the generated module under `tritonclient/grpc/` whose package import needs
    grpcio; the module itself needs only protobuf, so it is loaded by file path.
    """
    import importlib.util

    import tritonclient

    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("dnatool_triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ModelConfig

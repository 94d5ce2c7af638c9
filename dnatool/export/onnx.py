"""ONNX export with proof: the file is written only if onnxruntime computes what torch computes.

Pipeline: `runtime.onnx.to_onnx` (TorchScript exporter, opset 17, dynamic batch axis, onnxslim:
the conversion latency tables are measured on) -> preprocessing and arch into `metadata_props` ->
`onnx.checker` (full) and strict shape inference -> parity against torch on random and real
images with onnxruntime (`runtime.ort.session`) -> latency of onnxruntime against torch eager on
the same batch-1 input (`runtime.timing`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dnatool import __version__
from dnatool.errors import RunFailure
from dnatool.export.inputs import random_inputs, real_inputs
from dnatool.runtime.onnx import INPUT_NAME, OPSET, OUTPUT_NAME
from dnatool.utils import io
from dnatool.utils.events import quiet

if TYPE_CHECKING:
    from dnatool.nn.model_run import LoadedModel

__all__ = ["INPUT_NAME", "OPSET", "OUTPUT_NAME", "export_onnx", "to_onnx_bytes"]
DEFAULT_TOLERANCE = 1e-4
REPORT_FILE = "export.json"


def calibrate_untrained(loaded: LoadedModel, batches: int = 4) -> bool:
    """Give a random-init network BatchNorm statistics from real and random images; True if it did.

    timm's initialisation with BatchNorm's default running stats (mean 0, var 1) shrinks
    activations layer by layer: a random EfficientNet's logits are ~1e-5, under any sensible
    parity tolerance, so a 1e-4 check would prove nothing. Recomputing the running statistics
    (cumulative average over a few forward passes) restores unit-scale activations and logits
    of order one, as in a trained network. Trained models are never touched.
    """
    import torch

    if loaded.trained:
        return False
    norms = [
        m for m in loaded.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    real, _ = real_inputs(loaded.preprocess, loaded.arch.in_chans, count=8 * batches)
    noise = random_inputs(loaded.arch.in_chans, loaded.arch.resolution, batch=len(real), seed=2)
    images = np.concatenate([real, noise])[np.random.default_rng(3).permutation(2 * len(real))]
    loaded.model.train()
    with torch.no_grad():
        for chunk in np.array_split(images, 2 * batches):
            loaded.model(torch.from_numpy(chunk))
    loaded.model.eval()
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    return bool(norms)


def to_onnx_bytes(loaded: LoadedModel) -> bytes:
    """Exported, simplified, annotated and checked ONNX model bytes."""
    return export_graph(loaded)[0]


def export_graph(loaded: LoadedModel) -> tuple[bytes, dict[str, int]]:
    """ONNX bytes as `to_onnx_bytes`, and the node counts before and after onnxslim."""
    import onnx

    from dnatool.runtime.onnx import to_onnx

    shape = (1, loaded.arch.in_chans, loaded.arch.resolution, loaded.arch.resolution)
    proto, exported = to_onnx(loaded.model, shape)
    nodes = {"onnx_nodes_exported": exported}
    _annotate(proto, loaded)
    onnx.checker.check_model(proto, full_check=True)
    onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    nodes["onnx_nodes"] = len(proto.graph.node)
    return proto.SerializeToString(), nodes


def _annotate(proto: Any, loaded: LoadedModel) -> None:
    """Preprocessing and arch as metadata_props: what a deployer needs to feed the model."""
    pre = loaded.preprocess
    props = {
        "dnatool.version": __version__,
        "dnatool.arch": json.dumps(loaded.arch.to_dict()),
        "dnatool.preprocess": json.dumps(pre),
        "dnatool.trained": "true" if loaded.trained else "false",
        "dnatool.source": loaded.source,
        "mean": json.dumps(list(pre.get("mean", []))),
        "std": json.dumps(list(pre.get("std", []))),
        "resolution": str(pre.get("resolution", loaded.arch.resolution)),
        "crop_pct": str(pre.get("crop_pct", "")),
        "interpolation": str(pre.get("interpolation", "")),
        "input_layout": "NCHW float32, normalised: (pixel/255 - mean) / std",
    }
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.producer_version = "dnatool", __version__
    proto.doc_string = (
        f"{loaded.arch.name}: {'trained' if loaded.trained else 'RANDOM INIT (untrained)'}"
    )


def read_metadata(path: str | Path) -> dict[str, str]:
    """metadata_props of an ONNX file as a dict."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {entry.key: entry.value for entry in proto.metadata_props}


def _torch_run(loaded: LoadedModel, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return loaded.model.eval()(torch.from_numpy(batch)).numpy()


def parity(loaded: LoadedModel, session: Any) -> dict[str, Any]:
    """Max abs difference torch vs onnxruntime on random and real batches."""
    random_batch = random_inputs(loaded.arch.in_chans, loaded.arch.resolution, batch=4, seed=1)
    real_batch, real_source = real_inputs(loaded.preprocess, loaded.arch.in_chans)
    diffs, scale = {}, 0.0
    for kind, batch in (("random", random_batch), ("real", real_batch)):
        expected = _torch_run(loaded, batch)
        scale = max(scale, float(np.max(np.abs(expected))))
        got = session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
        if got.shape != expected.shape:
            raise RunFailure(f"onnxruntime output shape {got.shape} != torch {expected.shape}")
        diffs[kind] = float(np.max(np.abs(got - expected)))
    return {
        "max_abs_diff": max(diffs.values()),
        "max_abs_diff_random": diffs["random"],
        "max_abs_diff_real": diffs["real"],
        "output_abs_max": scale,
        "real_inputs": real_source,
        "parity_batches": {"random": len(random_batch), "real": len(real_batch)},
    }


def latency(loaded: LoadedModel, session: Any, threads: int) -> dict[str, Any]:
    """onnxruntime vs torch eager, same batch-1 real input, timed by `runtime.timing`."""
    import torch

    from dnatool.runtime.eager import TorchCpuRunner
    from dnatool.runtime.ort import OrtRunner, session_options
    from dnatool.runtime.timing import TimingProtocol, time_runner

    sample = real_inputs(loaded.preprocess, loaded.arch.in_chans, count=1)[0]
    protocol = TimingProtocol()
    ort_ms = time_runner(OrtRunner(session, feed=sample), protocol).median
    torch_ms = time_runner(
        TorchCpuRunner(loaded.model, x=torch.from_numpy(sample)), protocol
    ).median
    return {
        "ort_latency_ms": round(ort_ms, 4),
        "torch_latency_ms": round(torch_ms, 4),
        "latency_batch": 1,
        "ort_session": session_options(threads),
        "torch_threads": torch.get_num_threads(),
        "latency_protocol": "median of timed runs after 10 warm-up runs, until the median moves "
        "by at most 1% and 0.2 s were timed (dnatool.runtime.timing), batch 1, wall clock",
    }


def export_onnx(
    loaded: LoadedModel,
    path: str | Path,
    tolerance: float = DEFAULT_TOLERANCE,
    report: Any = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Export, check parity (refusing above `tolerance`), time, and write `export.json`.

    On a parity failure the report is still written (`"passed": false`) but the ONNX file is not,
    so no file that computes something else is ever left where the model should be.
    """
    import onnxruntime as ort

    from dnatool.runtime.ort import session as ort_session

    say = report or quiet
    path = Path(path)
    calibrated = calibrate_untrained(loaded)
    say("log", message=f"export: tracing {loaded.arch.name} to ONNX (opset {OPSET})")
    data, nodes = export_graph(loaded)
    session = ort_session(data, threads=threads)
    say("log", message="export: parity torch vs onnxruntime")
    result: dict[str, Any] = {"onnx": str(path), **parity(loaded, session), "tolerance": tolerance}
    result["passed"] = result["max_abs_diff"] <= tolerance
    result["max_rel_diff"] = result["max_abs_diff"] / max(result["output_abs_max"], 1e-12)
    result.update(
        trained=loaded.trained,
        bn_calibrated=calibrated,
        source=loaded.source,
        arch=loaded.arch.name,
        resolution=loaded.arch.resolution,
        opset=OPSET,
        input=INPUT_NAME,
        output=OUTPUT_NAME,
        onnxruntime=ort.__version__,
        providers=session.get_providers(),
        onnx_bytes=len(data),
        **nodes,
    )
    report_path = path.parent / REPORT_FILE
    if not result["passed"]:
        io.write_json(report_path, result)
        raise RunFailure(
            f"ONNX parity failed: max abs diff {result['max_abs_diff']:.3g} > tolerance "
            f"{tolerance:g} (report: {report_path}; {path} was not written)"
        )
    say("log", message="export: latency onnxruntime vs torch eager")
    result.update(latency(loaded, session, threads))
    io.write_bytes(path, data)
    result["sha256"] = io.file_sha256(path)
    io.write_json(report_path, result)
    result["report"] = str(report_path)
    return result

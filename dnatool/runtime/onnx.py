"""THE conversion of a torch module to ONNX, as `dnatool export` ships it and `profile` times it.

TorchScript exporter (`dynamo=False`: no onnxscript, weights inside the file), opset 17, input
`input`, output `logits`, a dynamic batch axis, constant folding, then onnxslim. fp16 is a
half-precision network between fp32 casts (fp32 in and out, fp16 inside: what a strongly typed
TensorRT build of a deployed fp16 model consumes). A latency table measured on graphs converted
here predicts graphs exported here: the same nodes for the same layers.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
PRECISIONS = ("fp32", "fp16")


def conversion() -> str:
    """One line naming the conversion; latency tables record it in their device fingerprint."""
    return f"torchscript opset {OPSET}, dynamic batch, onnxslim"


def _half(module: Any) -> Any:
    """`module` as fp16 inside, fp32 at its input and output (a copy: the module is unchanged)."""
    import copy

    import torch

    class Half(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = copy.deepcopy(inner).half().eval()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.half()).float()

    return Half(module)


def to_onnx(module: Any, input_shape: tuple[int, ...], precision: str = "fp32") -> tuple[Any, int]:
    """(slimmed ONNX ModelProto, node count as exported before onnxslim) of `module` in eval mode.

    Traced on the CPU at `input_shape` (batch axis dynamic). The module itself is not changed.
    """
    import onnx
    import onnxslim
    import torch

    if precision not in PRECISIONS:
        from dnatool.errors import BadInput

        raise BadInput(f"ONNX precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    module = module.eval()
    if precision == "fp16":
        module = _half(module)
    dummy = torch.randn(*input_shape, generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # dynamo=False is deliberate
        torch.onnx.export(
            module,
            (dummy,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    exported = onnx.load_from_string(buffer.getvalue())
    return onnxslim.slim(exported), len(exported.graph.node)


def to_onnx_bytes(module: Any, input_shape: tuple[int, ...], precision: str = "fp32") -> bytes:
    """`to_onnx`, serialized (what a runtime loads)."""
    return to_onnx(module, input_shape, precision)[0].SerializeToString()

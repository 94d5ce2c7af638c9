"""The one runtime layer under `profile` and `export`: what is measured is what ships.

- `onnx.to_onnx`: the only `torch.onnx.export` call site (the shipping exporter settings);
- `ort`: the only onnxruntime session builder and its runner;
- `timing`: the only timing loop (`time_runner`) and the A B A B protocol against a reference;
- `tensorrt`: one engine builder (one timing cache) and one runner; `executorch`: one lowering
  to an XNNPACK-delegated program and one runner; `eager`: torch eager / CUDA-graph runners.

Nothing here imports onnx, onnxruntime, tensorrt or executorch at import time.
"""

from __future__ import annotations

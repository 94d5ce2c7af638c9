"""Backend registry with lazy imports: naming a backend imports its runtime, nothing else does.

`availability()` (used by `dnatool doctor`) answers "ok" or the one-line reason per backend.
"""

from __future__ import annotations

import importlib
from typing import Any

from dnatool.errors import BadInput, RunFailure
from dnatool.profile.backends.base import Backend, BackendOptions

BACKENDS = {
    "ort-cpu": "dnatool.profile.backends.ort:OrtCpuBackend",
    "torch-cpu": "dnatool.profile.backends.torch_backend:TorchCpuBackend",
    "torch-cuda": "dnatool.profile.backends.torch_backend:TorchCudaBackend",
    "trt": "dnatool.profile.backends.trt:TensorRTBackend",
    "xnnpack": "dnatool.profile.backends.executorch:XnnpackBackend",
}

__all__ = ["BACKENDS", "Backend", "BackendOptions", "availability", "backend_class", "get_backend"]


def backend_class(name: str) -> Any:
    """The backend class for `name`; an unknown name is bad input."""
    if name not in BACKENDS:
        raise BadInput(f"unknown device {name!r} (known: {', '.join(BACKENDS)})")
    module, attr = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def get_backend(name: str, options: BackendOptions | None = None) -> Backend:
    """A ready backend, or RunFailure with one line naming what is missing."""
    cls = backend_class(name)
    reason = cls.missing()
    if reason:
        raise RunFailure(f"backend {name} is not available here: {reason}")
    return cls(options or BackendOptions())


def availability() -> dict[str, str]:
    """name -> "ok" or the one-line reason it cannot run on this machine."""
    result = {}
    for name in BACKENDS:
        try:
            result[name] = backend_class(name).missing() or "ok"
        except Exception as exc:  # a broken runtime install must not break doctor
            result[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return result

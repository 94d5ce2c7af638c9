"""`dnatool doctor`: what is installed and which latency backends work on this machine."""

from __future__ import annotations

import importlib.metadata
import platform

import click

from dnatool.cli._options import json_option

PACKAGES = (
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "scipy",
    "onnx",
    "onnxruntime",
    "onnxslim",
    "tensorrt",
    "executorch",
    "mmengine",
    "mmcv",
    "mmcv-lite",
    "mmsegmentation",
    "mmdet",
    "tritonclient",
)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect() -> dict:
    """Versions and device facts; imports torch (cheap enough for a diagnostic)."""
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": __import__("os").cpu_count(),
        "packages": {name: _version(name) for name in PACKAGES},
        "cuda": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }


@click.command()
@json_option
def doctor(as_json: bool) -> None:
    """Versions of torch/timm/onnxruntime/... and which backends work here."""
    from dnatool.cli._console import emit_json, out

    report = collect()
    try:
        from dnatool.profile.backends import availability

        report["backends"] = availability()
    except ImportError:
        report["backends"] = {}
    if as_json:
        emit_json(report)
        return
    out.print(f"python {report['python']} on {report['platform']} ({report['cpu_count']} CPUs)")
    for name, version in report["packages"].items():
        out.print(f"  {name:<16} {version or '-'}")
    out.print(f"CUDA: {', '.join(report['cuda_devices']) or 'not available'}")
    for name, status in report["backends"].items():
        out.print(f"  backend {name:<12} {status}")

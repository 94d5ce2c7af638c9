"""dnatool: block-wise supervised NAS (the DNA family) as a deployment toolchain.

Importing the package is cheap: torch, timm and the runtimes are imported by the modules that
need them, never here.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

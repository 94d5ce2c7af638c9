"""Latency lookup tables: backends, in-context measurement, calibration and validation (issue 4).

Nothing here imports a runtime at import time; `dnatool.profile.backends.get_backend` does, when a
backend is used.
"""

from __future__ import annotations

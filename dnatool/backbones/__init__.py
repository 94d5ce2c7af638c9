"""Searched networks as downstream backbones (timm registration, OpenMMLab `dnatool.DNABackbone`).

Importing this package imports neither timm's registry nor mmengine: `timm_models` and
`openmmlab` are imported by the user (or by `custom_imports` in an OpenMMLab config).
"""

from __future__ import annotations

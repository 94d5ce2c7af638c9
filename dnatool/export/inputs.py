"""Real and random inputs for parity checks, calibration and latency.

Real images come from scikit-learn's bundled digits (no download). When the model's input fits the
dnatool `digits` split (3 channels, at most 64 px) the validation images of `load_splits` are used
exactly as training saw them; otherwise (paper-sized 224 px models, other channel counts) the same
real digits are resized to the model's resolution and normalised with the model's own mean / std.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DIGITS_MAX_RESOLUTION = 64


def random_inputs(in_chans: int, resolution: int, batch: int = 4, seed: int = 0) -> np.ndarray:
    """Standard-normal NCHW float32 (what normalised images look like), seeded."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, in_chans, resolution, resolution), dtype=np.float32)


def real_inputs(
    preprocess: dict[str, Any], in_chans: int, count: int = 8
) -> tuple[np.ndarray, str]:
    """`count` real images as the model expects them, and a line saying where they came from."""
    resolution = int(preprocess["resolution"])
    if in_chans == 3 and resolution <= DIGITS_MAX_RESOLUTION:
        from dnatool.data import load_splits

        val = load_splits("digits", resolution, augment=False).val
        images = np.stack([val[i][0].numpy() for i in range(min(count, len(val)))])
        return images.astype(np.float32), f"digits val split via load_splits at {resolution}px"
    return _resized_digits(preprocess, in_chans, resolution, count), (
        f"sklearn digits resized to {resolution}px, normalised with the model's mean/std"
    )


def _resized_digits(
    preprocess: dict[str, Any], in_chans: int, resolution: int, count: int
) -> np.ndarray:
    import torch
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().images[:count], dtype=torch.float32).unsqueeze(1) / 16.0
    images = torch.nn.functional.interpolate(
        images, size=(resolution, resolution), mode="bilinear", align_corners=False
    ).repeat(1, in_chans, 1, 1)
    mean = _per_channel(preprocess.get("mean", 0.5), in_chans)
    std = _per_channel(preprocess.get("std", 0.25), in_chans)
    return ((images.numpy() - mean) / std).astype(np.float32)


def _per_channel(value: Any, channels: int) -> np.ndarray:
    values = np.asarray(value, dtype=np.float32).reshape(-1)
    if values.size != channels:
        values = np.full(channels, float(values.mean()), dtype=np.float32)
    return values.reshape(1, channels, 1, 1)

"""An ImageFolder whose training augmentation is a pure function of (seed, epoch, index).

Its own module so that importing `dnatool.data` does not import torchvision's datasets."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torchvision.datasets import ImageFolder

from dnatool.data.datasets import sample_seed


class SeededImageFolder(ImageFolder):
    """An ImageFolder whose random transform is a pure function of (seed, epoch, index), as the
    digits' shifts are. timm's transforms draw from Python's `random` (crop box, interpolation,
    RandAugment), which no seed sets, and from torch's generator, which dropout shares: without
    this, two runs of one seed train on different crops and a resumed run on crops an
    uninterrupted one never saw. Each sample draws from generators seeded by its key, and the
    process's are left as they were. Loaders call `set_epoch`."""

    def __init__(self, root: str, seed: int, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> Any:
        key = sample_seed(self.seed, self.epoch, index)
        python_state, numpy_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(key)
            np.random.seed(key % 2**32)
            torch.manual_seed(key)
            try:
                return super().__getitem__(index)
            finally:
                random.setstate(python_state)
                np.random.set_state(numpy_state)

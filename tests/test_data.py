"""Data splits: the rating split comes out of train (per class), never out of val."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dnatool.data import load_splits
from dnatool.errors import BadInput


def _image_folder(root, classes=("cat", "dog"), per_class=6, val=2):
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", val)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_image_folder_splits_hold_out_rating_images_per_class(tmp_path):
    splits = load_splits(str(_image_folder(tmp_path)), resolution=16, rate_per_class=2)
    assert (len(splits.train), len(splits.rate), len(splits.val)) == (8, 4, 4)
    assert splits.num_classes == 2
    rate_targets = [splits.rate[i][1] for i in range(len(splits.rate))]
    assert sorted(rate_targets) == [0, 0, 1, 1]
    image, _ = splits.train[0]
    assert tuple(image.shape) == (3, 16, 16)
    rate_files = {splits.rate.dataset.samples[i][0] for i in splits.rate.indices}
    train_files = {splits.train.dataset.samples[i][0] for i in splits.train.indices}
    assert not rate_files & train_files


def test_digits_splits_are_disjoint_and_balanced():
    splits = load_splits("digits", resolution=32, rate_per_class=5)
    assert (len(splits.rate), len(splits.val)) == (50, 360)
    assert len(splits.train) == 1797 - 50 - 360
    labels = [int(splits.rate[i][1]) for i in range(len(splits.rate))]
    assert np.bincount(labels).tolist() == [5] * 10


def test_unknown_data_source(tmp_path):
    with pytest.raises(BadInput, match="train/ and val/"):
        load_splits(str(tmp_path), resolution=32)

"""Data splits: the rating split comes out of train (per class), never out of val."""

from __future__ import annotations

import numpy as np
import pytest
import torch
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
    plain = load_splits("digits", resolution=32, rate_per_class=5, augment=False)
    train, rate, val = (set(s.indices) for s in (plain.train, plain.rate, plain.val))
    assert not train & rate and not train & val and not rate & val
    assert len(train | rate | val) == 1797
    assert plain.rate.indices == splits.rate.indices and plain.val.indices == splits.val.indices
    assert torch.equal(plain.train[0][0], splits.train.base[0][0])


def _constant_folder(root, value: int):
    for split in ("train", "val"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for i in range(3):
                pixels = np.full((20, 24, 3), value, dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_image_folder_is_normalised_as_the_teacher_was_trained(tmp_path):
    root = _constant_folder(tmp_path, 204)
    lite0 = {"mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic", "crop_pct": 1.0}
    splits = load_splits(str(root), resolution=16, rate_per_class=1, preprocess=lite0)
    assert splits.preprocess == {**lite0, "resolution": 16}
    image, _ = splits.rate[0]
    assert torch.allclose(image, torch.full((3, 16, 16), (204 / 255 - 0.5) / 0.5), atol=1e-5)
    resize = splits.rate.dataset.transform.transforms[0]
    assert resize.interpolation.value == "bicubic"
    default = load_splits(str(root), resolution=16, rate_per_class=1)
    assert default.preprocess["mean"] == [0.485, 0.456, 0.406]
    assert default.preprocess["crop_pct"] == 0.875
    image, _ = default.rate[0]
    assert torch.allclose(image[0], torch.full((16, 16), (204 / 255 - 0.485) / 0.229), atol=1e-5)


def test_unknown_data_source(tmp_path):
    with pytest.raises(BadInput, match="train/ and val/"):
        load_splits(str(tmp_path), resolution=32)


def test_digit_shifts_depend_on_epoch_and_index_not_on_reading_order():
    """Two readers of one sample (DataLoader workers, a resumed run) see the same shift; the next
    epoch shifts it anew."""
    import copy

    import torch

    splits = load_splits("digits", resolution=32, rate_per_class=5, augment=True)
    train = splits.train
    other = copy.deepcopy(train)  # what a DataLoader worker holds
    for i in (3, 1, 2):
        train[i]
    assert torch.equal(train[7][0], other[7][0])
    shifted = [train[i][0] for i in range(40)]
    train.set_epoch(1)
    assert any(not torch.equal(a, train[i][0]) for i, a in enumerate(shifted))
    train.set_epoch(0)
    assert all(torch.equal(a, train[i][0]) for i, a in enumerate(shifted))


def test_small_image_folders_decode_each_image_once_and_read_the_same(tmp_path, monkeypatch):
    """A small folder's decoded images are kept (decoding is most of a 32 px image's CPU cost):
    every file is decoded once however often it is read, and the samples are those of a plain
    decode; past the size limit every read decodes again."""
    import torchvision.datasets.folder as folder

    from dnatool.data.datasets import DecodedImages

    _image_folder(tmp_path)
    plain = load_splits(str(tmp_path), 16, rate_per_class=1, augment=False)
    plain.val.loader.enabled = False
    expected = [plain.val[index][0] for index in range(len(plain.val))]
    decodes = []
    original = folder.default_loader
    monkeypatch.setattr(folder, "default_loader", lambda p: decodes.append(p) or original(p))
    splits = load_splits(str(tmp_path), 16, rate_per_class=1, augment=False)
    assert isinstance(splits.val.loader, DecodedImages) and splits.val.loader.enabled
    decodes.clear()
    for _ in range(3):
        for index in range(len(splits.val)):
            assert torch.equal(splits.val[index][0], expected[index])
    assert len(decodes) == len(set(decodes)) == len(splits.val)

    tight = DecodedImages(max_bytes=16 * 16 * 3)
    tight.limit_to(2, splits.val.samples[0][0])
    assert not tight.enabled
    decodes.clear()
    tight(splits.val.samples[0][0]), tight(splits.val.samples[0][0])
    assert len(decodes) == 2

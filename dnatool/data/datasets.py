"""Train / rating / validation splits from the built-in digits or an ImageFolder tree.

The rating split is taken out of the training images (DNA: 50 images per class), so rating never
sees the validation images that retraining reports on. `digits` is scikit-learn's bundled set of
1797 real 8x8 handwritten digits, upsampled to the requested resolution and made 3-channel.
An ImageFolder is normalised the way the teacher was trained (`preprocess`: mean, std,
interpolation, crop_pct, e.g. from `timm.data.resolve_data_config`), ImageNet's by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    Subset,
    TensorDataset,
)

from dnatool.errors import BadInput

BUILTIN = ("digits",)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_PCT = 0.875
DEFAULT_INTERPOLATION = "bilinear"


@dataclass
class Splits:
    """Datasets yielding (image tensor, label) plus what preprocessing must reproduce."""

    train: Dataset
    rate: Dataset
    val: Dataset
    num_classes: int
    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = DEFAULT_INTERPOLATION
    train_augment: dict[str, Any] = field(default_factory=dict)  # timm create_transform kwargs

    @property
    def preprocess(self) -> dict:
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "resolution": self.resolution,
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
        }


def load_splits(
    source: str,
    resolution: int,
    rate_per_class: int = 10,
    seed: int = 0,
    augment: bool = True,
    preprocess: Mapping[str, Any] | None = None,
) -> Splits:
    """`digits` or an ImageFolder root with `train/` and `val/` class folders.

    `preprocess` (mean, std, interpolation, crop_pct; any subset) applies to an ImageFolder; the
    digits are always standardised by their own mean and std, as their teachers were trained.
    An ImageFolder with a `dataset.json` (`dnatool.data.cluttered`) supplies its own defaults
    for both and the training crops (e.g. no flips for digits).
    """
    if source == "digits":
        return _digits(resolution, rate_per_class, seed, augment)
    root = Path(source)
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise BadInput(
            f"data {source!r} is neither a built-in set ({', '.join(BUILTIN)}) nor a folder "
            "with train/ and val/ ImageFolder class folders"
        )
    return _image_folder(root, resolution, rate_per_class, seed, augment, dict(preprocess or {}))


def _take_per_class(
    targets: np.ndarray, per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of `per_class` images of every class (held out) and of the rest."""
    rng = np.random.default_rng(seed)
    held = np.concatenate(
        [rng.permutation(np.flatnonzero(targets == c))[:per_class] for c in np.unique(targets)]
    )
    rest = np.setdiff1d(np.arange(len(targets)), held)
    return np.sort(held), rest


class _Augmented(Dataset):
    """Random shifts (pad + crop) and nothing else: digits are not flip-invariant.

    A sample's shift is a pure function of (seed, epoch, index), not the state of a generator:
    DataLoader workers (each holding a copy of the dataset) do not repeat each other's shifts,
    and a resumed run sees the shifts an uninterrupted one would. Loaders call `set_epoch`."""

    def __init__(self, base: TensorDataset, pad: int, seed: int) -> None:
        self.base, self.pad, self.seed, self.epoch = base, pad, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        size = image.shape[-1]
        padded = torch.nn.functional.pad(image, (self.pad,) * 4, mode="replicate")
        draw = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, index))
        dy, dx = torch.randint(0, 2 * self.pad + 1, (2,), generator=draw).tolist()
        return padded[:, dy : dy + size, dx : dx + size], label


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation in one epoch: what makes it a pure function."""
    return (seed * 1_000_003 + epoch) * 10_000_019 + int(index)


def set_epoch(dataset: Any, epoch: int) -> None:
    """Tell a training set which epoch is being read (augmentations that depend on it), through
    the subsets a split is made of."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)


def epoch_loader(
    data: Dataset,
    batch_size: int,
    seed: int,
    epoch: int,
    workers: int = 0,
    shard: tuple[int, int] | None = None,
) -> tuple[DataLoader, list[int]]:
    """One epoch's loader and its sample order, a pure function of (seed, epoch): a resumed run
    reads what an uninterrupted one would. `shard` (rank, world): torch's DistributedSampler
    share; None: the whole seeded permutation. The last partial batch is dropped when this
    process has at least two full ones (a lone tiny batch would skew BatchNorm)."""
    set_epoch(data, epoch)
    if shard is not None:
        sampler = DistributedSampler(data, num_replicas=shard[1], rank=shard[0], seed=seed)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(data, generator=torch.Generator().manual_seed(seed + epoch))
    order = list(sampler)
    loader = DataLoader(
        data,
        batch_size=batch_size,
        sampler=order,
        num_workers=workers,
        drop_last=len(order) >= batch_size * 2,
    )
    return loader, order


def _digits(resolution: int, rate_per_class: int, seed: int, augment: bool) -> Splits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = torch.nn.functional.interpolate(
        images, size=(resolution, resolution), mode="bilinear", align_corners=False
    ).repeat(1, 3, 1, 1)
    mean, std = float(images.mean()), float(images.std())
    images = (images - mean) / std
    labels = torch.tensor(bunch.target, dtype=torch.long)
    val_idx, train_all = _take_per_class(bunch.target, 36, seed)
    rate_rel, train_rel = _take_per_class(bunch.target[train_all], rate_per_class, seed + 1)
    full = TensorDataset(images, labels)
    train = Subset(full, train_all[train_rel].tolist())
    if augment:
        train = _Augmented(
            TensorDataset(images[train_all[train_rel]], labels[train_all[train_rel]]),
            pad=max(1, resolution // 16),
            seed=seed,
        )
    return Splits(
        train=train,
        rate=Subset(full, train_all[rate_rel].tolist()),
        val=Subset(full, val_idx.tolist()),
        num_classes=10,
        resolution=resolution,
        mean=(mean,) * 3,
        std=(std,) * 3,
        source="digits",
        crop_pct=1.0,
    )


class DecodedImages:
    """torchvision's image loader that keeps a small folder's decoded images in memory.

    At 32 px decoding a PNG is 60% of what an image costs on the CPU (239 of 405 us on the
    cluttered digits, where the rest is the random crop and tensor conversion), and a truth job
    reads every image 12-24 times. Augmentations build new images, so handing out the same decoded
    image again is safe. Folders whose decoded size would pass `max_bytes` are decoded every time,
    as before: the cache lives in each process (and DataLoader worker)."""

    def __init__(self, max_bytes: int = 512 << 20) -> None:
        self.max_bytes, self.enabled = max_bytes, False
        self.images: dict[str, Any] = {}

    def limit_to(self, count: int, sample: str | None) -> None:
        """Enable the cache when `count` images shaped like `sample` fit in `max_bytes`."""
        from torchvision.datasets.folder import default_loader

        if sample is None:
            return
        width, height = default_loader(sample).size
        self.enabled = count * width * height * 3 <= self.max_bytes

    def __call__(self, path: str) -> Any:
        from torchvision.datasets.folder import default_loader

        if not self.enabled:
            return default_loader(path)
        image = self.images.get(path)
        if image is None:
            image = self.images[path] = default_loader(path)
        return image


def _image_folder(
    root: Path,
    resolution: int,
    rate_per_class: int,
    seed: int,
    augment: bool,
    preprocess: dict[str, Any],
) -> Splits:
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    from dnatool.data.cluttered import read_dataset_spec
    from dnatool.data.seeded import SeededImageFolder

    described = read_dataset_spec(root) or {}
    preprocess = {**described.get("preprocess", {}), **preprocess}
    train_augment = {
        k: tuple(v) if isinstance(v, list) else v for k, v in described.get("augment", {}).items()
    }
    norm = {
        "mean": tuple(float(v) for v in preprocess.get("mean", IMAGENET_MEAN)),
        "std": tuple(float(v) for v in preprocess.get("std", IMAGENET_STD)),
        "interpolation": str(preprocess.get("interpolation", DEFAULT_INTERPOLATION)),
    }
    crop_pct = float(preprocess.get("crop_pct", DEFAULT_CROP_PCT))
    size = (3, resolution, resolution)
    extra = train_augment if augment else {}
    train_tf = create_transform(size, is_training=augment, crop_pct=crop_pct, **norm, **extra)
    eval_tf = create_transform(size, is_training=False, crop_pct=crop_pct, **norm)
    loader = DecodedImages()
    train_aug = SeededImageFolder(str(root / "train"), seed, transform=train_tf, loader=loader)
    train_eval = ImageFolder(str(root / "train"), transform=eval_tf, loader=loader)
    val = ImageFolder(str(root / "val"), transform=eval_tf, loader=loader)
    loader.limit_to(len(train_aug) + len(val), train_aug.samples[0][0] if len(train_aug) else None)
    if val.classes != train_aug.classes:
        raise BadInput(f"{root}/val classes differ from {root}/train classes")
    held, rest = _take_per_class(np.array(train_aug.targets), rate_per_class, seed)
    return Splits(
        train=Subset(train_aug, rest.tolist()),
        rate=Subset(train_eval, held.tolist()),
        val=val,
        num_classes=len(train_aug.classes),
        resolution=resolution,
        mean=norm["mean"],
        std=norm["std"],
        source=str(root),
        crop_pct=crop_pct,
        interpolation=norm["interpolation"],
        train_augment=train_augment,
    )

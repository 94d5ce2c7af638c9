"""Cluttered digits: a built-in, non-saturated image task generated from scikit-learn's digits.

The plain digits saturate (91-99% top-1 for any small network), so architectures cannot be told
apart by their trained accuracy. This task places one real digit on a larger canvas with a
coloured, textured background, fragments of other digits and pixel noise; train and validation
canvases are built from disjoint source images (per class), so validation measures generalisation
to unseen handwriting, not memorised strokes. Every canvas is a pure function of (spec, split,
class, index): generation is deterministic, order-free, and needs no download.

The result is an ImageFolder (`train/<class>/*.png`, `val/<class>/*.png`) that every method reads
through the normal data path (`-o data=DIR`), plus `dataset.json` (format `dnatool.dataset`): the
spec, the source indices of each split, and how loaders should treat the images (`augment`: mild
crops, no flips, since digits are not flip-invariant; `preprocess`: the train set's mean / std and
crop_pct 1, since the canvas is already the network's resolution).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dnatool.errors import BadInput
from dnatool.utils import io
from dnatool.utils.events import Report, quiet

FORMAT = "dnatool.dataset"
GENERATOR = "cluttered-digits"
SPEC_FILE = "dataset.json"
SPLITS = ("train", "val")
CLASSES = tuple(str(c) for c in range(10))
AUGMENT_KEYS = ("scale", "ratio", "hflip", "vflip", "color_jitter")  # timm create_transform
LATER_KNOBS = {"elastic": 0.0}  # knobs added after version 1, with the value that adds nothing


@dataclass(frozen=True)
class ClutterSpec:
    """The difficulty knobs. Defaults give a task small networks solve to 60-90%, not 99%."""

    size: int = 32  # canvas side in pixels (= the space's resolution)
    train_per_class: int = 2000
    val_per_class: int = 500
    val_fraction: float = 0.3  # share of each class's source digits reserved for validation
    digit_min: int = 18  # side of the pasted digit, pixels (drawn uniformly per canvas)
    digit_max: int = 26
    rotate: float = 12.0  # max rotation of the digit and fragments, degrees
    fragments: int = 2  # partial digits of other classes pasted under the target
    fragment_fraction: float = 0.5  # side of a fragment as a fraction of its digit's side
    clutter: float = 0.5  # strength of the low-frequency background texture, 0..1
    noise: float = 0.08  # std of the Gaussian pixel noise (pixel values in 0..1)
    colour: bool = True  # random colours (False: grey levels)
    min_contrast: float = 0.35  # least colour distance between the digit and its background
    seed: int = 0
    elastic: float = 0.0  # RMS of a smooth random displacement of each glyph, fraction of its side

    def __post_init__(self) -> None:
        checks = [
            (self.size >= 8, "size must be >= 8"),
            (
                self.train_per_class >= 1 and self.val_per_class >= 1,
                "per-class counts must be >= 1",
            ),
            (0 < self.val_fraction < 1, "val_fraction must be in (0, 1)"),
            (
                4 <= self.digit_min <= self.digit_max <= self.size,
                "need 4 <= digit_min <= digit_max <= size",
            ),
            (0 <= self.rotate <= 180, "rotate must be in [0, 180]"),
            (self.fragments >= 0, "fragments must be >= 0"),
            (0 < self.fragment_fraction <= 1, "fragment_fraction must be in (0, 1]"),
            (0 <= self.clutter <= 1, "clutter must be in [0, 1]"),
            (0 <= self.noise <= 1, "noise must be in [0, 1]"),
            (0 <= self.min_contrast <= 1, "min_contrast must be in [0, 1]"),
            (0 <= self.elastic <= 0.5, "elastic must be in [0, 0.5]"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInput(f"cluttered digits: {message}")

    @property
    def digest(self) -> str:
        """What identifies the generated images: the spec (and the generator's version). Knobs
        added later enter only when set, so every earlier dataset keeps its digest."""
        spec = {
            k: v
            for k, v in dataclasses.asdict(self).items()
            if k not in LATER_KNOBS or v != LATER_KNOBS[k]
        }
        data = json.dumps({"generator": GENERATOR, "version": 1, **spec}, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:16]


def spec_from_options(options: dict[str, Any] | None) -> ClutterSpec:
    """A spec from `key: value` options (a recipe's `data_options`), unknown keys refused."""
    options = dict(options or {})
    fields = {f.name: f for f in dataclasses.fields(ClutterSpec)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise BadInput(
            f"unknown cluttered-digits option {unknown[0]!r} (known: {', '.join(fields)})"
        )
    values = {}
    for key, value in options.items():
        kind = type(getattr(ClutterSpec(), key))
        try:
            values[key] = kind(value) if kind is not bool else _as_bool(key, value)
        except (TypeError, ValueError):
            raise BadInput(
                f"cluttered-digits option {key!r} must be {kind.__name__}, got {value!r}"
            ) from None
    return ClutterSpec(**values)


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(key)


def source_split(targets: np.ndarray, val_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Disjoint source-image indices per split: each class's digits are shuffled with a seeded
    generator and the first `val_fraction` of them are validation-only."""
    rng = np.random.default_rng([seed, 7])
    train, val = [], []
    for c in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == c))
        n_val = max(1, int(round(val_fraction * len(members))))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return {"train": np.sort(np.concatenate(train)), "val": np.sort(np.concatenate(val))}


def load_sources() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: (1797, 8, 8) float images in 0..1 and their labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)


def render(
    spec: ClutterSpec,
    images: np.ndarray,
    targets: np.ndarray,
    sources: np.ndarray,
    label: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """One canvas (size x size x 3, uint8) showing a digit of class `label` drawn from `sources`."""
    size = spec.size
    canvas = _background(spec, rng)
    others = sources[targets[sources] != label]
    for _ in range(spec.fragments):
        alpha = _fragment(spec, images[int(rng.choice(others))], rng)
        _paint(canvas, alpha, _colour(spec, rng))
    own = sources[targets[sources] == label]
    digit = _glyph(
        images[int(rng.choice(own))],
        int(rng.integers(spec.digit_min, spec.digit_max + 1)),
        spec.rotate,
        rng,
        spec.elastic,
    )
    alpha = np.zeros((size, size), np.float32)
    h, w = digit.shape
    y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    alpha[y : y + h, x : x + w] = digit
    below = (canvas * (alpha[..., None] > 0.3)).sum((0, 1)) / max(1.0, float((alpha > 0.3).sum()))
    _paint(canvas, alpha, _contrasting(spec, below, rng))
    canvas += spec.noise * rng.standard_normal(canvas.shape, dtype=np.float32)
    return (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _colour(spec: ClutterSpec, rng: np.random.Generator) -> np.ndarray:
    if spec.colour:
        return rng.random(3, dtype=np.float32)
    return np.full(3, rng.random(dtype=np.float32), np.float32)


def _contrasting(spec: ClutterSpec, below: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A colour at least `min_contrast` (RMS over channels) away from what lies under the digit."""
    best, best_gap = None, -1.0
    for _ in range(16):
        colour = _colour(spec, rng)
        gap = float(np.sqrt(np.mean((colour - below) ** 2)))
        if gap >= spec.min_contrast:
            return colour
        if gap > best_gap:
            best, best_gap = colour, gap
    return (
        np.where(below > 0.5, 0.0, 1.0).astype(np.float32)
        if best_gap < spec.min_contrast / 2
        else best
    )


def _background(spec: ClutterSpec, rng: np.random.Generator) -> np.ndarray:
    """A colour gradient plus low-frequency texture (random 4x4 colours upsampled) of strength
    `clutter`."""
    from PIL import Image

    size = spec.size
    a, b = _colour(spec, rng), _colour(spec, rng)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    ramp = (ramp - ramp.min()) / max(1e-6, float(ramp.max() - ramp.min()))
    canvas = a[None, None, :] * (1 - ramp[..., None]) + b[None, None, :] * ramp[..., None]
    if spec.clutter > 0:
        cells = int(rng.integers(3, 7))
        coarse = np.stack([_colour(spec, rng) for _ in range(cells * cells)]).reshape(
            cells, cells, 3
        )
        texture = np.stack(
            [
                np.asarray(Image.fromarray(coarse[..., ch]).resize((size, size), Image.BICUBIC))
                for ch in range(3)
            ],
            axis=-1,
        )
        canvas = (1 - spec.clutter) * canvas + spec.clutter * np.clip(texture, 0, 1)
    return canvas.astype(np.float32)


def _glyph(
    image: np.ndarray, side: int, rotate: float, rng: np.random.Generator, elastic: float = 0.0
) -> np.ndarray:
    """A source digit upscaled to `side` pixels, rotated by up to `rotate` degrees and, with
    `elastic`, warped (0..1 alpha)."""
    from PIL import Image

    glyph = Image.fromarray(image).resize((side, side), Image.BILINEAR)
    if rotate > 0:
        glyph = glyph.rotate(float(rng.uniform(-rotate, rotate)), Image.BILINEAR)
    alpha = np.clip(np.asarray(glyph, dtype=np.float32), 0.0, 1.0)
    return _warp(alpha, elastic, rng) if elastic > 0 else alpha


def _warp(alpha: np.ndarray, elastic: float, rng: np.random.Generator) -> np.ndarray:
    """Elastic distortion (Simard et al., ICDAR 2003): a random displacement field smoothed over a
    sixth of the glyph, scaled to an RMS of `elastic` x side. Each canvas gets its own field, so
    the ~130 source digits of a class become new handwriting on every canvas."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    side = alpha.shape[0]
    fields = []
    for _ in range(2):
        field = gaussian_filter(rng.uniform(-1.0, 1.0, alpha.shape), side / 6.0, mode="constant")
        fields.append(field / max(1e-8, float(np.sqrt(np.mean(field**2)))) * elastic * side)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    warped = map_coordinates(alpha, [yy + fields[0], xx + fields[1]], order=1, mode="constant")
    return np.clip(warped, 0.0, 1.0).astype(np.float32)


def _fragment(spec: ClutterSpec, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A partial digit (a random window of a scaled glyph) somewhere on the canvas, as alpha."""
    size = spec.size
    side = int(rng.integers(spec.digit_min, spec.digit_max + 1))
    glyph = _glyph(image, side, spec.rotate, rng, spec.elastic)
    part = max(2, int(round(spec.fragment_fraction * side)))
    gy, gx = (int(v) for v in rng.integers(0, side - part + 1, 2))
    piece = glyph[gy : gy + part, gx : gx + part]
    alpha = np.zeros((size, size), np.float32)
    y, x = (int(v) for v in rng.integers(0, size - part + 1, 2))
    alpha[y : y + part, x : x + part] = piece
    return alpha


def _paint(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    canvas *= 1 - alpha[..., None]
    canvas += alpha[..., None] * colour[None, None, :]


def canvas(spec: ClutterSpec, split: str, label: int, index: int) -> np.ndarray:
    """The one canvas (split, class, index) of `spec`, alone (tests, inspection)."""
    images, targets = load_sources()
    sources = source_split(targets, spec.val_fraction, spec.seed)[split]
    return render(spec, images, targets, sources, label, _rng(spec, split, label, index))


def _rng(spec: ClutterSpec, split: str, label: int, index: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, SPLITS.index(split), label, index])


def generate(out: str | Path, spec: ClutterSpec, report: Report = quiet) -> dict[str, Any]:
    """Write the ImageFolder and `dataset.json` into `out` (built in a sibling folder, then
    renamed, so a kill leaves nothing half-written); a folder holding the same spec is reused."""
    from PIL import Image

    out = Path(out)
    existing = read_dataset_spec(out)
    if existing is not None:
        if existing.get("digest") != spec.digest:
            raise BadInput(
                f"{out} holds another generated dataset (digest {existing.get('digest')}, wanted "
                f"{spec.digest}); choose another folder"
            )
        return existing
    if out.exists() and any(out.iterdir()):
        raise BadInput(
            f"{out} exists and is not a generated dataset; choose an empty or new folder"
        )
    images, targets = load_sources()
    sources = source_split(targets, spec.val_fraction, spec.seed)
    work = out.parent / f".{out.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    counts = {"train": spec.train_per_class, "val": spec.val_per_class}
    total = 10 * sum(counts.values())
    report("start", task="generate data", total=total)
    moments = np.zeros((2, 3))
    for split in SPLITS:
        for label in range(10):
            folder = work / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(counts[split]):
                pixels = render(
                    spec, images, targets, sources[split], label, _rng(spec, split, label, index)
                )
                Image.fromarray(pixels).save(folder / f"{index:05d}.png", optimize=False)
                if split == "train":
                    values = pixels.reshape(-1, 3).astype(np.float64) / 255.0
                    moments += [values.mean(0), (values**2).mean(0)]
            report("advance", task="generate data", n=counts[split])
    n = 10 * spec.train_per_class
    mean = moments[0] / n
    std = np.sqrt(np.maximum(moments[1] / n - mean**2, 1e-12))
    meta = {
        "format": FORMAT,
        "version": 1,
        "generator": GENERATOR,
        "digest": spec.digest,
        "spec": dataclasses.asdict(spec),
        "classes": list(CLASSES),
        "counts": {split: 10 * counts[split] for split in SPLITS},
        "sources": {split: sources[split].tolist() for split in SPLITS},
        "augment": {"scale": [0.75, 1.0], "ratio": [0.9, 1.1], "hflip": 0.0, "color_jitter": 0.0},
        "preprocess": {
            "mean": [round(float(v), 6) for v in mean],
            "std": [round(float(v), 6) for v in std],
            "crop_pct": 1.0,
            "interpolation": "bilinear",
        },
    }
    io.write_json(work / SPEC_FILE, meta)
    if out.exists():
        out.rmdir()
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(work, out)
    return meta


def read_dataset_spec(root: str | Path) -> dict[str, Any] | None:
    """`ROOT/dataset.json` when it is a dnatool dataset description, else None."""
    path = Path(root) / SPEC_FILE
    if not path.is_file():
        return None
    data = io.read_json(path, "dataset description")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BadInput(f"{path} is not a {FORMAT} file")
    augment = data.get("augment", {})
    unknown = sorted(set(augment) - set(AUGMENT_KEYS)) if isinstance(augment, dict) else ["?"]
    if unknown:
        raise BadInput(
            f"{path}: unknown augment key {unknown[0]!r} (known: {', '.join(AUGMENT_KEYS)})"
        )
    return data

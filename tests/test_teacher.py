from __future__ import annotations

import os

import timm
import torch

from dnatool.arch.space import load_space
from dnatool.nn.teacher import Teacher, find_cut, load_teacher_model


def test_b7_cut_matches_the_paper():
    model = timm.create_model("tf_efficientnet_b7")
    cut = find_cut(model, load_space("dna-mbconv"))
    assert cut.shapes == (
        (48, 56, 56),
        (80, 28, 28),
        (160, 14, 14),
        (224, 14, 14),
        (384, 7, 7),
        (640, 7, 7),
    )


def test_one_forward_yields_every_target():
    model = timm.create_model("efficientnet_b0")
    teacher = Teacher(model, find_cut(model, load_space("dna-mbconv")), "b0")
    outputs = teacher(torch.randn(1, 3, 224, 224))
    assert [tuple(o.shape[1:]) for o in outputs] == list(teacher.cut.shapes)
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.train().training


def test_offline_without_weights_names_the_local_file_option(cli, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = cli(
        "train", "dna-tiny", "-o", "teacher=efficientnet_b0", "--out", str(tmp_path / "r"), env=env
    )
    assert result.code == 1 and "teacher_weights" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_local_weights_file(tmp_path):
    reference = timm.create_model("efficientnet_b0")
    torch.save(reference.state_dict(), tmp_path / "b0.pth")
    model, description = load_teacher_model("efficientnet_b0", weights=str(tmp_path / "b0.pth"))
    assert "b0.pth" in description
    assert torch.equal(model.conv_stem.weight, reference.conv_stem.weight)


def _image_folder(root, per_class: int = 3):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (40, 36, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_teacher_preprocessing_comes_from_timm():
    model = timm.create_model("tf_efficientnet_lite0")
    teacher = Teacher(model, find_cut(model, load_space("tiny")), "lite0")
    assert teacher.preprocess == {
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "interpolation": "bicubic",
        "crop_pct": 0.875,
    }


def test_image_folder_training_uses_and_records_the_teacher_preprocessing(cli, tmp_path):
    import json

    data = _image_folder(tmp_path / "data")
    run = tmp_path / "run"
    result = cli(
        "train",
        "dna-tiny",
        "--out",
        str(run),
        *("-o", "teacher=tf_efficientnet_lite0", "-o", "teacher_pretrained=false"),
        *("-o", f"data={data}", "-o", "rate_per_class=1", "-o", "batch_size=2"),
        *("-o", "epochs=1", "-o", "max_steps_per_epoch=1"),
    )
    assert result.code == 0, result.stderr
    recorded = json.loads((run / "teacher.json").read_text())
    assert recorded["preprocess"]["mean"] == [0.5, 0.5, 0.5]
    assert recorded["preprocess"]["std"] == [0.5, 0.5, 0.5]
    assert recorded["preprocess"]["interpolation"] == "bicubic"
    assert recorded["preprocess"]["crop_pct"] == 0.875
    assert "mean [0.5, 0.5, 0.5]" in result.stderr

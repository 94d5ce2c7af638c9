"""Searched networks as timm models: features_only from a model run, feature_info, safe weights."""

from __future__ import annotations

import pytest
import timm
import torch

from dnatool.arch.resolve import resolve_arch
from dnatool.backbones import timm_models
from dnatool.backbones.levels import default_out_indices, feature_levels
from dnatool.errors import BadInput
from dnatool.nn.model_run import DEFAULT_PREPROCESS, save_model_run
from dnatool.nn.timm_adapter import build_model

SMALL = [
    ["ds_r1_k3_s1_e1_c8_se0.25"],
    ["ir_r1_k3_s2_e3_c16_se0.25"],
    ["ir_r2_k5_s2_e6_c24_se0.25"],
    ["ir_r1_k3_s2_e3_c40_se0.25"],
    ["ir_r1_k3_s1_e3_c44_se0.25"],
    ["ir_r1_k3_s2_e3_c48_se0.25"],
]


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    torch.manual_seed(0)
    spec = resolve_arch(SMALL, stem=16, head=96, resolution=64, num_classes=7, name="small")
    model = build_model(spec).eval()
    run = tmp_path_factory.mktemp("run")
    save_model_run(
        run, model, spec, {**DEFAULT_PREPROCESS, "resolution": 64, "mean": [0.5] * 3}, {}
    )
    return run, spec, model


@pytest.mark.parametrize(
    "arch,output_stride",
    [
        ("efficientnet_b0", 32),
        ("efficientnet_b0", 16),
        ("efficientnet_b0", 8),
        (SMALL, 32),
        ([["ir_r1_k3_s2_e3_c8"], ["ir_r1_k3_s2_e3_c12", "ir_r1_k3_s1_e3_c16"]], 32),
    ],
)
def test_levels_match_timm_feature_info(arch, output_stride):
    spec = resolve_arch(arch)
    levels = feature_levels(spec, output_stride)
    model = timm.create_model(
        "dnatool_model",
        arch=arch,
        features_only=True,
        output_stride=output_stride,
        out_indices=tuple(range(len(levels))),
    )
    assert model.feature_info.channels() == [lv.channels for lv in levels]
    assert model.feature_info.reduction() == [lv.reduction for lv in levels]


def test_features_from_model_run_match_feature_info(model_run):
    run, spec, reference = model_run
    indices = default_out_indices(feature_levels(spec))
    model = timm.create_model(
        "dnatool_model",
        pretrained=True,
        features_only=True,
        out_indices=indices,
        pretrained_cfg_overlay=dict(file=str(run / "model.pt")),
    ).eval()
    feats = model(torch.randn(2, 3, 64, 64))
    assert len(feats) == len(indices) == 4
    for feat, channels, reduction in zip(
        feats, model.feature_info.channels(), model.feature_info.reduction(), strict=True
    ):
        assert feat.shape == (2, channels, 64 // reduction, 64 // reduction)
    assert model.feature_info.channels() == [16, 24, 44, 48]
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    assert model.pretrained_cfg["input_size"] == (3, 64, 64)
    # with no weights source in its pretrained_cfg timm only warns and keeps random weights
    torch.testing.assert_close(model.conv_stem.weight, reference.conv_stem.weight, rtol=0, atol=0)
    torch.testing.assert_close(
        model.blocks[2][1].conv_pw.weight, reference.blocks[2][1].conv_pw.weight, rtol=0, atol=0
    )


def test_registered_name_loads_the_retrained_weights(model_run):
    run, spec, reference = model_run
    name = timm_models.register("dna_test_small", str(run))
    assert timm_models.register(name, spec) == name  # same arch again: no-op
    model = timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay=dict(file=str(run / "model.pt"))
    )
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model.eval()(x), reference(x), rtol=0, atol=0)
    random = timm.create_model(name).eval()
    assert not torch.allclose(random(x), reference(x))


def test_plain_state_dict_file_and_features_head_dropped(model_run, tmp_path):
    run, spec, reference = model_run
    plain = tmp_path / "plain.pth"
    torch.save(reference.state_dict(), plain)
    model = timm.create_model(
        "dnatool_model",
        arch=str(run),
        pretrained=True,
        features_only=True,
        pretrained_cfg_overlay=dict(file=str(plain)),
        out_indices=(4,),
    )
    torch.testing.assert_close(model.conv_stem.weight, reference.conv_stem.weight)


def test_wrong_arch_or_missing_arch_refused(model_run):
    run, _, _ = model_run
    with pytest.raises(BadInput, match="do not fit"):
        timm.create_model(
            "dnatool_model",
            arch="efficientnet_b0",
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(run / "model.pt")),
        )
    with pytest.raises(BadInput, match="needs arch"):
        timm.create_model("dnatool_model")
    with pytest.raises(BadInput, match="already a timm model"):
        timm_models.register("efficientnet_b0", "efficientnet_b0")


def test_out_of_range_level_is_refused():
    from dnatool.backbones.levels import check_out_indices

    levels = feature_levels(resolve_arch(SMALL))
    with pytest.raises(BadInput, match="out of range"):
        check_out_indices(levels, (1, 5))


def test_timm_features_only_with_too_many_levels_names_the_valid_ones():
    """The README's `out_indices=(1, 2, 3, 4)` on a network with fewer levels: one ValueError
    naming the levels it has, not timm's IndexError from inside."""
    shallow = [["ir_r1_k3_s2_e3_c8"], ["ir_r1_k3_s2_e3_c12", "ir_r1_k3_s1_e3_c16"]]
    assert len(feature_levels(resolve_arch(shallow))) < 5
    with pytest.raises(ValueError, match=r"out of range; this arch has levels 0 \(stride 2"):
        timm.create_model(
            "dnatool_model", arch=shallow, features_only=True, out_indices=(1, 2, 3, 4)
        )

"""Compound scaling matches timm's EfficientNets exactly (issue 6)."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch

from dnatool.arch.resolve import resolve_arch
from dnatool.arch.scale import round_channels, scale_arch, scale_phi, scale_stage_depth, scale_to
from dnatool.arch.spec import ArchSpec
from dnatool.errors import BadInput


def _shapes(model: torch.nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in model.parameters()]


@pytest.mark.parametrize("target", ["b1", "b2", "b3", "b4"])
def test_b0_scaled_to_target_is_timms_network(target):
    import timm

    from dnatool.nn.timm_adapter import build_model

    scaled = scale_to(resolve_arch("efficientnet_b0"), target)
    with torch.device("meta"):
        ours, theirs = build_model(scaled), timm.create_model(f"efficientnet_{target}")
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    assert _shapes(ours) == _shapes(theirs)
    published = {"b1": 240, "b2": 260, "b3": 300, "b4": 380}  # the paper's, not timm's train size
    assert scaled.resolution == published[target]


def test_b2_parameter_count_is_exact():
    from dnatool.nn.timm_adapter import build_model, count_params

    with torch.device("meta"):
        model = build_model(scale_to(resolve_arch("efficientnet_b0"), "b2"))
    assert count_params(model) == 9_109_994  # timm.create_model('efficientnet_b2')


def test_round_channels_equals_timm():
    from timm.models._efficientnet_builder import round_channels as timm_round

    for channels in range(1, 400):
        for mult in (0.5, 0.75, 1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0, 1.1**3):
            assert round_channels(channels, mult) == timm_round(channels, mult), (channels, mult)


def test_multi_string_stages_scale_like_timm():
    """A searched stage has one r1 string per layer: depth is spread as timm spreads it."""
    from timm.models._efficientnet_builder import decode_arch_def
    from timm.models._efficientnet_builder import round_channels as timm_round
    from timm.models.efficientnet import EfficientNet

    from dnatool.nn.timm_adapter import build_model

    arch_def = [
        ["ds_r1_k3_s1_e1_c16_se0.25"],
        ["ir_r1_k3_s2_e6_c24_se0.25", "ir_r1_k5_s1_e3_c24_se0.25"],
        ["ir_r1_k5_s2_e3_c40_se0.25", "ir_r1_k3_s1_e6_c40_se0.25", "ir_r2_k7_s1_e6_c40_se0.25"],
        [
            "ir_r1_k3_s2_e6_c84_se0.25",
            "ir_r1_k3_s1_e3_c84_se0.25",
            "ir_r1_k5_s1_e6_c84_se0.25",
            "ir_r1_k5_s1_e6_c84_se0.25",
        ],
    ]
    arch = ArchSpec.from_arch_def(arch_def, stem=24, head=960)
    for width, depth in ((1.1, 1.2), (1.4, 1.8), (2.0, 3.1), (1.1**2, 1.2**2)):
        rounder = partial(timm_round, multiplier=width)
        with torch.device("meta"):
            theirs = EfficientNet(
                block_args=decode_arch_def(arch_def, depth),
                stem_size=24,
                num_features=rounder(960),
                round_chs_fn=rounder,
            )
            ours = build_model(scale_arch(arch, width, depth, 224))
        assert _shapes(ours) == _shapes(theirs), (width, depth)


def test_stage_depth_rounds_up_and_keeps_first_string_small():
    assert scale_stage_depth([1, 1, 1], 1.2) == [1, 2, 1]
    assert scale_stage_depth([3], 1.1) == [4]
    assert scale_stage_depth([1], 3.1) == [4]
    assert sum(scale_stage_depth([1] * 5, 1.8)) == 9


def test_phi_scales_all_three():
    b0 = resolve_arch("efficientnet_b0")
    zero = scale_phi(b0, 0)
    assert zero.arch_def == b0.arch_def and zero.resolution == 224 and zero.head == 1280
    two = scale_phi(b0, 2)
    assert two.resolution == round(224 * 1.15**2)
    assert two.head == round_channels(1280, 1.1**2)
    assert [s[-1].out for s in two.stages] == [round_channels(c, 1.21) for c in b0.stage_widths]
    assert sum(b.repeat for b in two.stages[5]) == 6  # ceil(4 * 1.44)


def test_tiny_arch_keeps_its_resolution_ratio():
    arch = ArchSpec.from_arch_def(
        [["ds_r1_k3_s1_e1_c8"], ["ir_r1_k3_s2_e3_c16"]],
        resolution=32,
        stem=16,
        head=256,
        num_classes=10,
    )
    scaled = scale_to(arch, "b2")
    assert scaled.resolution == round(32 * 260 / 224) and scaled.num_classes == 10
    assert ArchSpec.from_dict(json.loads(scaled.to_json())) == scaled


def test_bad_scale_inputs():
    b0 = resolve_arch("efficientnet_b0")
    for call in (
        lambda: scale_to(b0, "b9"),
        lambda: scale_phi(b0, -1),
        lambda: scale_arch(b0, 0, 1, 224),
        lambda: scale_phi(b0, float("nan")),
    ):
        with pytest.raises(BadInput):
            call()


def test_scale_cli_writes_a_loadable_arch(cli, tmp_path):
    out = tmp_path / "b2.json"
    result = cli("scale", "efficientnet_b0", "--to", "b2", "--out", str(out), "--json")
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["params"] == 9_109_994 and data["resolution"] == 260
    assert resolve_arch(str(out)).resolution == 260
    printed = cli("scale", "efficientnet_b0", "--phi", "1")
    assert printed.code == 0 and json.loads(printed.stdout)["resolution"] == 258


@pytest.mark.parametrize(
    "args", [("--to", "b9"), ("--phi", "1", "--to", "b1"), (), ("--phi", "x"), ("--phi", "-2")]
)
def test_scale_cli_bad_input_exits_2_with_one_line(cli, args):
    result = cli("scale", "efficientnet_b0", *args)
    assert result.code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "Traceback" not in result.stderr

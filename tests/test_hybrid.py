"""HyTra's ResConv / ResAtt layers (`rc` / `ra`): strict block strings, the same module in the
supernet and the deployed network, MACs that count attention, ONNX parity, and the hybrid-tiny
space through training, rating and search."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dnatool.arch.space import load_space, space_from_dict
from dnatool.arch.spec import ArchSpec, parse_block
from dnatool.errors import BadInput
from dnatool.nn.counts import op_counts
from dnatool.nn.hybrid import hybrid_layer
from dnatool.nn.timm_adapter import build_layers, build_model, count_macs, count_params

ARCH_DEF = [
    ["rc_r2_k3_s1_e0.25_c32"],
    ["rc_r1_k3_s2_e0.25_c64", "ra_r2_k3_s1_e0.25_c64_h4"],
    ["ra_r1_k3_s2_e0.25_c128_h4"],
]


def _arch() -> ArchSpec:
    return ArchSpec.from_arch_def(
        ARCH_DEF, stem=16, head=256, act="relu", resolution=32, num_classes=10
    )


@pytest.mark.parametrize(
    "text", ["rc_r1_k3_s2_e0.25_c64", "ra_r1_k3_s1_e0.25_c64_h4", "ra_r2_k5_s1_e0.5_c96_h12"]
)
def test_hybrid_block_strings_round_trip(text):
    assert parse_block(text).to_str() == text


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("rc_r1_k3_s1_e0.25_c64_se0.25", "'se0.25'"),  # timm's ByobNet block would ignore it
        ("rc_r1_k3_s1_e0.25_c64_h4", "'h4'"),
        ("ra_r1_k3_s1_e0.25_c64_gs8", "'gs8'"),
        ("ra_r1_k3_s1_e0.25_c64", "h<N>"),
        ("ir_r1_k3_s1_e6_c64_h2", "'h2'"),
        ("ra_r1_k3_s1_e0.25_c64_h3", "h3"),  # 3 heads do not split a 16-wide bottleneck
        ("ra_r1_k3_s1_e0.25_c64_h0", "h0"),
        ("rc_r1_k4_s1_e0.25_c64", "k4"),
    ],
)
def test_bad_hybrid_block_strings_are_refused_naming_the_token(text, named):
    with pytest.raises(BadInput, match=named.replace("<", ".").replace(">", ".")):
        parse_block(text)


def test_a_supernet_op_is_the_deployed_layer():
    """build_layers (supernet ops, table entries) and build_model (the network) make the same
    timm blocks with the same parameters; the network keeps timm's drop-path schedule."""
    arch = _arch()
    net = build_model(arch, drop_path_rate=0.1)
    layers = [m for stage in net.blocks for m in stage]
    kinds = ["BottleneckBlock"] * 3 + ["SelfAttnBlock"] * 3
    assert [type(m).__name__ for m in layers] == kinds
    stage = build_layers(32, list(arch.stages[1]), "relu")
    assert [count_params(m) for m in stage] == [count_params(m) for m in net.blocks[1]]
    assert [type(m).__name__ for m in stage] == ["BottleneckBlock", *["SelfAttnBlock"] * 2]
    rates = [getattr(m.drop_path, "drop_prob", 0.0) for m in layers]
    assert rates == pytest.approx([0.1 * i / len(layers) for i in range(len(layers))])
    net.eval()
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    features = build_model(arch, features_only=True, out_indices=(0, 1, 2))
    maps = features(torch.randn(1, 3, 32, 32))
    assert [tuple(m.shape[1:]) for m in maps] == [(32, 16, 16), (64, 8, 8), (128, 4, 4)]


@pytest.mark.parametrize("text", ["rc_r1_k3_s1_e0.25_c64", "ra_r1_k3_s1_e0.25_c64_h4"])
def test_a_layer_starts_as_its_shortcut(text):
    """ByobNet's zero-initialised last BatchNorm: an identity-shortcut layer starts as relu(x)."""
    layer = hybrid_layer(64, parse_block(text), "relu").eval()
    x = torch.randn(1, 64, 6, 6)
    with torch.no_grad():
        assert torch.equal(layer(x), torch.relu(x))


def test_the_position_conv_strides_so_weights_do_not_depend_on_the_stride():
    """BossNAS: the depthwise position conv does the downsampling, so a layer's stride-1 and
    stride-2 forms have the same parameters but for the shortcut's projection."""
    for text in ("rc_r1_k3_s{}_e0.25_c64", "ra_r1_k3_s{}_e0.25_c64_h4"):
        one = hybrid_layer(32, parse_block(text.format(1)), "relu")
        two = hybrid_layer(32, parse_block(text.format(2)), "relu")
        shapes = {k: v.shape for k, v in one.state_dict().items()}
        assert shapes == {k: v.shape for k, v in two.state_dict().items()}
        assert one.conv2_kxk.conv.groups == one.conv2_kxk.conv.in_channels  # depthwise
        assert two.conv2_kxk.conv.stride == (2, 2)
        x = torch.randn(1, 32, 8, 8)
        assert two.eval()(x).shape == (1, 64, 4, 4)


def test_macs_count_the_attention_products():
    """An `ra` layer at 8x8, 64 -> 64 channels, bottleneck 16: every conv plus the two attention
    matmuls (2 * 64 tokens^2 * 16), which torch's FlopCounterMode misses on CPU by itself."""
    layer = hybrid_layer(64, parse_block("ra_r1_k3_s1_e0.25_c64_h4"), "relu")
    hw = 64
    convs = 64 * 16 * hw + 16 * 9 * hw + 16 * 48 * hw + 16 * 16 * hw + 16 * 64 * hw
    assert count_macs(layer, (1, 64, 8, 8)) == convs + 2 * hw * hw * 16
    for text in ("ra_r1_k3_s1_e0.25_c64_h4", "ra_r1_k3_s2_e0.25_c64_h4", "rc_r1_k3_s2_e0.25_c64"):
        layer = hybrid_layer(32, parse_block(text), "relu")  # what search counts, on meta
        assert op_counts(32, text, "relu", 8) == (
            count_params(layer),
            count_macs(layer, (1, 32, 8, 8)),
        )


@pytest.mark.slow  # a CLI export (about 10 s): the default suite stays under 10 minutes
def test_onnx_export_matches_torch(cli, tmp_path):
    arch_file = tmp_path / "hybrid.json"
    arch_file.write_text(_arch().to_json())
    result = cli("export", str(arch_file), "--onnx", str(tmp_path / "h.onnx"), "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] and report["max_abs_diff"] <= 1e-4


def test_hybrid_tiny_space_and_a_bad_head_count():
    space = load_space("hybrid-tiny")
    assert [op.name for op in space.blocks[0].ops] == ["rc_k3", "ra_h4"]
    assert space.distinct == 10 * 16 * 12
    choices = space.sample(np.random.default_rng(0))
    net = build_model(space.to_arch(choices)).eval()
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    data = {
        "version": 2,
        "name": "bad",
        "resolution": 32,
        "ops": {"type": "hytra", "heads": [3]},
        "blocks": [{"stride": 2, "cells": [{"layers": 1, "width": 32}]}],
    }
    with pytest.raises(BadInput, match="h3"):
        space_from_dict(data)
    data["ops"] = {"type": "hytra", "heads": [2], "window": 7}
    with pytest.raises(BadInput, match="window"):
        space_from_dict(data)


def test_timm_and_mmseg_backbones_carry_the_hybrid_layers_and_their_weights(tmp_path):
    """timm.create_model(features_only, pretrained) and the mmseg DNABackbone build the hybrid
    layers (not timm's placeholders) and load a model run's weights into them."""
    import timm

    from dnatool.backbones import timm_models
    from dnatool.backbones.openmmlab import DNABackbone
    from dnatool.nn.model_run import save_model_run

    arch = _arch()
    reference = build_model(arch).eval()
    with torch.no_grad():  # weights a fresh build would not have
        for p in reference.parameters():
            p.uniform_(-0.1, 0.1)
    run = tmp_path / "run"
    save_model_run(run, reference, arch, {}, {})
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = build_model(arch, features_only=True, out_indices=(0, 1, 2))
        expected.load_state_dict(reference.state_dict(), strict=False)
        want = expected.eval()(x)
        name = timm_models.register("hybrid_test_net", arch)
        model = timm.create_model(
            name,
            pretrained=True,
            features_only=True,
            out_indices=(0, 1, 2),
            pretrained_cfg_overlay=dict(file=str(run / "model.pt")),
        ).eval()
        assert type(model.blocks[2][0]).__name__ == "SelfAttnBlock"
        for got, ref in zip(model(x), want, strict=True):
            torch.testing.assert_close(got, ref)
        backbone = DNABackbone(
            arch=str(run),
            out_indices=(0, 1, 2),
            init_cfg=dict(type="Pretrained", checkpoint=str(run)),
        )
        backbone.init_weights()
        for got, ref in zip(backbone.eval()(x), want, strict=True):
            torch.testing.assert_close(got, ref)
    with pytest.raises(BadInput, match="output_stride 16"):
        DNABackbone(arch=str(run), out_indices=(0, 1, 2), output_stride=16)


@pytest.mark.slow  # two short supernet trainings through the CLI
@pytest.mark.parametrize("recipe", ["dna-tiny-w", "dnapp-tiny"])
def test_dna_and_dnapp_train_rate_and_search_on_hybrid_tiny(cli, recipe, tmp_path):
    """The teacher-guided methods on HyTra's layers: every path of every cell gets a score and
    search returns a network of the space within the budget."""
    from pathlib import Path

    from dnatool.arch.resolve import resolve_arch
    from dnatool.nn.model_run import save_model_run

    teacher_arch = resolve_arch(str(Path(__file__).parents[1] / "recipes/arch/digits-teacher.json"))
    teacher = tmp_path / "teacher"
    save_model_run(teacher, build_model(teacher_arch), teacher_arch, {}, {})
    run = tmp_path / "run"
    overrides = ["space=hybrid-tiny", f"teacher={teacher}", "epochs=1", "max_steps_per_epoch=3"]
    args = [x for o in (*overrides, "rate_per_class=4") for x in ("-o", o)]
    assert cli("train", recipe, *args, "--out", str(run)).code == 0
    assert cli("rate", str(run)).code == 0
    space = load_space("hybrid-tiny")
    for k, block in enumerate(space.blocks):
        assert len(np.load(run / "scores" / f"block_{k}.npz")["scores"]) == block.paths
    searched = cli("search", str(run), "--params", "150k", "--json")
    assert searched.code == 0, searched.stderr
    assert json.loads(searched.stdout)["params"] <= 150_000

"""The ViT space (issue 18): `vt` / `pe` layers, dna-vit's size, one-op cells, the teacher's
pyramid resampled to the token grid, token cells' projections, feature levels, and (slow) DNA and
DNA++ on vit-tiny through train, rate, search, retrain and export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from timm.models.vision_transformer import Block

from dnatool.arch.resolve import resolve_arch
from dnatool.arch.space import load_space, space_from_dict
from dnatool.arch.spec import ArchSpec, parse_block
from dnatool.backbones.levels import feature_levels, level_positions
from dnatool.errors import BadInput
from dnatool.nn.model_run import save_model_run
from dnatool.nn.timm_adapter import (
    TokenEfficientNetFeatures,
    build_model,
    count_macs,
    count_params,
    efficientnet_kwargs,
)
from dnatool.nn.vit import PatchEmbedding, TokenLayer

REPO = Path(__file__).resolve().parents[1]
TEACHER_ARCH = REPO / "recipes" / "arch" / "digits-teacher.json"


@pytest.mark.parametrize(
    "text", ["vt_r1_k1_s1_e2.5_c224_h7", "vt_r3_k1_s1_e4_c96_h3", "pe_r1_k2_s2_c64"]
)
def test_token_block_strings_round_trip(text):
    assert parse_block(text).to_str() == text
    assert parse_block(parse_block(text).to_str()) == parse_block(text)


@pytest.mark.parametrize(
    "text, token",
    [
        ("vt_k3_e4_c96_h3", "k1 s1 only"),
        ("vt_s2_e4_c96_h3", "k1 s1 only"),
        ("vt_e4_c96_h5", "h5"),
        ("vt_e4_c96", "no heads token"),
        ("vt_e4_c96_h3_se0.25", "se0.25"),
        ("pe_k3_s2_c64", "kernel equals its stride"),
        ("pe_s2_e2_c64", "e2"),
    ],
)
def test_token_block_strings_are_refused_naming_the_problem(text, token):
    with pytest.raises(BadInput, match=token):
        parse_block(text)


def test_dna_vit_has_the_papers_ranges_and_its_exact_size():
    """64 choices per block (depth 3 or 4 x 8 widths x 4 MLP ratios) over 4 blocks: 64^4."""
    space = load_space("dna-vit")
    assert space.size == space.distinct == 64**4 == 16_777_216
    assert len(space.blocks) == 4
    widths, heads, ratios = set(), set(), set()
    for k, block in enumerate(space.blocks):
        assert block.paths == 64
        for c, cell in enumerate(block.cells):
            assert cell.layers in (3, 4) and len(set(block.layer_options(c))) == 1
            spec = space.layer_spec(k, c, block.layer_options(c)[0][0], 0)
            widths.add(spec.out), heads.add(spec.heads), ratios.add(spec.exp)
    assert sorted(widths) == list(range(224, 449, 32))
    assert sorted(heads) == list(range(7, 15))
    assert sorted(ratios) == [2.5, 3.0, 3.5, 4.0]
    rng = np.random.default_rng(0)
    for _ in range(20):
        choices = space.sample(rng)
        arch = space.to_arch(choices)
        depth = sum(1 for stage in arch.stages for b in stage if b.type == "vt")
        assert 12 <= depth <= 16
        for stage in arch.stages[3:]:  # one MLP ratio per cell
            assert len({b.exp for b in stage}) == 1


def test_dna_vit_example_counts_what_it_builds():
    """The shipped example arch: DNA-T's ~4.5 GMACs at 224 px; the counts are of the network."""
    arch = resolve_arch(str(REPO / "recipes" / "arch" / "dna-vit-example.json"))
    model = build_model(arch)
    assert count_params(model) == 22_279_520
    assert 4.4e9 < count_macs(model, (1, 3, 224, 224)) < 4.7e9


def test_a_token_layer_is_timms_vit_block_on_the_maps_tokens():
    torch.manual_seed(0)
    layer = TokenLayer(24, parse_block("vt_e3_c48_h3")).eval()
    x = torch.randn(2, 24, 5, 7)
    tokens = layer.proj(x.flatten(2).transpose(1, 2))
    assert isinstance(layer.block, Block) and layer.block.attn.num_heads == 3
    expected = layer.block(tokens).transpose(1, 2).reshape(2, 48, 5, 7)
    assert torch.equal(layer(x), expected)
    same = TokenLayer(48, parse_block("vt_e3_c48_h3"))
    assert isinstance(same.proj, torch.nn.Identity)


def test_the_patch_embedding_serves_any_grid():
    """A conditional position encoding: no fixed token count, so crops of any size work."""
    embed = PatchEmbedding(3, parse_block("pe_k2_s2_c16"))
    for size in (8, 14, 32):
        assert embed(torch.randn(1, 3, size, size)).shape == (1, 16, size // 2, size // 2)


def _teacher_run(root: Path) -> Path:
    arch = resolve_arch(str(TEACHER_ARCH))
    torch.manual_seed(0)
    save_model_run(root / "teacher", build_model(arch), arch, {}, {})
    return root / "teacher"


def test_the_teacher_pyramid_is_resampled_to_the_token_grid(tmp_path):
    """vit-tiny keeps an 8x8 grid; the digits teacher's stages end at 16, 8, 4, 2 px: its last
    three sizes supervise the three blocks, each map resampled to 8x8."""
    from dnatool.nn.teacher import build_teacher

    space = load_space("vit-tiny")
    teacher = build_teacher(str(_teacher_run(tmp_path)), space, pretrained=False)
    assert teacher.cut.stages == (1, 2, 3) and teacher.cut.grid == 8
    assert [s[1:] for s in teacher.cut.shapes] == [(8, 8)] * 3
    outs = teacher(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, c, 8, 8) for c, _, _ in teacher.cut.shapes]
    assert all(d["resampled_to"] == [8, 8] for d in teacher.cut.describe())


def _one_op_space():
    return space_from_dict(
        {
            "version": 2,
            "name": "one-op",
            "resolution": 32,
            "num_classes": 10,
            "stem": 16,
            "head": 64,
            "act": "gelu",
            "se": 0,
            "fixed": [["pe_k2_s2_c32"]],
            "ops": {"type": "vit", "mlp_ratios": [2, 3, 4], "head_dim": 16},
            "blocks": [
                {"stride": 1, "cells": {"layers": [1, 2], "widths": [32, 48], "one_op": True}},
                {"stride": 1, "cells": {"layers": [2], "widths": [32, 64]}},
            ],
        }
    )


def test_one_op_cells_hold_train_and_score_only_their_op():
    from dnatool.nn.supernet import Cell
    from dnatool.rate.feature_sharing import all_paths, score_cell_naive, score_cell_shared

    space = _one_op_space()
    assert space.blocks[0].paths == 2 * 2 * 3 and space.blocks[1].paths == 2 * 9
    assert space.size == 12 * 18
    c = next(i for i, cell in enumerate(space.blocks[0].cells) if cell.options == ((2,), (2,)))
    torch.manual_seed(0)
    cell = Cell(space, 0, c, in_chs=32, out_chs=24).eval()
    weighted = [
        [sum(p.numel() for p in op.parameters()) > 0 for op in layer] for layer in cell.layers
    ]
    assert weighted == [[False, False, True]] * 2
    gen = torch.Generator().manual_seed(0)
    assert {cell.sample_path(gen) for _ in range(20)} == {(2, 2)}
    assert list(all_paths(cell)) == [(2, 2)]
    x, target = torch.randn(4, 32, 8, 8), torch.randn(4, 24, 8, 8)
    shared = score_cell_shared(cell, [(x, target)])
    assert set(shared.scores()) == {(2, 2)}
    assert shared.scores() == pytest.approx(score_cell_naive(cell, [(x, target)]).scores())
    with pytest.raises(BadInput, match="does not fit"):
        space.layer_blocks(0, (c, (0, 2)))
    rng = np.random.default_rng(0)
    for _ in range(20):
        cell_index, path = space.sample(rng)[0]
        assert len(set(path)) == 1 and path[0] in space.blocks[0].layer_options(cell_index)[0]


def test_a_token_cell_keeps_its_width_and_projects_to_the_teachers():
    from dnatool.nn.supernet import Cell

    space = load_space("vit-tiny")
    c = next(i for i, cell in enumerate(space.blocks[1].cells) if cell.layers == 2)
    cell = Cell(space, 1, c, in_chs=24, out_chs=40)
    width = space.blocks[1].cells[c].width
    assert [op.block.attn.qkv.in_features for op in cell.layers[-1]] == [width, width]
    assert cell(torch.randn(2, 24, 8, 8), (0, 1)).shape == (2, 40, 8, 8)


def test_vit_feature_levels_are_every_token_stage():
    arch = ArchSpec.from_arch_def(
        [["pe_k2_s2_c32"], ["vt_e2_c32_h2"], ["vt_e2_c48_h3", "vt_e4_c48_h3"], ["vt_e4_c64_h4"]],
        stem=16,
        head=64,
        act="gelu",
        resolution=32,
        num_classes=10,
    )
    levels = feature_levels(arch)
    assert [(lv.channels, lv.reduction) for lv in levels] == [(16, 2), (32, 4), (48, 4), (64, 4)]
    assert level_positions(arch) == [0, 2, 3, 4]
    features = build_model(arch, features_only=True, out_indices=(1, 2, 3))
    outs = features(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [32, 48, 64] == features.feature_info.channels()
    with pytest.raises(BadInput, match="no dilated form"):  # its tokens are at stride 4
        TokenEfficientNetFeatures(out_indices=(1,), output_stride=2, **efficientnet_kwargs(arch))


def test_vit_latency_keys_name_tokens_width_heads_and_mlp_ratio():
    from dnatool.profile.lut import layer_keys

    space = load_space("vit-tiny")
    c = next(i for i, cell in enumerate(space.blocks[0].cells) if cell.layers == 2)
    keys = layer_keys(space, 0, (c, (0, 1)))
    width = space.blocks[0].cells[c].width
    assert keys[0] != keys[1]
    assert f"x{width}x8x8" in keys[1] and "|e2|" in keys[0] and "|e4|" in keys[1]
    assert f"|h{width // 16}" in keys[0]


@pytest.mark.slow  # two short supernet trainings, a retraining and an export through the CLI
@pytest.mark.parametrize("recipe", ["dna-vit-tiny", "dnapp-vit-tiny"])
def test_dna_and_dnapp_search_a_vit_that_retrains_and_exports(cli, recipe, tmp_path):
    teacher = _teacher_run(tmp_path)
    run = tmp_path / "run"
    overrides = [f"teacher={teacher}", "epochs=1", "max_steps_per_epoch=3", "rate_per_class=4"]
    args = [x for o in overrides for x in ("-o", o)]
    assert cli("train", recipe, *args, "--out", str(run)).code == 0
    cut = json.loads((run / "teacher.json").read_text())
    assert "resampled_to" in json.dumps(cut)
    assert cli("rate", str(run)).code == 0
    space = load_space("vit-tiny")
    for k, block in enumerate(space.blocks):
        assert len(np.load(run / "scores" / f"block_{k}.npz")["scores"]) == block.paths
    lut = tmp_path / "lut.json"
    measured = cli(
        "profile", "measure", "--device", "ort-cpu", "--space", "vit-tiny", "--quick",
        "--out", str(lut),
    )  # fmt: skip
    assert measured.code in (0, 1), measured.stderr  # 1: a quick table may fail its hold-out
    lut_args = ["--lut", str(lut), "--force"]  # --force: a quick table may fail its hold-out
    loose = cli("search", str(run), "--latency", "1s", *lut_args, "--out", str(tmp_path / "s.json"))
    assert loose.code == 0, loose.stderr
    front = [p["latency_ms"] for p in json.loads((tmp_path / "s.json").read_text())["front"]]
    budget = (min(front) + max(front)) / 2
    searched = cli("search", str(run), "--latency", f"{budget}ms", *lut_args, "--json")
    assert searched.code == 0, searched.stderr
    result = json.loads(searched.stdout)
    assert result["latency_ms"] <= budget and result["arch"]["meta"]["space"] == "vit-tiny"
    model = tmp_path / "model"
    retrain = ["retrain", str(run / "search.json"), "retrain-vit-tiny", "-o", "epochs=1"]
    assert cli(*retrain, "--out", str(model)).code == 0
    exported = cli("export", str(model), "--onnx", str(tmp_path / "m.onnx"), "--json")
    assert exported.code == 0, exported.stderr
    report = json.loads(exported.stdout)
    assert report["passed"] and report["max_abs_diff"] <= 1e-4 and report["trained"]
    if recipe == "dna-vit-tiny":
        _served_like_onnxruntime(tmp_path / "m.onnx")
        _upernet_on_it_trains_a_step_and_predicts(model, tmp_path)


def _served_like_onnxruntime(onnx_path: Path) -> None:
    """`dnatool serve` answers the KServe v2 protocol with what onnxruntime computes."""
    import signal

    import onnxruntime as ort
    from test_serve import _client, _input, _start

    proc, port, _ = _start(str(onnx_path), "--max-batch", "2")
    try:
        x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
        out = _client(port).infer(onnx_path.stem, [_input(x)]).as_numpy("logits")
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(out, session.run(None, {"input": x})[0], atol=1e-5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def _upernet_on_it_trains_a_step_and_predicts(model: Path, tmp_path: Path) -> None:
    """The searched, retrained ViT as an mmseg backbone (its weights loaded): MultiLevelNeck +
    UperNet build, take a training step and predict."""
    pytest.importorskip("mmseg")
    from openmmlab_support import cpu_config, install_mmcv_ext_placeholder

    from dnatool.backbones.configs import write_config

    install_mmcv_ext_placeholder()
    from mmengine.registry import init_default_scope
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    cfg = cpu_config(write_config(str(model), tmp_path / "upernet.py", "upernet", num_classes=5))
    assert cfg.model.neck.type == "MultiLevelNeck" and cfg.model.backbone.init_cfg
    init_default_scope("mmseg")
    segmentor = MODELS.build(cfg.model)
    segmentor.init_weights()
    trained = torch.load(model / "model.pt", weights_only=True)["state_dict"]
    key = next(k for k in trained if k.startswith("blocks.1."))
    assert torch.equal(segmentor.backbone.state_dict()[key], trained[key])
    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=(32, 32), ori_shape=(32, 32)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, 32, 32), generator=gen))
        samples.append(sample)
    inputs = torch.randn(2, 3, 32, 32, generator=gen)
    segmentor.train()
    losses = segmentor.loss(inputs, samples)
    total = sum(v for k, v in losses.items() if "loss" in k)
    total.backward()
    assert (
        torch.isfinite(total)
        and segmentor.backbone.blocks[1][0].block.attn.qkv.weight.grad is not None
    )
    segmentor.eval()
    with torch.no_grad():
        preds = segmentor.predict(inputs, samples)
    assert preds[0].pred_sem_seg.data.shape == (1, 32, 32)


def test_scaling_a_vit_keeps_its_head_dim():
    """Compound scaling rounds a transformer layer's width to whole heads of the same size, so
    the scaled network builds (rounding to 8 would give 424 = 12 heads of 35.3)."""
    from dnatool.arch.scale import scale_arch

    arch = resolve_arch(str(REPO / "recipes" / "arch" / "dna-vit-example.json"))
    scaled = scale_arch(arch, 1.1, 1.2, 224)
    patch = next(b for stage in scaled.stages for b in stage if b.type == "pe")
    assert patch.repeat == 1  # deeper networks do not embed patches twice
    for before, after in zip(arch.stages, scaled.stages, strict=True):
        for a, b in zip(before, after, strict=True):
            if a.type == "vt":
                assert b.out // b.heads == a.out // a.heads == 32 and b.out % b.heads == 0
                assert abs(b.out - 1.1 * a.out) <= 16
    model = build_model(scaled.replace(resolution=64))
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_detection_configs_refuse_a_vit_in_one_line_naming_the_way_out():
    from dnatool.backbones.configs import render_config

    with pytest.raises(BadInput, match="--kind upernet"):
        render_config(str(REPO / "recipes" / "arch" / "dna-vit-example.json"), "retinanet")


def test_a_vit_teacher_on_the_same_grid_is_cut_without_resampling(tmp_path):
    """DNA+ on a ViT space: the previous generation's ViT supervises the next with its own
    blocks' outputs (its deepest stages on the 8x8 grid)."""
    from dnatool.nn.teacher import build_teacher

    space = load_space("vit-tiny")
    arch = space.to_arch(space.example())
    save_model_run(tmp_path / "vit", build_model(arch), arch, {}, {})
    teacher = build_teacher(str(tmp_path / "vit"), space, pretrained=False)
    assert teacher.cut.grid is None
    assert teacher.cut.stages == (1, 2, 3)  # after the patch embedding's stage 0
    assert [s[0] for s in teacher.cut.shapes] == [stage[-1].out for stage in arch.stages[1:]]

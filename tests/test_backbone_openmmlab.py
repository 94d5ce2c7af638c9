"""`dnatool.DNABackbone`: registry resolution from mmseg / mmdet, ARCH forms, weights, freezing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from openmmlab_support import SMALL_ARCH, install_mmcv_ext_placeholder

from dnatool.arch.resolve import resolve_arch
from dnatool.backbones.levels import feature_levels
from dnatool.errors import BadInput
from dnatool.nn.model_run import DEFAULT_PREPROCESS, save_model_run
from dnatool.nn.timm_adapter import build_model

pytest.importorskip("mmengine")
install_mmcv_ext_placeholder()  # mmcv-lite has no compiled ops: see openmmlab_support's docstring

from dnatool.backbones.openmmlab import MODELS, DNABackbone  # noqa: E402


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    torch.manual_seed(0)
    spec = resolve_arch(SMALL_ARCH, stem=16, head=64, resolution=64, num_classes=5, name="small")
    run = tmp_path_factory.mktemp("run")
    save_model_run(run, build_model(spec), spec, {**DEFAULT_PREPROCESS, "resolution": 64}, {})
    return run, spec


def test_module_imports_mmengine_only():
    code = (
        "import sys, dnatool.backbones.openmmlab; "
        "print([m for m in sys.modules if m.split('.')[0] in ('mmseg', 'mmdet', 'mmcv')])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_scoped_type_resolves_from_mmseg_and_mmdet_registries():
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmseg.registry import MODELS as MMSEG_MODELS

    assert MODELS.scope == "dnatool"
    assert MMSEG_MODELS.get("dnatool.DNABackbone") is DNABackbone
    assert MMDET_MODELS.get("dnatool.DNABackbone") is DNABackbone
    built = MMSEG_MODELS.build(
        dict(type="dnatool.DNABackbone", arch=SMALL_ARCH, out_indices=(1, 2))
    )
    assert isinstance(built, DNABackbone)


def test_every_arch_form_gives_the_same_levels(model_run, tmp_path):
    run, spec = model_run
    arch_file = tmp_path / "arch.json"
    arch_file.write_text(spec.to_json())
    arch_def_file = tmp_path / "arch_def.json"  # a timm arch_def list, not a dnatool arch file
    arch_def_file.write_text(json.dumps(SMALL_ARCH))
    search = tmp_path / "search.json"
    search.write_text(json.dumps({"format": "dnatool.search", "winner": {"arch": spec.to_dict()}}))
    forms = [
        SMALL_ARCH,
        str(arch_file),
        str(arch_def_file),
        str(search),
        str(run),
        spec.to_dict(),
        json.dumps(SMALL_ARCH),
    ]
    expected = [feature_levels(spec)[i].channels for i in (1, 2, 3, 4)]
    x = torch.randn(1, 3, 64, 64)
    for form in forms:
        backbone = DNABackbone(arch=form).eval()
        outs = backbone(x)
        assert isinstance(outs, tuple) and [o.shape[1] for o in outs] == expected
        assert [o.shape[-1] for o in outs] == [16, 8, 4, 2]
    b0 = DNABackbone(arch="efficientnet_b0", out_indices=(1, 2, 3, 4))
    assert b0.out_channels == (24, 40, 112, 320)
    with pytest.raises(BadInput, match="out of range"):
        DNABackbone(arch=SMALL_ARCH, out_indices=(1, 2, 3, 4, 5))


def test_pretrained_init_loads_model_run_weights(model_run, tmp_path):
    run, spec = model_run
    reference = build_model(spec)
    reference.load_state_dict(torch.load(run / "model.pt", weights_only=True)["state_dict"])
    for checkpoint in (str(run), str(run / "model.pt")):
        backbone = DNABackbone(
            arch=str(run), init_cfg=dict(type="Pretrained", checkpoint=checkpoint)
        )
        backbone.init_weights()
        torch.testing.assert_close(
            backbone.blocks[2][0].conv_pw.weight, reference.blocks[2][0].conv_pw.weight
        )
    # an OpenMMLab segmentor checkpoint: weights under `backbone.`
    mm = tmp_path / "iter_10.pth"
    torch.save(
        {"meta": {}, "state_dict": {f"backbone.{k}": v for k, v in reference.state_dict().items()}},
        mm,
    )
    backbone = DNABackbone(
        arch=spec.to_dict(),
        init_cfg=dict(type="Pretrained", checkpoint=str(mm), prefix="backbone."),
    )
    backbone.init_weights()
    torch.testing.assert_close(backbone.conv_stem.weight, reference.conv_stem.weight)


def test_bad_checkpoints_are_refused(model_run, tmp_path):
    run, _ = model_run
    wrong = DNABackbone(
        arch="efficientnet_b0", init_cfg=dict(type="Pretrained", checkpoint=str(run))
    )
    with pytest.raises(BadInput, match="do not fit"):
        wrong.init_weights()
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(BadInput, match="not a loadable checkpoint"):
        DNABackbone(
            arch=SMALL_ARCH, init_cfg=dict(type="Pretrained", checkpoint=str(junk))
        ).init_weights()
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"state_dict": {}, "obj": object()}, unsafe)  # needs pickle: weights_only refuses
    with pytest.raises(BadInput, match="not a loadable checkpoint"):
        DNABackbone(
            arch=SMALL_ARCH, init_cfg=dict(type="Pretrained", checkpoint=str(unsafe))
        ).init_weights()


def test_frozen_stages_as_mmseg():
    backbone = DNABackbone(arch=SMALL_ARCH, frozen_stages=2)
    backbone.train()
    frozen = [backbone.conv_stem, backbone.bn1, backbone.blocks[0], backbone.blocks[1]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(not m.training for f in frozen for m in f.modules())
    assert all(p.requires_grad for p in backbone.blocks[2].parameters())
    assert backbone.blocks[2].training
    before = backbone.bn1.running_mean.clone()
    backbone(torch.randn(2, 3, 32, 32)).__len__()
    torch.testing.assert_close(backbone.bn1.running_mean, before)  # frozen BN: statistics untouched
    with pytest.raises(BadInput, match="frozen_stages"):
        DNABackbone(arch=SMALL_ARCH, frozen_stages=len(SMALL_ARCH) + 1)


def test_norm_eval_keeps_batchnorm_statistics():
    free = DNABackbone(arch=SMALL_ARCH, norm_eval=False).train()
    pinned = DNABackbone(arch=SMALL_ARCH, norm_eval=True).train()
    pinned.load_state_dict(free.state_dict())
    x = torch.randn(2, 3, 32, 32)
    bn = pinned.blocks[3][0].bn1
    before = bn.running_mean.clone()
    pinned(x)
    free(x)
    torch.testing.assert_close(bn.running_mean, before)
    assert not torch.equal(free.blocks[3][0].bn1.running_mean, before)
    assert pinned.training and all(p.requires_grad for p in pinned.parameters())

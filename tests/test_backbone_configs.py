"""OpenMMLab configs written by dnatool: channels agree with the built backbone, deploy/ is current."""

from __future__ import annotations

import ast
import json

import pytest
import timm
from openmmlab_support import DEPLOY, SMALL_ARCH

from dnatool.arch.resolve import resolve_arch
from dnatool.backbones.configs import (
    DEPLOY_FILES,
    DEPLOY_VIT_FILE,
    KINDS,
    pyformat,
    render_config,
    write_deploy_configs,
)
from dnatool.errors import BadInput
from dnatool.nn.model_run import DEFAULT_PREPROCESS, save_model_run
from dnatool.nn.timm_adapter import build_model

NARROW = [
    ["ir_r1_k3_s2_e3_c8"],
    ["ir_r1_k3_s2_e3_c12"],
    ["ir_r1_k3_s1_e3_c14", "ir_r1_k3_s1_e3_c16"],
    ["ir_r1_k5_s2_e6_c20"],
    ["ir_r1_k3_s2_e3_c28"],
]


def _variables(text: str) -> dict:
    """The config's top-level assignments (every value is a Python literal or a dict(...) call)."""
    namespace: dict = {}
    exec(compile(ast.parse(text), "<config>", "exec"), {"__builtins__": {"dict": dict}}, namespace)
    return namespace


def _built_channels(arch, model: dict) -> list[int]:
    """Channels of the real timm network for the config's out_indices (not levels.py's arithmetic)."""
    backbone = model["backbone"]
    net = timm.create_model(
        "dnatool_model",
        arch=arch,
        features_only=True,
        out_indices=backbone["out_indices"],
        output_stride=backbone.get("output_stride", 32),
    )
    return net.feature_info.channels()


def setup_module() -> None:
    import dnatool.backbones.timm_models  # noqa: F401  (registers `dnatool_model` in timm)


@pytest.mark.parametrize(
    "arch", ["efficientnet_b0", SMALL_ARCH, NARROW], ids=["b0", "small", "narrow"]
)
@pytest.mark.parametrize("kind", KINDS)
def test_every_in_channels_matches_the_built_backbone(kind, arch):
    model = _variables(render_config(arch, kind))["model"]
    channels = _built_channels(arch, model)
    if kind in ("retinanet", "faster_rcnn"):
        assert model["neck"]["in_channels"] == channels
        return
    head = model["decode_head"]
    if isinstance(head["in_channels"], list):
        assert head["in_channels"] == [channels[i] for i in head["in_index"]]
    else:
        assert head["in_channels"] == channels[head["in_index"]]
    if "c1_in_channels" in head:
        assert head["c1_in_channels"] == channels[0]
    aux = model["auxiliary_head"]
    assert aux["in_channels"] == channels[aux["in_index"]]


def test_deploy_configs_are_the_writer_output(tmp_path):
    written = write_deploy_configs(tmp_path)
    assert len(written) == len(DEPLOY_FILES) + 1 == 6
    for rel in [*DEPLOY_FILES.values(), DEPLOY_VIT_FILE]:
        assert (DEPLOY / rel).read_text() == (tmp_path / rel).read_text(), (
            f"regenerate deploy/{rel}"
        )


def test_model_run_config_embeds_arch_and_checkpoint(tmp_path):
    spec = resolve_arch(SMALL_ARCH, stem=16, resolution=64, name="small")
    run = tmp_path / "run"
    save_model_run(run, build_model(spec), spec, DEFAULT_PREPROCESS, {})
    model = _variables(render_config(str(run), "upernet"))["model"]
    backbone = model["backbone"]
    assert resolve_arch(backbone["arch"]) == spec
    assert backbone["init_cfg"] == dict(type="Pretrained", checkpoint=str(run / "model.pt"))


def _backbone_entry(kind: str, checkpoint: str | None = None) -> dict:
    return _variables(render_config(SMALL_ARCH, kind, checkpoint=checkpoint))["model"]["backbone"]


@pytest.mark.parametrize("kind", ["retinanet", "faster_rcnn"])
def test_detector_freezes_the_stem_only_with_pretrained_weights(kind, tmp_path):
    random = _backbone_entry(kind)
    assert "init_cfg" not in random
    assert random["frozen_stages"] == -1 and random["norm_eval"] is False
    weights = str(tmp_path / "model.pt")
    pretrained = _backbone_entry(kind, checkpoint=weights)
    assert pretrained["init_cfg"] == dict(type="Pretrained", checkpoint=weights)
    assert pretrained["frozen_stages"] == 1 and pretrained["norm_eval"] is True


@pytest.mark.parametrize("kind", ["deeplabv3plus", "aspp", "upernet"])
def test_segmentor_backbone_always_trains_whole(kind, tmp_path):
    for checkpoint in (None, str(tmp_path / "model.pt")):
        backbone = _backbone_entry(kind, checkpoint=checkpoint)
        assert backbone["frozen_stages"] == -1 and backbone["norm_eval"] is False


def test_pyformat_round_trips():
    value = dict(a=[1, (2,), {"x-y": 3.5}], b=dict(c=None, d="s" * 120, e=(1, 2)), f=[], g=True)
    assert _variables(f"v = {pyformat(value)}")["v"] == value
    assert all(len(line) <= 100 or "s" * 90 in line for line in pyformat(value).splitlines())


def test_cli_writes_config_and_reports_levels(cli, tmp_path):
    out = tmp_path / "seg.py"
    result = cli(
        "backbone",
        "config",
        json.dumps(SMALL_ARCH),
        "--mmseg",
        str(out),
        "--kind",
        "deeplabv3plus",
        "--num-classes",
        "5",
        "--json",
    )
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["channels"] == [16, 24, 32, 48] and summary["strides"] == [4, 8, 16, 16]
    model = _variables(out.read_text())["model"]
    assert model["decode_head"]["num_classes"] == 5


@pytest.mark.parametrize(
    "args,message",
    [
        (["efficientnet_b0", "--mmseg", "x.py", "--kind", "retinanet"], "not an mmseg kind"),
        (["efficientnet_b0", "--mmseg", "x.py", "--mmdet", "y.py"], "exactly one"),
        (["efficientnet_b0"], "exactly one"),
        (["no-such-arch", "--mmdet", "d.py"], "no-such-arch"),
    ],
)
def test_cli_bad_input_exits_2(capsys, monkeypatch, tmp_path, args, message):
    from dnatool.cli.main import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["backbone", "config", *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_arch_without_stride4_level_is_refused():
    with pytest.raises(BadInput, match="stride >= 4"):
        render_config([["ds_r1_k3_s1_e1_c8"]], "upernet")


def test_export_writes_the_mmseg_config(capsys, tmp_path):
    from dnatool.cli.main import main

    out = tmp_path / "seg.py"
    with pytest.raises(SystemExit) as exit_info:
        main(["export", json.dumps(SMALL_ARCH), "--mmseg-config", str(out), "--json"])
    assert exit_info.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["config"] == str(out) and summary["kind"] == "deeplabv3plus"
    assert out.read_text() == render_config(SMALL_ARCH, "deeplabv3plus")

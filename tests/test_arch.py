from __future__ import annotations

import json
import re

import pytest
import timm

from dnatool.arch.resolve import EFFICIENTNET_B0, resolve_arch
from dnatool.arch.spec import ArchSpec, BlockSpec, parse_block
from dnatool.errors import BadInput
from dnatool.nn.timm_adapter import build_model, count_macs, count_params


@pytest.mark.parametrize(
    "text",
    [
        "ir_r2_k3_s2_e6_c24_se0.25",
        "ds_r1_k3_s1_e1_c16_se0.25",
        "ir_r1_k5_s1_e3_c40",
        "er_r1_k3_s1_e4_c24_nre_noskip",
        "cn_r1_k1_s1_c320",
        "ir_r1_k3_a1_p1_s2_e6_c80_se0.25_nhs",
    ],
)
def test_block_string_round_trip_is_lossless(text):
    spec = parse_block(text)
    assert parse_block(spec.to_str()) == spec
    assert spec.to_str() == parse_block(spec.to_str()).to_str()


@pytest.mark.parametrize(
    "text",
    [
        "ir_r1_k3_s1_e1.2345678_c24_se0.123456789",
        "ir_r1_k3_s1_e4.000001_c24_se0.0000015",
        "ir_r1_k3_s1_e6.0_c24_se0.250",
    ],
)
def test_fractional_values_survive_the_round_trip(text):
    """`:g` formatting kept 6 digits: e1.2345678 came back as e1.23457."""
    spec = parse_block(text)
    again = parse_block(spec.to_str())
    exp, se = (float(t.lstrip("es")) for t in text.split("_")[4:7:2])
    assert (again.exp, again.se) == (spec.exp, spec.se) == (exp, se)


def test_canonical_numbers_stay_short():
    assert parse_block("ir_r1_k3_s1_e6.0_c24_se0.250").to_str() == "ir_r1_k3_s1_e6_c24_se0.25"
    assert "_e1.2345678_" in parse_block("ir_r1_k3_s1_e1.2345678_c24").to_str()
    arch = ArchSpec.from_arch_def([["ir_r1_k3_s2_e1.2345678_c24_se0.123456789"]])
    assert ArchSpec.from_dict(json.loads(arch.to_json())) == arch


def test_block_fields_decoded():
    spec = parse_block("ir_r2_k5_s2_e6_c40_se0.25")
    assert spec == BlockSpec(type="ir", repeat=2, kernel=5, stride=2, exp=6.0, out=40, se=0.25)


@pytest.mark.parametrize(
    "text,token",
    [
        ("ir_r2_k3_x9_c24", "'x9'"),
        ("zz_r1_k3_c8", "'zz'"),
        ("ir_r1_k3_s3_c8", "stride"),
        ("ir_r1_k3_s1_e6", "c<N>"),
        ("ir_r1_k4_c8", "odd"),
        ("ir_k3_k5_c8", "'k5'"),
    ],
)
def test_strict_parse_names_the_problem(text, token):
    with pytest.raises(BadInput, match=token.replace("<", ".").replace(">", ".")):
        parse_block(text)


def test_efficientnet_b0_is_timms_own_network():
    arch = resolve_arch("efficientnet_b0")
    model = build_model(arch)
    reference = timm.create_model("efficientnet_b0")
    assert count_params(model) == count_params(reference) == 5_288_548
    assert list(model.state_dict()) == list(reference.state_dict())
    macs = count_macs(model, (1, 3, 224, 224))
    assert abs(macs / 385.8e6 - 1) < 0.005


def test_arch_file_round_trip_through_json(tmp_path):
    arch = ArchSpec.from_arch_def(EFFICIENTNET_B0, name="b0", resolution=240)
    path = tmp_path / "arch.json"
    path.write_text(arch.to_json())
    again = resolve_arch(str(path))
    assert again == arch and again.arch_def == EFFICIENTNET_B0 and again.resolution == 240


def test_every_arch_form_resolves_to_the_same_network(tmp_path):
    arch = resolve_arch(EFFICIENTNET_B0)
    (tmp_path / "def.json").write_text(json.dumps(EFFICIENTNET_B0))
    result = {"format": "dnatool.search", "winner": {"arch": arch.to_dict()}}
    (tmp_path / "search.json").write_text(json.dumps(result))
    run = tmp_path / "run"
    run.mkdir()
    (run / "arch.json").write_text(arch.to_json())
    forms = [
        json.dumps(EFFICIENTNET_B0),
        str(tmp_path / "def.json"),
        str(tmp_path / "search.json"),
        str(run),
        arch.to_dict(),
    ]
    assert all(resolve_arch(form).arch_def == arch.arch_def for form in forms)


@pytest.mark.parametrize(
    "content,message",
    [
        ("{not json", "not valid JSON"),
        ('{"format": "dnatool.arch", "version": 9, "arch_def": []}', "version"),
        (
            '{"format": "dnatool.arch", "version": 1, "arch_def": [["ir_r1_k3_c8"]], "colour": 1}',
            "'colour'",
        ),
        (
            '{"format": "dnatool.arch", "version": 1, "arch_def": [["ir_r1_k3_c8"]], "stem": -3}',
            "stem",
        ),
        ('{"hello": 1}', "not a dnatool arch"),
    ],
)
def test_malformed_arch_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(BadInput, match=message):
        resolve_arch(str(path))


def test_stride_after_the_first_block_of_a_stage_is_refused():
    with pytest.raises(BadInput, match="first block of a stage"):
        resolve_arch([["ds_r1_k3_s1_e1_c16"], ["ir_r1_k3_s2_e6_c24", "ir_r1_k3_s2_e6_c24"]])


def test_unknown_arch_reference():
    with pytest.raises(BadInput, match="not a file"):
        resolve_arch("no/such/arch.json")


def test_layers_built_alone_match_the_network_layers():
    from dnatool.nn.timm_adapter import build_layers

    arch = resolve_arch("efficientnet_b0")
    model = build_model(arch)
    alone = build_layers(24, list(arch.stages[2]), arch.act)
    assert [type(m) for m in alone] == [type(m) for m in model.blocks[2]]
    assert [n for n, _ in alone.named_parameters()] == [
        n for n, _ in model.blocks[2].named_parameters()
    ]
    assert [p.shape for p in alone.parameters()] == [p.shape for p in model.blocks[2].parameters()]


def test_arch_def_object_carries_stem_and_head(cli, tmp_path):
    """contracts.md: an arch_def may carry stem/head widths, as `{"arch_def", "stem", "head"}`."""
    path = tmp_path / "wide.json"
    path.write_text(json.dumps({"arch_def": EFFICIENTNET_B0, "stem": 48, "head": 1536}))
    arch = resolve_arch(str(path))
    assert (arch.stem, arch.head, arch.arch_def) == (48, 1536, EFFICIENTNET_B0)
    model = build_model(arch)
    assert model.conv_stem.out_channels == 48 and model.conv_head.out_channels == 1536
    inline = json.dumps({"arch_def": EFFICIENTNET_B0, "stem": 48, "head": 1536})
    for ref in (str(path), inline):
        shown = json.loads(cli("arch", "show", ref, "--json").stdout)
        assert shown["params"] == count_params(model) != 5_288_548


@pytest.mark.parametrize("key", ["foo", "stages", "format_"])
def test_unknown_keys_beside_an_arch_def_are_named(tmp_path, key):
    path = tmp_path / "def.json"
    path.write_text(json.dumps({"arch_def": EFFICIENTNET_B0, key: 1}))
    with pytest.raises(BadInput, match=f"unknown field '{key}'"):
        resolve_arch(str(path))


@pytest.mark.parametrize(
    "field,value,message",
    [("name", 7, "'name' must be a string"), ("meta", [1], "'meta' must be an object")],
)
def test_name_and_meta_types_are_checked(tmp_path, field, value, message):
    with pytest.raises(BadInput, match=message):
        ArchSpec.from_arch_def(EFFICIENTNET_B0, **{field: value})
    data = {**ArchSpec.from_arch_def(EFFICIENTNET_B0).to_dict(), field: value}
    (tmp_path / "arch.json").write_text(json.dumps(data))
    with pytest.raises(BadInput, match=message):
        resolve_arch(str(tmp_path / "arch.json"))


@pytest.mark.parametrize(
    "text,message",
    [
        ("ir_r1_k3_s1_e6_c99999999999", "width c99999999999 is out of range (1..8192)"),
        ("ir_r1_k3_s1_e6_c0", "width c0 is out of range (1..8192)"),
        ("ir_r1_k3_s1_e6_c8193", "width c8193 is out of range (1..8192)"),
        ("ir_r0_k3_s1_e6_c8", "repeat r0 is out of range (1..64)"),
        ("ir_r65_k3_s1_e6_c8", "repeat r65 is out of range (1..64)"),
        ("ir_r1_k33_s1_e6_c8", "kernel k33 is out of range (odd, 1..31)"),
        ("ir_r1_k4_s1_e6_c8", "kernel k4 is out of range (odd, 1..31)"),
        ("ir_r1_k0_s1_e6_c8", "kernel k0 is out of range (odd, 1..31)"),
        ("ir_r1_k3_a0_s1_e6_c8", "kernel a0 is out of range (odd, 1..31)"),
        ("ir_r1_k3_p0_s1_e6_c8", "kernel p0 is out of range (odd, 1..31)"),
        ("ir_r1_k3_p2_s1_e6_c8", "kernel p2 is out of range (odd, 1..31)"),
        ("ir_r1_k3_a33_s1_e6_c8", "kernel a33 is out of range (odd, 1..31)"),
        ("ir_r1_k3_s3_e6_c8", "stride s3 is out of range (1 or 2)"),
        ("ir_r1_k3_s0_e6_c8", "stride s0 is out of range (1 or 2)"),
        ("ir_r1_k3_s1_e0_c8", "expansion e0 is out of range (> 0 and <= 64)"),
        ("ir_r1_k3_s1_e0.0_c8", "expansion e0.0 is out of range (> 0 and <= 64)"),
        ("ir_r1_k3_s1_e64.5_c8", "expansion e64.5 is out of range (> 0 and <= 64)"),
        ("ir_r1_k3_s1_e6_c8_se1.5", "SE ratio se1.5 is out of range (0..1)"),
        ("ir_r1_k3_s1_e6_c8_gs0", "group size gs0 is out of range (>= 1)"),
    ],
)
def test_impossible_block_values_are_refused_with_the_bound(text, message):
    with pytest.raises(BadInput) as caught:
        parse_block(text)
    assert str(caught.value) == f"block {text!r}: {message}"
    with pytest.raises(BadInput, match=re.escape(message)):
        resolve_arch([[text]])


@pytest.mark.parametrize(
    "text,in_chs,message",
    [
        ("ir_r1_k3_s1_e6_c24_gs1000", 32, "group size gs1000 is out of range"),
        ("ir_r1_k3_s1_e6_c24_gs5", 32, "divide the 192 channels"),
        ("ir_r2_k3_s1_e6_c16_gs64", 32, "divide the 96 channels"),  # the second repeat: 16 in
        ("cn_r1_k3_s1_e1_c1_gs4", 32, "split a 32 -> 1 conv"),
        ("er_r1_k3_s1_e6_c40_gs2", 16, "split a 16 -> 96 conv"),
        ("ir_r1_k3_s1_e6_c16_se0.01", 32, "SE ratio se0.01 is out of range"),
        ("ds_r1_k3_s1_e1_c16_se0.01", 32, "squeezes 32 channels to 0"),
    ],
)
def test_group_size_and_se_are_checked_against_the_input_width(text, in_chs, message):
    """These values depend on the width entering the block: timm would assert or divide by zero."""
    parse_block(text)  # within the standalone bounds
    with pytest.raises(BadInput, match=re.escape(message)) as caught:
        ArchSpec.from_arch_def([[text]], stem=in_chs)
    assert str(caught.value).startswith(f"block {text!r}: ")


@pytest.mark.parametrize(
    "text",
    [
        "ir_r1_k3_s1_e6_c8192_se1_gs8",
        "ir_r64_k31_a31_p31_s2_e64_c8_se0.5",
        "uir_r1_k3_a3_p3_s2_e4_c24_gs8",
        "er_r1_k3_s1_e4_c32_gs8_se0.25",
        "cn_r1_k3_s1_c64_gs8",
        "ds_r1_k3_s1_e1_c16_se1",
    ],
)
def test_values_at_the_bounds_build_in_timm(text):
    import torch

    arch = ArchSpec.from_arch_def([[text]], stem=32, resolution=8, head=8192)
    assert parse_block(parse_block(text).to_str()) == parse_block(text)
    with torch.device("meta"):
        model = build_model(arch).eval()
    model(torch.zeros(1, 3, 8, 8, device="meta"))


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("resolution", 1, "'resolution': 1 is out of range (8..4096)"),
        ("resolution", 4097, "'resolution': 4097 is out of range (8..4096)"),
        ("stem", 0, "'stem': 0 is out of range (1..8192)"),
        ("head", 10**12, "'head': 1000000000000 is out of range (1..8192)"),
        ("in_chans", 9000, "'in_chans': 9000 is out of range (1..8192)"),
        ("num_classes", 0, "'num_classes': 0 is out of range (1..1000000)"),
        ("stem", 3.5, "'stem' must be an integer"),
        ("head", True, "'head' must be an integer"),
    ],
)
def test_impossible_arch_fields_are_refused(field, value, message):
    with pytest.raises(BadInput, match=re.escape(message)):
        ArchSpec.from_arch_def(EFFICIENTNET_B0, **{field: value})


def test_scaling_past_the_bounds_is_refused():
    from dnatool.arch.scale import scale_phi

    with pytest.raises(BadInput, match=r"out of range \(1\.\.8192\)"):
        scale_phi(resolve_arch("efficientnet_b0"), 40)


def test_cli_refuses_an_absurd_width_in_one_line(cli):
    result = cli("arch", "show", '[["ir_r1_k3_s1_e6_c99999999999"]]')
    assert result.code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "Error: block 'ir_r1_k3_s1_e6_c99999999999': width c99999999999 is out of range (1..8192)"
    ]


@pytest.mark.parametrize(
    "arch_ref",
    [
        '{"arch_def": [["ir_r1_k3_s1_e6_c24"]], "resolution": 1}',
        '[["ir_r1_k3_a0_s1_e6_c24"]]',
        '[["ir_r1_k3_s1_e6_c24_gs1000"]]',
    ],
)
def test_cli_refuses_impossible_values_before_building(cli, arch_ref):
    result = cli("arch", "show", arch_ref)
    assert result.code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "out of range" in lines[0], result.stderr


def test_a_search_result_is_read_only_with_its_format_tag(tmp_path):
    arch = resolve_arch(EFFICIENTNET_B0)
    path = tmp_path / "search.json"
    path.write_text(json.dumps({"winner": {"arch": arch.to_dict()}}))
    with pytest.raises(BadInput, match="not a dnatool search result"):
        resolve_arch(str(path))
    path.write_text(json.dumps({"format": "dnatool.search", "winner": {"score": 1.0}}))
    with pytest.raises(BadInput, match="winner has no arch"):
        resolve_arch(str(path))

from __future__ import annotations

import json

import numpy as np
import pytest

from dnatool.arch.space import list_spaces, load_space
from dnatool.errors import BadInput
from dnatool.nn.timm_adapter import build_model


def test_paper_space_sizes_are_exact():
    assert (
        load_space("dna-mbconv").size
        == 468 * 468 * 1548 * 3888 * 23328 * 6
        == 184_509_051_277_344_768
    )
    assert load_space("dna-mbconv-small").size == 65_751_654_334_464


def test_paper_space_structure():
    space = load_space("dna-mbconv")
    assert [b.width for b in space.blocks] == [24, 40, 80, 112, 192, 320]
    assert [b.stride for b in space.blocks] == [2, 2, 2, 1, 2, 1]
    assert [[c.layers for c in b.cells] for b in space.blocks] == [
        [2, 3, 3],
        [2, 3, 3],
        [2, 3, 4],
        [4, 4, 4],
        [5, 5, 5],
        [1],
    ]
    assert [op.name for op in space.blocks[0].ops] == [
        "k3_e3",
        "k3_e6",
        "k5_e3",
        "k5_e6",
        "k7_e3",
        "k7_e6",
    ]
    assert space.fixed[0][0].to_str() == "ds_r1_k3_s1_e1_c16_se0.25"
    assert (space.stem, space.head, space.resolution) == (32, 1280, 224)
    assert [space.block_in_resolution(k) for k in range(6)] == [112, 56, 28, 14, 14, 7]


def test_sampled_architectures_build_and_run():
    import torch

    space = load_space("tiny")
    rng = np.random.default_rng(0)
    for _ in range(3):
        choices = space.sample(rng)
        arch = space.to_arch(choices)
        assert arch.meta["choices"] == [[c, list(p)] for c, p in choices]
        logits = build_model(arch).eval()(torch.zeros(2, 3, 32, 32))
        assert logits.shape == (2, 10)


def test_to_arch_puts_stride_on_first_layer_only():
    space = load_space("dna-mbconv")
    arch = space.to_arch(
        [(2, (0, 1, 2)), (0, (3, 4)), (0, (5, 0)), (0, (1, 1, 1, 1)), (0, (2,) * 5), (0, (5,))]
    )
    assert arch.arch_def[1] == [
        "ir_r1_k3_s2_e3_c24_se0.25",
        "ir_r1_k3_s1_e6_c24_se0.25",
        "ir_r1_k5_s1_e3_c24_se0.25",
    ]
    assert arch.stage_strides == [2, 4, 8, 16, 16, 32, 32]


def test_bad_choices_and_unknown_spaces():
    space = load_space("tiny")
    with pytest.raises(BadInput, match="does not fit"):
        space.to_arch([(0, (0, 0)), (0, (0, 0)), (0, (0, 0))])
    with pytest.raises(BadInput, match="did you mean 'tiny'"):
        load_space("tinyy")


def test_space_list_shows_every_builtin_space_with_its_exact_size(cli):
    """What `dnatool space list` prints (plain and --json) is every space and its exact size."""
    expected = {
        "dna-mbconv": 184_509_051_277_344_768,
        "dna-mbconv-small": 65_751_654_334_464,
        "tiny": 25_600,
    }
    assert set(list_spaces()) >= set(expected)
    listed = json.loads(cli("space", "list", "--json").stdout)["spaces"]
    assert {s["name"]: s["size"] for s in listed if s["name"] in expected} == expected
    assert {s["name"]: s["blocks"] for s in listed if s["name"] in expected} == {
        "dna-mbconv": 6,
        "dna-mbconv-small": 6,
        "tiny": 3,
    }
    lines = cli("space", "list").stdout.splitlines()
    for name, size in expected.items():
        line = next(line for line in lines if line.split()[0] == name)
        assert f"{size:,}" in line

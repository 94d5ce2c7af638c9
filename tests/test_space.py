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
    assert [b.widths for b in space.blocks] == [(24,), (40,), (80,), (112,), (192,), (320,)]
    assert [b.stride for b in space.blocks] == [2, 2, 2, 1, 2, 1]
    # the declared cells {2,3,3} ... {5,5,5}: identical ones are merged and counted
    assert [[(c.layers, c.count) for c in b.cells] for b in space.blocks] == [
        [(2, 1), (3, 2)],
        [(2, 1), (3, 2)],
        [(2, 1), (3, 1), (4, 1)],
        [(4, 3)],
        [(5, 3)],
        [(1, 1)],
    ]
    assert not space.coupled
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
        [(1, (0, 1, 2)), (0, (3, 4)), (0, (5, 0)), (0, (1, 1, 1, 1)), (0, (2,) * 5), (0, (5,))]
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
        "dna-mbconv-w": 23_776_314_300_039_168,
        "tiny": 25_600,
        "tiny-w": 110_592,
        "hybrid-r50": 2 * 2 * (2**5 + 2**6) * (2**2 + 2**3),
        "hybrid-tiny": 10 * 16 * 12,
        "ranking-narrow": (4 + 16 + 16) ** 3,
        "ranking-narrow-many": (12 + 144 + 144) ** 3,
        "ranking-narrow-deep": (4 + 16 + 16 + 64 + 256) ** 3,
    }
    assert set(list_spaces()) >= set(expected)
    listed = json.loads(cli("space", "list", "--json").stdout)["spaces"]
    assert {s["name"]: s["size"] for s in listed if s["name"] in expected} == expected
    assert {s["name"]: s["blocks"] for s in listed if s["name"] in expected} == {
        "dna-mbconv": 6,
        "dna-mbconv-small": 6,
        "dna-mbconv-w": 6,
        "tiny": 3,
        "tiny-w": 3,
        "hybrid-r50": 4,
        "hybrid-tiny": 3,
        "ranking-narrow": 3,
        "ranking-narrow-many": 3,
        "ranking-narrow-deep": 3,
    }
    lines = cli("space", "list").stdout.splitlines()
    for name, size in expected.items():
        line = next(line for line in lines if line.split()[0] == name)
        assert f"{size:,}" in line


def _independent_counts(data: dict) -> tuple[int, int]:
    """(declared, distinct) architectures of a space's YAML, counted straight from the file by
    enumerating each block's declared cells, with no dnatool code."""
    declared = distinct = 1
    for block in data["blocks"]:
        ops = data["ops"]
        n_ops = len(ops["kernels"]) * len(ops["expansions"])
        cells = [
            (c, block["width"]) if isinstance(c, int) else (c["layers"], c["width"])
            for c in block["cells"]
        ]
        declared *= sum(n_ops**layers for layers, _ in cells)
        distinct *= sum(n_ops**layers for layers, _ in set(cells))
    return declared, distinct


@pytest.mark.parametrize(
    "name", ["dna-mbconv", "dna-mbconv-small", "dna-mbconv-w", "tiny-w", "ranking-narrow"]
)
def test_sizes_equal_an_independent_count(name, cli):
    import yaml

    from dnatool.arch.space import SPACES_DIR

    declared, distinct = _independent_counts(
        yaml.safe_load((SPACES_DIR / f"{name}.yaml").read_text())
    )
    shown = json.loads(cli("space", "show", name, "--json").stdout)
    assert (shown["size"], shown["distinct"]) == (declared, distinct)
    space = load_space(name)
    assert (space.size, space.distinct) == (declared, distinct)


def test_dna_mbconv_distinct_count_removes_the_31x_duplication():
    space = load_space("dna-mbconv")
    assert space.distinct == 252 * 252 * 1548 * 1296 * 7776 * 6 == 5_944_078_575_009_792
    assert round(space.size / space.distinct, 2) == 31.04


def test_width_spaces_are_coupled_with_their_interface_widths():
    wide = load_space("dna-mbconv-w")
    assert wide.coupled and wide.distinct == wide.size == 23_776_314_300_039_168
    assert [wide.in_widths(k) for k in range(7)] == [
        (16,),
        (24,),
        (40,),
        (80,),
        (96, 112),
        (160, 192),
        (320,),
    ]
    tiny = load_space("tiny-w")
    assert [tiny.in_widths(k) for k in range(4)] == [(8,), (16, 24), (24, 32), (40, 48)]
    with pytest.raises(BadInput, match="several input widths"):
        tiny.block_in_width(1)
    # the first layer of a block takes the previous block's width; later layers the cell's own
    layers = tiny.path_layers(1, (1, (0, 3)), in_width=24)
    assert [(la.in_width, la.in_res, la.out_width, la.out_res) for la in layers] == [
        (24, 8, 32, 4),
        (32, 4, 32, 4),
    ]
    with pytest.raises(BadInput, match="cannot enter block 1"):
        tiny.path_layers(1, (1, (0, 3)), in_width=40)
    assert tiny.chain_widths([(2, (0, 0)), (1, (0, 0)), (0, (1, 1))]) == [8, 24, 32, 40]


def test_width_space_architectures_build_and_run_with_their_widths():
    import torch

    space = load_space("tiny-w")
    choices = [(2, (0, 1)), (1, (2, 3)), (1, (0, 0))]
    arch = space.to_arch(choices)
    assert [stage[-1].split("_c")[1].split("_")[0] for stage in arch.arch_def[1:]] == [
        "24",
        "32",
        "48",
    ]
    assert build_model(arch).eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_v1_files_keep_loading_and_v2_rules(tmp_path):
    from dnatool.arch.space import space_from_dict

    v1 = {
        "name": "v1",
        "ops": {"kernels": [3], "expansions": [3]},
        "blocks": [{"width": 16, "stride": 2, "cells": [1, {"layers": 2, "channels": 16}, 2]}],
    }
    space = space_from_dict(v1)
    assert space.version == 1 and space.size == 3 and space.distinct == 2
    with pytest.raises(BadInput, match="version: 2"):
        space_from_dict(
            {**v1, "blocks": [{"width": 16, "stride": 2, "cells": [{"layers": 2, "channels": 24}]}]}
        )
    v2 = {
        **v1,
        "version": 2,
        "blocks": [{"stride": 2, "cells": [{"layers": 1, "width": 8}, {"layers": 1, "width": 16}]}],
    }
    assert space_from_dict(v2).blocks[0].widths == (8, 16)
    with pytest.raises(BadInput, match="needs a `width`"):
        space_from_dict({**v2, "blocks": [{"stride": 2, "cells": [{"layers": 1}]}]})
    with pytest.raises(BadInput, match="version 3"):
        space_from_dict({**v2, "version": 3})
    with pytest.raises(BadInput, match="unknown op type 'mamba'"):
        space_from_dict({**v2, "ops": {"type": "mamba"}})
    with pytest.raises(BadInput, match="vit ops"):  # a known type still checks its fields
        space_from_dict({**v2, "ops": {"type": "vit", "mlp_ratios": [4], "heads": 3}})
    with pytest.raises(BadInput, match="stride 1"):  # transformer layers keep the token grid
        space_from_dict({**v2, "ops": {"type": "vit", "mlp_ratios": [4], "head_dim": 8}})
    with pytest.raises(BadInput, match="cell grid"):
        grid = {"layers": [1], "widths": [8, 8]}
        space_from_dict({**v2, "blocks": [{"stride": 1, "cells": grid}]})
    with pytest.raises(BadInput, match="unknown block field 'depth'"):
        space_from_dict({**v2, "blocks": [{"stride": 2, "depth": 3, "cells": [1]}]})
    path = tmp_path / "mine.yaml"
    import yaml

    path.write_text(yaml.safe_dump(v2))
    assert load_space(str(path)).name == "v1"


def test_a_space_expresses_its_subspaces_networks_layer_for_layer():
    """`ranking-narrow-many` (12 ops) builds every `ranking-narrow` (4 ops) network as the same
    layers, so its supernets can score the narrow truth; a network it cannot build is refused
    naming the block, and a space expresses its own choices as they are."""
    import numpy as np

    from dnatool.errors import BadInput

    many, narrow = load_space("ranking-narrow-many"), load_space("ranking-narrow")
    rng = np.random.default_rng(0)
    for _ in range(20):
        choices = narrow.sample(rng)
        mapped = many.express(narrow, choices)
        assert mapped != choices  # other op indices for the same layers
        built, wanted = many.to_arch(mapped), narrow.to_arch(choices)
        assert built.stages == wanted.stages and built.stem == wanted.stem
        assert built.head == wanted.head and built.resolution == wanted.resolution
    assert many.express(narrow, [(0, (2,)), (1, (1, 3)), (2, (0, 0))]) == [
        (0, (5,)),  # k5 e3
        (1, (3, 7)),  # k3 e6, k5 e6
        (2, (1, 1)),  # k3 e3
    ]
    own = many.sample(rng)
    assert many.express(many, own) == own
    with pytest.raises(BadInput, match=r"no path for block 0 of a 'ranking-narrow-many' network"):
        narrow.express(many, [(0, (8,)), (0, (0,)), (0, (0,))])  # k7: not in the narrow space
    with pytest.raises(BadInput, match="no path for block 0 of a 'ranking' network"):
        many.express(load_space("ranking"), load_space("ranking").sample(rng))  # other widths

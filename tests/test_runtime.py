"""`dnatool.runtime`: one conversion, one session builder, one timing loop, for profile and export.

The point of the layer is that a latency table times what ships: a layer inside a profiled short
network must become the same ONNX nodes as that layer inside an exported searched network.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from dnatool.arch.space import load_space

pytest.importorskip("onnxruntime")

PACKAGE = Path(__file__).resolve().parent.parent / "dnatool"


def _calls(pattern: str) -> list[str]:
    """Files of the package (not tests) with a call matching `pattern`."""
    return [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        for _ in re.finditer(pattern, path.read_text())
    ]


def test_one_conversion_one_session_builder_one_engine_builder():
    assert _calls(r"torch\.onnx\.export\(") == ["runtime/onnx.py"]
    assert _calls(r"\.InferenceSession\(") == ["runtime/ort.py"]
    assert _calls(r"\.build_serialized_network\(") == ["runtime/tensorrt.py"]
    assert _calls(r"to_edge_transform_and_lower\(") == ["runtime/executorch.py"]
    assert _calls(r"def time_runner\(") == ["runtime/timing.py"]


def test_runtime_modules_import_no_runtime():
    code = (
        "import sys, dnatool.runtime.onnx, dnatool.runtime.ort, dnatool.runtime.timing, "
        "dnatool.runtime.tensorrt, dnatool.runtime.executorch, dnatool.cli.profile; "
        "print(sorted(m for m in ('onnx', 'onnxruntime', 'onnxslim', 'tensorrt', 'executorch') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _layers(nodes, scope: str) -> dict[int, list[str]]:
    """Op types of the nodes of each layer, by the layer's index in the scope `scope`."""
    result: dict[int, list[str]] = defaultdict(list)
    for node in nodes:
        match = re.match(scope, node.name)
        if match:
            result[int(match.group(1))].append(node.op_type)
    return dict(result)


def test_a_profiled_block_and_the_exported_winner_agree_on_every_layers_graph(
    tmp_path, monkeypatch
):
    """For every block of a searched `tiny-w` network (cells of different widths, so the first
    layer of a block depends on the previous choice): the nodes the ort-cpu backend hands to
    onnxruntime for the block's short network are, layer by layer, the nodes `dnatool export`
    writes for the same layers of the whole network (count and op types, in order)."""
    import onnx

    from dnatool.export.onnx import export_graph
    from dnatool.nn.model_run import load_model
    from dnatool.profile import measure
    from dnatool.profile.backends import BackendOptions, get_backend
    from dnatool.runtime import ort as R

    space = load_space("tiny-w")
    choices = space.sample(np.random.default_rng(4))
    arch = tmp_path / "winner.json"
    arch.write_text(space.to_arch(choices, name="winner").to_json())
    exported = onnx.load_from_string(export_graph(load_model(str(arch)))[0])

    measured: list[bytes] = []
    session = R.session
    monkeypatch.setattr(
        R, "session", lambda data, **kw: measured.append(data) or session(data, **kw)
    )
    backend = get_backend("ort-cpu", BackendOptions(threads=1))
    widths = space.chain_widths(choices)
    compared = 0
    for k, choice in enumerate(choices):
        backend.prepare(*measure.block_net(space, k, choice, 1, widths[k]))
        profiled = onnx.load_from_string(measured[-1])
        stage = len(space.fixed) + k
        whole = _layers(exported.graph.node, rf"/blocks/blocks\.{stage}/blocks\.{stage}\.(\d+)/")
        short = _layers(profiled.graph.node, r"/0/0\.(\d+)/")
        assert len(whole) == len(choice[1]) and whole == short, k
        compared += sum(len(v) for v in whole.values())
        tail = [n.op_type for n in profiled.graph.node if not n.name.startswith("/0/")]
        assert tail == ["GlobalAveragePool"]  # only the pooling that ends a short network
    assert compared > 100
    # the head after the last block, measured on its own, is the exported head as well
    backend.prepare(*measure.head_net(space, 1, widths[-1]))
    head = [n.op_type for n in onnx.load_from_string(measured[-1]).graph.node]
    tail = [
        n.op_type
        for n in exported.graph.node
        if n.name.split("/")[1] in ("conv_head", "bn2", "global_pool", "classifier")
    ]
    assert head == tail


def test_export_json_records_the_session_a_table_records(tmp_path):
    """The session options of export.json are those of an ort-cpu table's fingerprint."""
    from dnatool.export.run import export_model
    from dnatool.profile.backends import BackendOptions, get_backend

    space = load_space("tiny")
    arch = tmp_path / "a.json"
    arch.write_text(space.to_arch(space.sample(np.random.default_rng(0))).to_json())
    result = export_model(str(arch), tmp_path / "a.onnx")
    table = get_backend("ort-cpu", BackendOptions(threads=1)).fingerprint()
    assert result["ort_session"] == table["session"]
    assert (
        json.loads((tmp_path / "export.json").read_text())["ort_session"]["intra_op_threads"] == 1
    )

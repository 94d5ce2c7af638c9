"""The `xnnpack` backend and the phone artifacts: ExecuTorch programs lowered to XNNPACK, run on
this host (the `mobile` extra, installed by `make install`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dnatool.arch.space import load_space
from dnatool.nn.timm_adapter import build_model
from dnatool.profile.backends import BackendOptions, get_backend

pytest.importorskip("executorch")


def tiny_arch():
    space = load_space("tiny")
    return space.to_arch([(0, tuple(range(block.cells[0].layers))) for block in space.blocks])


def vit_arch():
    """A vit-tiny network: patch embedding, transformer layers of two widths."""
    space = load_space("vit-tiny")
    return space.to_arch([(3, (1, 0)), (1, (0,)), (0, (0, 1))])


@pytest.mark.slow  # lowers a whole network (17-25 s): the default suite stays under 10 minutes
@pytest.mark.parametrize("arch", [tiny_arch, vit_arch], ids=["mbconv", "vit"])
def test_xnnpack_program_computes_what_torch_computes(arch):
    """What is timed is the network itself: the lowered program's output equals torch's (a ViT's
    LayerNorm, attention and GELU included)."""
    from executorch.runtime import Runtime

    from dnatool.runtime.executorch import pte_bytes

    torch.manual_seed(0)
    model = build_model(arch()).eval()
    x = torch.randn(1, 3, 32, 32)
    program = Runtime.get().load_program(pte_bytes(model, tuple(x.shape)))
    (got,) = program.load_method("forward").execute([x])
    with torch.no_grad():
        want = model(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_xnnpack_backend_times_with_the_requested_threads():
    from executorch.extension.pybindings import portable_lib

    backend = get_backend("xnnpack", BackendOptions(threads=1))
    fingerprint = backend.fingerprint()
    assert fingerprint["runtime"] == "executorch" and fingerprint["threads"] == 1
    runner = backend.prepare(build_model(tiny_arch()), (1, 3, 32, 32))
    assert portable_lib._threadpool_get_thread_count() == 1
    times = runner.run(20)
    assert len(times) == 20 and all(t > 0 for t in times)
    # a second program loaded later keeps the first one's method valid (the runner owns it)
    other = backend.prepare(build_model(tiny_arch()), (1, 3, 32, 32))
    assert len(runner.run(3)) == 3 and len(other.run(3)) == 3


@pytest.mark.slow
def test_exported_op_programs_match_their_onnx_twins(cli, tmp_path):
    """`profile export-ops` with the mobile extra: every op also as .pte, computing what its ONNX does
    (slow: lowering 26 ops takes about a minute)."""
    import onnxruntime as ort
    from executorch.runtime import Runtime

    result = cli("profile", "export-ops", str(tmp_path / "ops"), "--space", "tiny", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["pte"] is True
    manifest = json.loads((tmp_path / "ops" / "manifest.json").read_text())
    assert all((tmp_path / "ops" / op["pte"]).is_file() for op in manifest["ops"])
    rng = np.random.default_rng(0)
    for op in manifest["ops"][:: max(1, len(manifest["ops"]) // 4)]:
        x = rng.standard_normal(op["input_shape"]).astype(np.float32)
        session = ort.InferenceSession(str(tmp_path / "ops" / op["onnx"]))
        (want,) = session.run(None, {manifest["input_name"]: x})
        program = Runtime.get().load_program((tmp_path / "ops" / op["pte"]).read_bytes())
        (got,) = program.load_method("forward").execute([torch.from_numpy(x)])
        np.testing.assert_allclose(got.numpy(), want, atol=1e-4, err_msg=op["key"])


def _counting_lowerings(monkeypatch) -> list[int]:
    from dnatool.runtime import executorch as E

    calls, lower = [], E._lower
    monkeypatch.setattr(E, "_lower", lambda exported: calls.append(1) or lower(exported))
    return calls


def _small() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU()
    )


def test_lowered_programs_are_cached_by_graph_and_shape_and_a_damaged_one_is_lowered_again(
    tmp_path, monkeypatch
):
    from dnatool.runtime.executorch import ProgramCache

    calls = _counting_lowerings(monkeypatch)
    cache = ProgramCache(tmp_path)
    torch.manual_seed(0)
    first = cache.program(_small(), (1, 3, 16, 16))
    torch.manual_seed(1)  # the same graph with other weights: timing needs no new lowering
    assert cache.program(_small(), (1, 3, 16, 16)) == first
    assert (len(calls), cache.hits, cache.misses) == (1, 1, 1)
    cache.program(_small(), (1, 3, 24, 24))  # another input shape
    assert len(calls) == 2
    (path,) = [p for p in tmp_path.glob("*.pte") if p.read_bytes() == first]
    path.write_bytes(first[: len(first) // 2])  # cut short: never handed to the runtime
    again = cache.program(_small(), (1, 3, 16, 16))
    assert len(again) == len(first) and len(calls) == 3 and not path.exists()


@pytest.mark.slow  # two spawned processes import torch and ExecuTorch
def test_networks_are_lowered_in_parallel_before_timing_and_then_read_from_the_cache(
    tmp_path, monkeypatch
):
    """`lower_all` with 2 processes fills the cache; timing then lowers nothing."""
    from dnatool.arch.space import load_space
    from dnatool.profile import measure

    monkeypatch.setenv("DNATOOL_CACHE_DIR", str(tmp_path))
    space = load_space("tiny")
    rng = np.random.default_rng(0)
    nets = [space.sample(rng) for _ in range(3)]
    backend = get_backend("xnnpack", BackendOptions(threads=1))
    builds = [lambda c=c: measure.whole_net(space, c, 1) for c in nets]
    assert backend.lower_all(builds, jobs=2) == 3
    assert len(list((tmp_path / "xnnpack").glob("*.pte"))) == 3
    calls = _counting_lowerings(monkeypatch)
    for build in builds:
        assert len(backend.prepare(*build()).run(2)) == 2
    assert calls == [] and backend.cache.hits == 3
    assert backend.lower_all(builds, jobs=2) == 0  # all cached: nothing to do

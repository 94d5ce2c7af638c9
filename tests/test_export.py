"""`dnatool export`: ONNX with parity proof, metadata, Triton repository, TensorRT's absence."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def _tiny_arch(tmp_path, name: str = "tiny_random") -> str:
    from dnatool.arch.space import load_space

    space = load_space("tiny")
    arch = space.to_arch(space.sample(np.random.default_rng(1)), name=name)
    path = tmp_path / f"{name}.json"
    path.write_text(arch.to_json())
    return str(path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One CLI export of a random tiny-space arch, with a Triton repository and an mmseg config."""
    from conftest import run_cli

    tmp = tmp_path_factory.mktemp("export")
    arch = _tiny_arch(tmp)
    result = run_cli(
        "export",
        arch,
        "--onnx",
        str(tmp / "out" / "tiny.onnx"),
        "--triton",
        str(tmp / "repo"),
        "--mmseg-config",
        str(tmp / "seg.py"),
        "--json",
    )
    assert result.code == 0, result.stderr
    return tmp, json.loads(result.stdout)


def test_export_parity_report_and_marking(exported):
    tmp, result = exported
    assert result["passed"] and result["max_abs_diff"] <= 1e-4
    # The check means something only if the outputs are far larger than the tolerance.
    assert result["output_abs_max"] > 1e-2
    assert result["trained"] is False and result["bn_calibrated"] is True
    assert result["real_inputs"].startswith("digits")
    assert result["ort_latency_ms"] > 0 and result["torch_latency_ms"] > 0
    report = json.loads((tmp / "out" / "export.json").read_text())
    for key in ("onnx", "max_abs_diff", "ort_latency_ms", "torch_latency_ms", "trained", "sha256"):
        assert report[key] == result[key]


def test_onnx_and_mmseg_config_are_both_reported(exported):
    from dnatool.backbones.configs import render_config

    tmp, result = exported
    written = result["mmseg_config"]
    assert written["config"] == str(tmp / "seg.py") and written["kind"] == "deeplabv3plus"
    arch = json.loads((tmp / "tiny_random.json").read_text())
    assert (tmp / "seg.py").read_text() == render_config(arch, "deeplabv3plus")
    assert written["channels"] and len(written["channels"]) == len(written["strides"])
    assert result["passed"] and result["onnx"] == str(tmp / "out" / "tiny.onnx")


def test_text_output_names_the_mmseg_config(tmp_path, capsys):
    from dnatool.cli.main import main

    config = tmp_path / "seg.py"
    args = ["export", _tiny_arch(tmp_path), "--onnx", str(tmp_path / "m.onnx")]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--mmseg-config", str(config)])
    assert exit_info.value.code == 0
    stdout = capsys.readouterr().out
    assert f"wrote {config} (deeplabv3plus)" in stdout and "parity: max abs diff" in stdout


def test_onnx_file_is_checked_dynamic_and_annotated(exported):
    import onnx
    import onnxruntime as ort

    tmp, result = exported
    proto = onnx.load(result["onnx"])
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["dnatool.preprocess"])["resolution"] == 32
    assert json.loads(meta["dnatool.arch"])["name"] == "tiny_random"
    assert meta["dnatool.trained"] == "false" and json.loads(meta["mean"])
    session = ort.InferenceSession(result["onnx"], providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    out = session.run(None, {"input": np.zeros((5, 3, 32, 32), np.float32)})[0]
    assert out.shape == (5, 10)


def test_triton_repository_config_parses(exported):
    from google.protobuf import text_format

    from dnatool.export.triton import load_model_config_proto

    tmp, _ = exported
    model_dir = tmp / "repo" / "tiny"
    assert (model_dir / "1" / "model.onnx").is_file()
    config = text_format.Parse(
        (model_dir / "config.pbtxt").read_text(), load_model_config_proto()()
    )
    assert config.name == "tiny" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 32 and config.HasField("dynamic_batching")
    assert [(t.name, list(t.dims)) for t in config.input] == [("input", [3, 32, 32])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("logits", [10])]
    assert config.input[0].data_type == config.output[0].data_type == 11  # TYPE_FP32


def _spy(monkeypatch, module, name: str, calls: list) -> None:
    """Record (model bytes, node count, kwargs) of every call, then run the real function."""
    real = getattr(module, name)

    def spy(proto, *args, **kwargs):
        calls.append((proto.SerializeToString(), len(proto.graph.node), kwargs))
        out = real(proto, *args, **kwargs)
        if name == "slim":
            calls.append((out.SerializeToString(), len(out.graph.node), "result"))
        return out

    monkeypatch.setattr(module, name, spy)


def test_export_slims_then_checks_and_infers_shapes_of_the_written_model(tmp_path, monkeypatch):
    import io
    import warnings

    import onnx
    import onnxslim
    import torch

    from dnatool.export.onnx import export_onnx
    from dnatool.nn.model_run import load_model

    checks, inferences, slims = [], [], []
    _spy(monkeypatch, onnx.checker, "check_model", checks)
    _spy(monkeypatch, onnx.shape_inference, "infer_shapes", inferences)
    _spy(monkeypatch, onnxslim, "slim", slims)
    loaded = load_model(_tiny_arch(tmp_path))
    report = export_onnx(loaded, tmp_path / "m.onnx")
    final = (tmp_path / "m.onnx").read_bytes()
    assert any(data == final and kw.get("full_check") for data, _, kw in checks)
    assert any(
        data == final and kw.get("strict_mode") and kw.get("check_type")
        for data, _, kw in inferences
    )
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, as export
        torch.onnx.export(
            loaded.model.eval(),
            (torch.zeros(1, 3, 32, 32),),
            buffer,
            dynamo=False,
            opset_version=report["opset"],
        )
    raw_nodes = len(onnx.load_from_string(buffer.getvalue()).graph.node)
    assert report["onnx_nodes_exported"] == raw_nodes == slims[0][1]
    assert slims[-1][2] == "result" and slims[-1][1] == report["onnx_nodes"]
    # the raw TorchScript graph carries Identity nodes (dropout at eval) that onnxslim removes
    assert report["onnx_nodes"] == len(onnx.load_from_string(final).graph.node) < raw_nodes
    print(f"onnxslim: {raw_nodes} -> {report['onnx_nodes']} nodes")


def test_parity_failure_refuses_the_file(tmp_path):
    from dnatool.errors import RunFailure
    from dnatool.export.onnx import export_onnx
    from dnatool.nn.model_run import load_model

    target = tmp_path / "m.onnx"
    with pytest.raises(RunFailure, match="parity failed"):
        export_onnx(load_model(_tiny_arch(tmp_path)), target, tolerance=1e-15)
    assert not target.exists()
    assert json.loads((tmp_path / "export.json").read_text())["passed"] is False


def test_precision_onnx_fp16_and_int8_run_and_agree(exported, tmp_path):
    """What a strongly typed TensorRT build consumes, checked here with onnxruntime."""
    import onnx

    from dnatool.export.inputs import real_inputs
    from dnatool.export.onnx import calibrate_untrained, to_onnx_bytes
    from dnatool.export.tensorrt import precision_onnx
    from dnatool.nn.model_run import load_model
    from dnatool.runtime.ort import session as ort_session

    loaded = load_model(_tiny_arch(tmp_path))
    calibrate_untrained(loaded)
    fp32 = tmp_path / "fp32.onnx"
    fp32.write_bytes(to_onnx_bytes(loaded))
    x, _ = real_inputs(loaded.preprocess, 3, count=16)
    ref = ort_session(fp32).run(None, {"input": x})[0]
    for precision, tol in (("fp16", 0.05), ("int8", 0.5)):
        data = precision_onnx(loaded, fp32, precision)
        ops = {n.op_type for n in onnx.load_from_string(data).graph.node}
        assert ("QuantizeLinear" in ops) == (precision == "int8")
        got = ort_session(data).run(None, {"input": x})[0]
        assert np.abs(got - ref).max() <= tol * np.abs(ref).max(), precision
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.75, precision


def _main(capsys, *argv: str) -> tuple[int, str]:
    """`dnatool ARGV` in-process (torch is already imported: no 10 s interpreter start)."""
    from dnatool.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return exit_info.value.code, capsys.readouterr().err


def test_cli_parity_failure_is_one_line_exit_1(tmp_path, capsys):
    target = tmp_path / "m.onnx"
    args = ["export", _tiny_arch(tmp_path), "--onnx", str(target), "--tolerance", "1e-15"]
    code, err = _main(capsys, *args, "--json")
    assert code == 1
    last = err.strip().splitlines()[-1]  # progress lines come first on stderr
    assert last.startswith("Error: ONNX parity failed") and "Traceback" not in err
    assert not target.exists()
    report = json.loads((tmp_path / "export.json").read_text())
    assert report["passed"] is False and report["max_abs_diff"] > report["tolerance"] == 1e-15


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_trt_absent_is_one_line_exit_1(tmp_path, capsys):
    code, err = _main(
        capsys,
        "export",
        _tiny_arch(tmp_path),
        "--onnx",
        str(tmp_path / "m.onnx"),
        "--trt",
        str(tmp_path / "m.plan"),
    )
    assert code == 1
    assert err.strip().count("\n") == 0 and "TensorRT is not installed" in err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.trt
@pytest.mark.skipif(not HAS_TRT, reason="needs TensorRT")
def test_trt_plan_builds_and_matches(tmp_path, cli):
    result = cli(
        "export",
        _tiny_arch(tmp_path),
        "--onnx",
        str(tmp_path / "m.onnx"),
        "--trt",
        str(tmp_path / "m.plan"),
        "--triton",
        str(tmp_path / "repo"),
        "--json",
    )
    assert result.code == 0, result.stderr
    trt = json.loads(result.stdout)["tensorrt"]
    assert trt["trt_max_abs_diff"] <= 1e-3 and trt["trt_latency_ms"] > 0
    assert (tmp_path / "repo" / "m_trt" / "1" / "model.plan").is_file()


def test_bad_inputs_exit_2(tmp_path, capsys):
    code, err = _main(
        capsys, "export", str(tmp_path / "nope.json"), "--onnx", str(tmp_path / "m.onnx")
    )
    assert code == 2 and err.count("\n") == 1
    code, err = _main(capsys, "export", _tiny_arch(tmp_path), "--onnx", str(tmp_path / "m.txt"))
    assert code == 2 and "must end in .onnx" in err


def test_cli_modules_do_not_import_runtimes():
    code = (
        "import sys, dnatool.cli.main, dnatool.cli.export, dnatool.cli.serve, dnatool.cli.bench, "
        "dnatool.export.onnx, dnatool.export.tensorrt, dnatool.serve.server; "
        "print(sorted(m for m in ('onnxruntime', 'tensorrt', 'onnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_paper_sized_dna_arch_passes_parity(tmp_path):
    from dnatool.arch.space import load_space
    from dnatool.export.run import export_model

    space = load_space("dna-mbconv")
    arch = space.to_arch(space.sample(np.random.default_rng(0)), name="dna_random")
    path = tmp_path / "dna.json"
    path.write_text(arch.to_json())
    result = export_model(str(path), tmp_path / "dna.onnx")
    assert result["passed"] and result["max_abs_diff"] <= 1e-4 and result["output_abs_max"] > 1e-2
    assert result["resolution"] == 224 and not result["trained"]
    assert (tmp_path / "export.json").is_file()


def test_model_run_export_is_marked_trained_and_demo_stage(tmp_path):
    """A model run (what retrain writes) exports with its own preprocessing, marked trained."""
    from dnatool.arch.resolve import resolve_arch
    from dnatool.data import load_splits
    from dnatool.demo import DemoContext, stage_export
    from dnatool.nn.model_run import save_model_run
    from dnatool.nn.timm_adapter import build_model

    arch = resolve_arch(_tiny_arch(tmp_path))
    splits = load_splits("digits", arch.resolution, augment=False)
    model = build_model(arch)
    model.train()
    import torch

    with torch.no_grad():  # running statistics from real images, as training would leave them
        for start in range(0, 64, 16):
            model(torch.stack([splits.train[i][0] for i in range(start, start + 16)]))
    save_model_run(tmp_path / "run", model, arch, splits.preprocess, {"top1": 0.0})
    ctx = DemoContext(out=tmp_path / "demo", results={"retrain": {"run": str(tmp_path / "run")}})
    result = stage_export(ctx)
    assert result["trained"] is True and result["max_abs_diff"] <= 1e-4
    assert result["onnx"] == str(tmp_path / "demo" / "export" / "model.onnx")
    report = json.loads((tmp_path / "demo" / "export" / "export.json").read_text())
    assert report["bn_calibrated"] is False and report["output_abs_max"] > 1e-2

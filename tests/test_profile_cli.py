"""`dnatool profile` end to end on the `tiny` space with onnxruntime CPU and a quick protocol.

One table is measured per module: the run is SIGKILLed mid-way, then `--resume` must measure only
the networks that are missing; the finished table is then validated, refused for another device,
exported and re-imported, and its prediction is put beside an exported network's latency.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from dnatool.arch.space import load_space
from dnatool.profile.lut import load_lut

pytest.importorskip("onnxruntime")

PROFILE = [
    "profile",
    "measure",
    "--device",
    "ort-cpu",
    "--space",
    "tiny",
    "--quick",
    "--threads",
    "1",
    "--clock",
    "cpu",
]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys):
    """`dnatool ARGS` in this process (torch is imported once): exit code, stdout, stderr."""
    from dnatool.cli.main import main

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def _measured(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        samples = json.loads(path.read_text())["samples"]
    except (json.JSONDecodeError, KeyError):  # never expected: writes are atomic
        raise AssertionError(f"{path} was half-written") from None
    return {k: v for k, v in samples.items() if not k.startswith("ref|")}


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """Start a profile, kill it (SIGKILL) as soon as it has saved a network, then resume it."""
    out = tmp_path_factory.mktemp("lut") / "tiny.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dnatool", *PROFILE, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not _measured(out) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the profile ended before it could be killed"
    before = _measured(out)
    from dnatool.cli.main import main

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as exit_info:
        main([*PROFILE, "--out", str(out), "--resume", "--json"])
    assert exit_info.value.code == 0
    return out, before, json.loads(stdout.getvalue())


def test_resume_after_kill_measures_only_missing_networks(resumed):
    out, before, summary = resumed
    assert summary["reused"] == len(before) > 0  # the killed run had saved some networks
    assert summary["measured"] > 0  # ... and the resumed run measured the rest
    table = load_lut(out)
    after = {k: v for k, v in table.samples.items() if not k.startswith("ref|")}
    assert summary["measured"] + summary["reused"] == len(after)
    assert all(
        after[k] == v for k, v in before.items()
    )  # what was measured is kept, not re-measured
    assert table.header["complete"] and table.header["device"]["backend"] == "ort-cpu"


def test_table_header_entries_and_interface(resumed):
    out, _, summary = resumed
    table, space = load_lut(out), load_space("tiny")
    header = table.header
    assert header["device"]["runtime"] == "onnxruntime" and header["device"]["threads"] == 1
    assert {"warmup", "min_reps", "statistic", "order", "reference_every"} <= set(
        header["protocol"]
    )
    assert {"a", "b", "holdout", "holdout_constant", "networks", "check"} <= set(
        header["calibration"]
    ) and header["drift"]["measurements"] >= 2
    assert header["calibration"]["a"] > 0 and header["check"] == header["calibration"]["check"]
    assert {"passed", "rule", "reason"} <= set(header["check"])
    assert header["device"]["conversion"].startswith(
        "torchscript opset 17, dynamic batch, onnxslim"
    )
    assert header["device"]["session"]["intra_op_threads"] == 1
    over = header["overhead"]  # tiny networks take ~0.1 ms: a call's own cost is not negligible
    assert over["per_call_ms"] > 0 and over["fastest_ms"] <= over["slowest_ms"]
    assert over["negligible"] is False
    nets = [s for key, s in table.samples.items() if key.startswith("net|")]
    assert nets and all(s["rounds"] == 5 and s["ratio"] > 0 for s in nets)  # A B A B
    assert len(table.entries) == summary["entries"] == 26
    assert all(
        {"mean", "std", "n", "params", "macs"} <= set(e) and e["mean"] >= 0
        for e in table.entries.values()
    )
    choices = [(1, (0, 1)), (1, (2, 3, 0)), (0, (1, 1))]
    predicted = table.fixed_latency_ms(space) + sum(
        table.path_latency_ms(space, k, c) for k, c in enumerate(choices)
    )
    assert predicted == pytest.approx(table.predict_ms(space, choices)) and predicted > 0
    assert table.path_latency_ms(space, 0, (1, (0, 1))) == pytest.approx(
        table.slope * table.raw_path_ms(space, 0, (1, (0, 1)))
    )


def test_validation_report(resumed, cli):
    out, _, _ = resumed
    result = cli("profile", "validate", str(out), "-n", "4", "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    figures = {"within_5pct", "within_10pct", "mape", "spearman", "kendall", "constant"}
    assert figures | {"samples", "device", "drift_corrected", "verdict", "targets"} <= set(report)
    assert figures <= set(report["drift_corrected"])
    assert report["samples"] == 4 and report["device"].startswith("ort-cpu")
    assert Path(report["plot"]).read_bytes()[:4] == b"\x89PNG"
    networks = json.loads(out.with_suffix(".validate.json").read_text())["networks"]
    assert len(networks) == 4 and all(n["measured_ms"] > 0 for n in networks)
    errors = [abs(n["predicted_ms"] - n["measured_ms"]) / n["measured_ms"] for n in networks]
    assert report["within_5pct"] == sum(e <= 0.05 for e in errors) / 4
    assert report["within_10pct"] == sum(e <= 0.10 for e in errors) / 4
    assert report["mape"] == pytest.approx(sum(errors) / 4)
    table, space = load_lut(out), load_space("tiny")
    predicted = [n["predicted_ms"] for n in networks]
    assert predicted == [
        table.predict_ms(space, [(c, tuple(p)) for c, p in n["choices"]]) for n in networks
    ]
    # stratified: from the exact fastest to the exact slowest architecture the table predicts
    assert predicted[0] == pytest.approx(table.header["overhead"]["fastest_ms"])
    assert predicted[-1] == pytest.approx(table.header["overhead"]["slowest_ms"])
    ref = table.header["drift"]["reference_ms"]
    assert [n["drift_corrected_ms"] for n in networks] == pytest.approx(
        [n["ratio"] * ref for n in networks]
    )
    median = sorted(n["measured_ms"] for n in networks)[1:3]
    assert report["constant"]["constant_ms"] == pytest.approx(sum(median) / 2)
    # these networks are too fast for per-op latencies to add up: no claim of accuracy
    assert report["verdict_class"] == "too-fast" and "not a claim of accuracy" in report["verdict"]
    text = cli("profile", "validate", str(out), "-n", "3", "-o", "pair_rounds=2")
    assert text.code == 0 and "verdict: not a claim of accuracy" in text.stderr


def test_measure_arch_uses_the_table_backend(resumed):
    from dnatool.profile.validate import measure_arch

    out, _, _ = resumed
    table, space = load_lut(out), load_space("tiny")
    ms = measure_arch(table, space.to_arch([(1, (0, 1)), (1, (2, 3, 0)), (0, (1, 1))]))
    assert 0 < ms < 1000


def test_table_from_another_device_is_refused(resumed, cli, tmp_path):
    out, _, _ = resumed
    data = json.loads(out.read_text())
    data["header"]["device"]["runtime_version"] = "0.0.1"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    result = cli(*PROFILE, "--out", str(other), "--resume")
    assert result.code == 2 and "measured elsewhere" in result.stderr and "--force" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = cli("profile", "validate", str(other), "-n", "3")
    assert result.code == 2 and "runtime_version" in result.stderr


def test_export_ops_then_import_csv(resumed, cli, tmp_path):
    out, _, _ = resumed
    result = cli(
        "profile", "export-ops", str(tmp_path / "ops"), "--space", "tiny", "--no-pte", "--json"
    )  # writes 26 ONNX files (the .pte twins: tests/test_profile_xnnpack.py)
    assert result.code == 0, result.stderr
    manifest = json.loads((tmp_path / "ops" / "manifest.json").read_text())
    assert len(manifest["ops"]) == 26 and all(
        (tmp_path / "ops" / op["onnx"]).is_file() for op in manifest["ops"]
    )
    assert not list((tmp_path / "ops").glob("*.pte")) and "pte" not in manifest["ops"][0]
    measured = load_lut(out).entries
    lines = ["key,mean_ms,std_ms,n"] + [
        f"{op['key']},{measured[op['key']]['mean'] + 0.01},0.001,50" for op in manifest["ops"]
    ]
    (tmp_path / "phone.csv").write_text("\n".join(lines) + "\n")
    result = cli(
        "profile",
        "import",
        str(tmp_path / "phone.csv"),
        "--space",
        "tiny",
        "--device",
        "phone",
        "--out",
        str(tmp_path / "phone.json"),
        "--json",
    )
    assert result.code == 0, result.stderr
    table = load_lut(tmp_path / "phone.json")
    assert table.header["device"]["backend"] == "phone" and set(table.entries) == set(measured)
    (tmp_path / "bad.csv").write_text("key,mean_ms\nir|nope,1.0\n")
    result = cli(
        "profile",
        "import",
        str(tmp_path / "bad.csv"),
        "--space",
        "tiny",
        "--device",
        "phone",
        "--out",
        str(tmp_path / "bad.json"),
    )
    assert result.code == 2 and "ir|nope" in result.stderr


def test_bad_usage_is_one_line(cli, tmp_path):
    result = cli(
        "profile",
        "measure",
        "--device",
        "npu-9000",
        "--space",
        "tiny",
        "--out",
        str(tmp_path / "x"),
    )
    assert result.code == 2 and "npu-9000" in result.stderr
    result = cli("profile", "--device", "ort-cpu", "--validate", "5")
    assert result.code == 2 and "profile validate LUT" in result.stderr


def test_export_reports_the_tables_prediction_beside_the_measured_latency(resumed, cli, tmp_path):
    """`export --lut`: the table's figure for the exported winner and the exported file's own
    latency in the table's session, clock and protocol (A B A B with its reference)."""
    out, _, _ = resumed
    space = load_space("tiny")
    choices = [(1, (0, 1)), (1, (2, 3, 0)), (0, (1, 1))]
    arch = tmp_path / "winner.json"
    arch.write_text(space.to_arch(choices, name="winner").to_json())
    result = cli("export", str(arch), "--onnx", str(tmp_path / "w.onnx"), "--lut", str(out))
    assert result.code == 0, result.stderr
    assert "latency table" in result.stdout and "predicted" in result.stdout
    report = json.loads((tmp_path / "export.json").read_text())["lut"]
    assert report["predicted_ms"] == load_lut(out).predict_ms(space, choices)
    assert report["comparable"] and report["measured"] == "the exported ONNX file"
    assert report["measured_ms"] > 0 and report["drift_corrected_ms"] > 0
    assert report["error"] == pytest.approx(report["predicted_ms"] / report["measured_ms"] - 1)
    other = tmp_path / "other.json"
    other.write_text(space.to_arch(choices, name="x").to_json().replace('"tiny"', '"tiny-w"'))
    refused = cli("export", str(other), "--onnx", str(tmp_path / "o.onnx"), "--lut", str(out))
    assert refused.code == 2 and "records no choices of space 'tiny'" in refused.stderr


@pytest.mark.gpu
def test_torch_cuda_backend_times_with_events():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from dnatool.profile.backends import BackendOptions, get_backend

    for mode in ("eager", "graph"):
        runner = get_backend("torch-cuda", BackendOptions(mode=mode)).prepare(
            torch.nn.Conv2d(8, 8, 3), (1, 8, 32, 32)
        )
        times = runner.run(5)
        assert len(times) == 5 and all(t > 0 for t in times)


@pytest.mark.trt
def test_tensorrt_backend_builds_and_times():
    pytest.importorskip("tensorrt")
    import torch

    from dnatool.profile.backends import BackendOptions, get_backend

    for precision in ("fp32", "fp16"):
        runner = get_backend("trt", BackendOptions(precision=precision)).prepare(
            torch.nn.Conv2d(8, 8, 3), (1, 8, 32, 32)
        )
        assert all(t > 0 for t in runner.run(5))


def test_search_verify_measures_the_winner_on_the_tables_backend(resumed, cli, tmp_path):
    from dnatool.search.synthetic import write_synthetic_run

    lut, _, _ = resumed
    run = write_synthetic_run(tmp_path / "run", load_space("tiny"), seed=1)
    out = tmp_path / "search.json"
    args = ["search", str(run), "--lut", str(lut), "--latency", "1s", "--verify", "--out", str(out)]
    if not load_lut(lut).header["check"]["passed"]:  # quick tables of 0.1 ms networks fail it
        refused = cli(*args)
        assert refused.code == 2 and "failed its own hold-out check" in refused.stderr
    result = cli(*args, "--force")
    assert result.code == 0, result.stderr
    verify = json.loads(out.read_text())["verify"]
    assert verify["measured_ms"] > 0 and verify["predicted_ms"] > 0
    assert verify["error"] == pytest.approx(verify["predicted_ms"] / verify["measured_ms"] - 1)
    table_ref = load_lut(lut).header["drift"]["reference_ms"]
    assert verify["reference_ms"]["table"] == table_ref and verify["reference_ms"]["now"] > 0
    assert verify["drift"] == pytest.approx(verify["reference_ms"]["now"] / table_ref)
    corrected = verify["drift_corrected_ms"]
    assert verify["drift_corrected_error"] == pytest.approx(verify["predicted_ms"] / corrected - 1)
    assert "A B A B" in verify["protocol"] and "reference network" in result.stdout


def test_search_verify_with_an_imported_table_is_skipped_with_the_reason(resumed, cli, tmp_path):
    """`--import`ed tables crashed --verify (TypeError); now the search stands, verify says why."""
    from dnatool.search.synthetic import write_synthetic_run

    lut, _, _ = resumed
    data = json.loads(lut.read_text())
    data["header"]["device"] = {"backend": "phone", "runtime": "external", "threads": None}
    phone = tmp_path / "phone.json"
    phone.write_text(json.dumps(data))
    run = write_synthetic_run(tmp_path / "run", load_space("tiny"), seed=1)
    result = cli(
        "search", str(run), "--lut", str(phone), "--latency", "1s", "--verify", "--force", "--json"
    )
    assert result.code == 0, result.stderr
    assert "backend 'phone'" in json.loads(result.stdout)["verify"]["skipped"]
    assert "verify skipped" in result.stderr and (run / "search.json").is_file()

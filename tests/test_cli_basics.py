"""The CLI as users and scripts drive it: exit codes, one-line errors, --json on stdout."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_help_does_not_import_heavy_runtimes():
    code = (
        "import sys, dnatool.cli.main as m\n"
        "try:\n    m.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [x for x in ('onnxruntime', 'tensorrt', 'mmengine') if x in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in proc.stdout
    assert "space" in proc.stdout and "arch" in proc.stdout


def test_space_show_json_reports_exact_size(cli):
    result = cli("space", "show", "dna-mbconv", "--json")
    assert result.code == 0
    data = json.loads(result.stdout)
    assert data["size"] == 184_509_051_277_344_768
    assert data["distinct"] == 5_944_078_575_009_792
    # the declared cells {2,3,3} ... {5,5,5}: identical ones are one cell with a count
    assert [sum(c["count"] for c in b["cells"]) for b in data["blocks"]] == [3, 3, 3, 3, 3, 1]
    assert [len(b["cells"]) for b in data["blocks"]] == [2, 2, 3, 1, 1, 1]
    assert set(data["blocks"][0]) >= {"cells", "ops", "stride", "widths", "in_widths", "paths"}


def test_arch_show_efficientnet_b0(cli, tmp_path):
    from dnatool.arch.resolve import EFFICIENTNET_B0

    path = tmp_path / "b0.json"
    path.write_text(json.dumps(EFFICIENTNET_B0))
    data = json.loads(cli("arch", "show", str(path), "--json").stdout)
    assert data["params"] == 5_288_548
    assert abs(data["macs"] / 385.8e6 - 1) < 0.005
    assert data["resolution"] == 224 and len(data["stages"]) == 7


def test_arch_show_resolution_changes_macs(cli):
    small = json.loads(
        cli("arch", "show", "efficientnet_b0", "--resolution", "112", "--json").stdout
    )
    assert small["resolution"] == 112 and small["macs"] < 110e6


def test_arch_show_counts_the_largest_arch_without_allocating(cli):
    """Counted on the meta device: ~0.6 T parameters would need terabytes if they were allocated."""
    arch = {"arch_def": [["ir_r64_k31_s1_e64_c8192"]], "resolution": 4096, "head": 8192}
    result = cli("arch", "show", json.dumps(arch), "--json")
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["params"] == 573_135_155_080 and data["macs"] > 10**18


def _one_line_error(result):
    assert result.code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert "Traceback" not in result.stderr


def test_bad_inputs_exit_2_with_one_line(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    _one_line_error(cli("arch", "show", str(bad)))
    _one_line_error(cli("arch", "show", '[["ir_r1_k3_s1_e6_c24_zz3"]]'))
    _one_line_error(cli("space", "show", "no-such-space"))
    _one_line_error(cli("arch", "show", "efficientnet_b0", "--resolution", "abc"))
    _one_line_error(cli("arch", "show", "efficientnet_b0", "--resolution", "5000"))
    _one_line_error(cli("arch", "show", '[["ir_r1_k3_s1_e6_c99999999999"]]'))
    _one_line_error(cli("no-such-command"))
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"arch_def": [["ir_r1_k3_s1_e6_c24"]], "foo": 1}))
    result = cli("arch", "show", str(extra))
    _one_line_error(result)
    assert "unknown field 'foo'" in result.stderr


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--latency", "10parsecs", "bad latency '10parsecs'"),
        ("--latency", "1e400ms", "bad latency '1e400ms': too large"),
        ("--latency", "10", "bad latency '10': give a unit, e.g. 10ms or 10us"),
        ("--params", "5.3X", "bad count '5.3X'"),
        ("--macs", "1e400", "bad count '1e400': too large"),
        ("--params", "-2M", "bad count '-2M'"),
    ],
)
def test_bad_units_on_the_command_line(cli, tmp_path, option, value, message):
    """Budgets are parsed before the run directory is read: an empty folder is enough."""
    result = cli("search", str(tmp_path), option, value)
    _one_line_error(result)
    assert message in result.stderr


def test_doctor_json_reports_backend_availability(cli):
    """ort-cpu and torch-cpu run on any machine; TensorRT is not installed here, and says why."""
    data = json.loads(cli("doctor", "--json").stdout)
    assert data["packages"]["torch"] and data["packages"]["timm"]
    backends = data["backends"]
    assert set(backends) >= {"ort-cpu", "torch-cpu", "torch-cuda", "trt", "xnnpack"}
    assert backends["ort-cpu"] == "ok" and backends["torch-cpu"] == "ok"
    if data["packages"]["tensorrt"] is None:
        assert "TensorRT is not installed" in backends["trt"]
    if not data["cuda"]:
        assert backends["torch-cuda"] != "ok" and "CUDA" in backends["torch-cuda"]

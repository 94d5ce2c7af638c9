"""Latency tables without long measurements: keys, costs, calibration maths, loading and refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dnatool.arch.space import load_space
from dnatool.errors import BadInput, RunFailure
from dnatool.profile import calibrate
from dnatool.profile.lut import LatencyTable, layer_keys, load_lut, new_header, space_keys, stem_key


@pytest.fixture(scope="module")
def tiny():
    return load_space("tiny")


def test_key_function_is_stable_text(tiny):
    """Tables store keys verbatim: a change to the key format must be a deliberate schema change."""
    assert layer_keys(tiny, 0, (1, (0, 3))) == (
        "ir|1x8x16x16->16x8x8|k3|s2|e3|se0.25|swish|fp32",
        "ir|1x16x8x8->16x8x8|k5|s1|e6|se0.25|swish|fp32",
    )
    assert (
        stem_key(tiny)
        == "stem|1x3x32x32->8x16x16|k3|s2|e1|se0|swish|fp32|c16+ds_r1_k3_s1_e1_c8_se0.25"
    )
    assert layer_keys(tiny, 0, (1, (0, 3)), batch=4, dtype="fp16")[0].startswith("ir|4x8x16x16->")


def test_key_function_covers_the_space_and_separates_configurations(tiny):
    keys = space_keys(tiny)
    # stem + head + per block: 4 first-layer ops, plus 4 stride-1 ops wherever a cell has >1 layer
    assert len(keys) == 2 + 8 + 8 + 8
    rng = np.random.default_rng(0)
    for _ in range(50):
        choices = tiny.sample(rng)
        for k, choice in enumerate(choices):
            assert set(layer_keys(tiny, k, choice)) <= set(keys)
    assert len({layer_keys(tiny, 2, (0, (a, b))) for a in range(4) for b in range(4)}) == 16


def test_entry_costs_add_up_to_the_whole_network(tiny):
    """Params and MACs per key sum to timm's standalone network (same modules, same keys)."""
    from dnatool.nn.summary import summarize
    from dnatool.profile.run import entry_costs

    costs = entry_costs(tiny, 1, "fp32")
    table = LatencyTable(
        path=None, header={"device": {}}, entries={k: {**v, "mean": 0.0} for k, v in costs.items()}
    )
    choices = tiny.sample(np.random.default_rng(3))
    summary = summarize(tiny.to_arch(choices))
    params = table.fixed_cost(tiny, "params") + sum(
        table.path_cost(tiny, k, c, "params") for k, c in enumerate(choices)
    )
    macs = table.fixed_cost(tiny, "macs") + sum(
        table.path_cost(tiny, k, c, "macs") for k, c in enumerate(choices)
    )
    assert params == summary["params"]
    assert abs(macs - summary["macs"]) <= 0.01 * summary["macs"]


def test_solve_ops_recovers_additive_latencies():
    rng = np.random.default_rng(1)
    truth = {"a": 1.0, "b": 2.5, "c": 0.3}
    rows = [list(rng.choice(list(truth), size=int(rng.integers(1, 4)))) for _ in range(30)]
    targets = [sum(truth[k] for k in row) + rng.normal(0, 0.01) for row in rows]
    solved = calibrate.solve_ops(rows, targets)
    for key, value in truth.items():
        assert solved[key]["mean"] == pytest.approx(value, abs=0.03)
        assert solved[key]["n"] == sum(key in row for row in rows)


def test_calibration_fits_line_robustly_and_reports_held_out_accuracy():
    raw = np.linspace(10, 20, 18)
    measured = 0.6 * raw + 3.0
    measured[4] *= 2.0  # one network measured during a load burst
    cal = calibrate.calibrate(raw, measured, seed=0)
    assert cal["a"] == pytest.approx(0.6, rel=1e-6) and cal["b"] == pytest.approx(3.0, rel=1e-6)
    held_out = np.random.default_rng(0).permutation(18)[:6]  # the seeded third
    assert cal["holdout_networks"] == 6
    assert cal["holdout"]["within_10pct"] == pytest.approx(5 / 6 if 4 in held_out else 1.0)
    assert cal["fit"]["within_5pct"] == pytest.approx(17 / 18)
    clean = calibrate.calibrate(raw, 0.6 * raw + 3.0, seed=0)["holdout"]
    assert clean["within_5pct"] == 1.0 and clean["mape"] == pytest.approx(0.0, abs=1e-9)
    skewed = calibrate.calibrate(raw, np.where(raw > 15, 1.3, 1.0) * raw, seed=1)["holdout"]
    assert skewed["mape"] > 0.02  # a table that is off on held-out networks says so


def test_drift_correction_rescales_to_median_conditions():
    """Networks measured while the machine was slow are scaled back; one burst changes nothing."""
    from dnatool.profile.run import drift_corrected

    refs = {f"ref|{i}": {"ms": ms} for i, ms in enumerate([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])}
    samples = {**refs, "fast": {"ms": 1.0, "ref": 1}, "slow": {"ms": 2.0, "ref": 4}}
    corrected = drift_corrected(samples)
    assert corrected["fast"] == corrected["slow"] == pytest.approx(1.5)  # median reference: 1.5
    assert corrected["ref|3"] == 2.0  # reference runs themselves are kept as measured
    burst = {f"ref|{i}": {"ms": ms} for i, ms in enumerate([1.0, 1.0, 5.0, 1.0, 1.0])}
    assert drift_corrected({**burst, "net": {"ms": 3.0, "ref": 2}})["net"] == pytest.approx(3.0)
    assert drift_corrected({"net": {"ms": 3.0, "ref": 0}}) == {"net": 3.0}  # no references


def test_accuracy_figures():
    acc = calibrate.accuracy([1.0, 2.06, 2.8, 4.5], [1.0, 2.0, 3.0, 4.0])
    assert acc["within_5pct"] == 0.5 and acc["within_10pct"] == 0.75
    assert acc["mape"] == pytest.approx((0 + 0.03 + 0.2 / 3 + 0.125) / 4)
    assert acc["spearman"] == pytest.approx(1.0)


def _write_table(path, tiny, device, complete=True):
    table = LatencyTable(path, new_header(tiny, device, {"seed": 0}))
    table.header["complete"] = complete
    table.save()


def test_load_refuses_other_devices_unless_forced(tmp_path, tiny):
    device = {
        "backend": "ort-cpu",
        "cpu": "CPU A",
        "runtime": "onnxruntime",
        "runtime_version": "1.0",
        "threads": 1,
    }
    _write_table(tmp_path / "lut.json", tiny, device)
    assert load_lut(tmp_path / "lut.json", device=dict(device)).header["space"] == "tiny"
    with pytest.raises(BadInput, match="runtime_version '1.0' in the table, '2.0' here"):
        load_lut(tmp_path / "lut.json", device={**device, "runtime_version": "2.0"})
    assert load_lut(tmp_path / "lut.json", force=True, device={**device, "cpu": "CPU B"})


def test_load_refuses_unfinished_and_foreign_files(tmp_path, tiny):
    _write_table(tmp_path / "part.json", tiny, {"backend": "ort-cpu"}, complete=False)
    with pytest.raises(BadInput, match="unfinished"):
        load_lut(tmp_path / "part.json")
    (tmp_path / "other.json").write_text(json.dumps({"header": {"format": "x"}}))
    with pytest.raises(BadInput, match="not a dnatool latency table"):
        load_lut(tmp_path / "other.json")


def test_missing_runtimes_end_in_one_line():
    from dnatool.profile.backends import BackendOptions, availability, get_backend

    status = availability()
    assert set(status) == {"ort-cpu", "torch-cpu", "torch-cuda", "trt", "xnnpack"}
    assert all("\n" not in line for line in status.values())
    for name, line in status.items():
        if line != "ok":
            with pytest.raises(RunFailure, match=f"backend {name} is not available here"):
                get_backend(name, BackendOptions())
    with pytest.raises(BadInput, match="unknown device"):
        get_backend("npu-9000")


def test_importing_dnatool_profile_imports_no_runtime():
    import subprocess
    import sys

    code = (
        "import sys, dnatool.profile.lut, dnatool.profile.validate, dnatool.cli.main; "
        "print(sorted(m for m in ('onnxruntime', 'tensorrt', 'executorch') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def _csv(tmp_path, tiny, bad_row: str | None = None):
    """A measurements CSV with every op of `tiny`; `bad_row` replaces the second data row."""
    rows = [f"{key},0.5,0.01,20" for key in space_keys(tiny)]
    if bad_row is not None:
        rows[1] = bad_row.format(key=list(space_keys(tiny))[1])
    path = tmp_path / "phone.csv"
    path.write_text("key,mean_ms,std_ms,n\n" + "\n".join(rows) + "\n")
    return path


MS = "must be a finite number >= 0 (ms)"
COUNT = "must be a whole number >= 1"


@pytest.mark.parametrize(
    "row,column,value,rule",
    [
        ("{key},-0.5,0.01,20", "mean_ms", "-0.5", MS),
        ("{key},nan,0.01,20", "mean_ms", "nan", MS),
        ("{key},inf,0.01,20", "mean_ms", "inf", MS),
        ("{key},,0.01,20", "mean_ms", "", MS),
        ("{key},0.5,-1,20", "std_ms", "-1", MS),
        ("{key},0.5,nan,20", "std_ms", "nan", MS),
        ("{key},0.5,0.01,0", "n", "0", COUNT),
        ("{key},0.5,0.01,2.5", "n", "2.5", COUNT),
        ("{key},0.5,0.01,many", "n", "many", COUNT),
    ],
)
def test_import_names_the_bad_row_column_and_value(tmp_path, tiny, row, column, value, rule):
    from dnatool.profile.ops_io import import_csv

    with pytest.raises(BadInput) as info:
        import_csv(tiny, _csv(tmp_path, tiny, row), tmp_path / "t.json", "phone")
    assert str(info.value).endswith(f"phone.csv:3: {column} {rule}, got {value!r}")
    assert not (tmp_path / "t.json").exists()


def test_import_refuses_a_key_listed_twice(tmp_path, tiny):
    from dnatool.profile.ops_io import import_csv

    path = _csv(tmp_path, tiny)
    path.write_text(path.read_text() + f"{next(iter(space_keys(tiny)))},0.7,0,1\n")
    with pytest.raises(BadInput, match="listed twice"):
        import_csv(tiny, path, tmp_path / "t.json", "phone")


@pytest.fixture(scope="module")
def imported(tmp_path_factory, tiny):
    """A table built from on-device measurements (`--import`); n written as 20.0 by a spreadsheet."""
    from dnatool.profile.ops_io import import_csv

    folder = tmp_path_factory.mktemp("imported")
    path = _csv(folder, tiny, "{key},0.5,0.01,20.0")
    return import_csv(tiny, path, folder / "phone.json", "phone")


def test_import_keeps_what_was_measured(imported, tiny):
    entry = imported.entries[list(space_keys(tiny))[1]]
    assert entry["mean"] == 0.5 and entry["std"] == 0.01 and entry["n"] == 20
    assert isinstance(entry["n"], int)


def test_tables_dnatool_cannot_measure_on_end_in_one_line(imported, tiny, tmp_path, monkeypatch):
    """Imported and synthetic tables are bad input (exit 2); a missing runtime is a failure (1)."""
    from dnatool.profile.backends.torch_backend import TorchCudaBackend
    from dnatool.profile.validate import validate
    from dnatool.search.synthetic import write_synthetic_lut

    with pytest.raises(BadInput, match="on-device measurements of backend 'phone'"):
        validate(load_lut(imported.path), 3, space=tiny)
    synthetic = load_lut(write_synthetic_lut(tmp_path / "syn.json", tiny))
    with pytest.raises(BadInput, match="is for backend 'synthetic', which dnatool cannot measure"):
        validate(synthetic, 3, space=tiny)
    monkeypatch.setattr(TorchCudaBackend, "missing", staticmethod(lambda: "no CUDA device"))
    synthetic.header["device"] = {**synthetic.header["device"], "backend": "torch-cuda"}
    with pytest.raises(RunFailure, match="backend torch-cuda is not available here: no CUDA"):
        validate(synthetic, 3, space=tiny)


def test_validate_cli_on_an_imported_table_is_one_line_exit_2(imported, cli):
    result = cli("profile", "--lut", str(imported.path), "--validate", "3")
    assert result.code == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"Error: latency table {imported.path} holds on-device measurements of backend 'phone' "
        "(imported from phone.csv); dnatool cannot measure on that device"
    ]


def test_validate_refuses_a_device_other_than_the_tables(tiny, tmp_path, cli):
    from dnatool.search.synthetic import write_synthetic_lut

    path = write_synthetic_lut(tmp_path / "cpu.json", tiny)
    data = json.loads(path.read_text())
    data["header"]["device"]["backend"] = "torch-cpu"
    path.write_text(json.dumps(data))
    result = cli("profile", "--device", "ort-cpu", "--lut", str(path), "--validate", "3")
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--device ort-cpu but" in result.stderr and "'torch-cpu'" in result.stderr

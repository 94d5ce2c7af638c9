"""Latency tables without long measurements: keys, costs, calibration maths, loading and refusal."""

from __future__ import annotations

import json
import re

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
    clean = calibrate.calibrate(raw, 0.6 * raw + 3.0, seed=0)
    assert clean["holdout"]["within_5pct"] == 1.0
    assert clean["holdout"]["mape"] == pytest.approx(0.0, abs=1e-9)
    assert clean["check"]["passed"] and "constrained" not in clean
    skewed = calibrate.calibrate(raw, np.where(raw > 15, 1.3, 1.0) * raw, seed=1)["holdout"]
    assert skewed["mape"] > 0.02  # a table that is off on held-out networks says so


def test_calibration_is_physical_and_a_failed_table_says_so():
    """Noise larger than the differences gave the demo's table a = -1.1: every per-op latency
    negative. The slope is now kept positive, and the hold-out check fails in the header."""
    raw = np.linspace(0.1, 0.2, 18)
    measured = 0.3 - raw + np.random.default_rng(0).normal(0, 0.002, 18)  # faster when "larger"
    cal = calibrate.calibrate(raw, measured, seed=0)
    assert cal["a"] > 0 and cal["b"] == 0.0
    assert "not physical" in cal["constrained"]
    assert cal["check"]["passed"] is False and "not physical" in cal["check"]["reason"]
    # a table no better than a constant predictor (the median) fails too
    flat = calibrate.calibrate(raw, np.full(18, 0.15) * (1 + 0.03 * np.sin(np.arange(18))), seed=0)
    assert flat["holdout_constant"]["mape"] <= flat["holdout"]["mape"]
    assert (
        flat["check"]["passed"] is False and "no better than a constant" in flat["check"]["reason"]
    )


def test_a_table_that_failed_its_check_is_refused_by_search_unless_forced(tmp_path, tiny):
    from dnatool.profile.lut import check_failure, refuse_failed
    from dnatool.search.synthetic import write_synthetic_lut, write_synthetic_run

    path = write_synthetic_lut(tmp_path / "lut.json", tiny)
    assert check_failure(load_lut(path).header) is None  # no check recorded: not refused
    data = json.loads(path.read_text())
    data["header"]["check"] = {"passed": False, "reason": "held-out MAPE 61.0% > 10%"}
    path.write_text(json.dumps(data))
    with pytest.raises(BadInput, match="failed its own hold-out check"):
        refuse_failed(path)
    run = write_synthetic_run(tmp_path / "run", tiny, seed=1)
    args = ["search", str(run), "--lut", str(path), "--latency", "1s"]
    from conftest import run_cli

    refused = run_cli(*args)
    assert refused.code == 2 and refused.stderr.count("\n") == 1
    assert "held-out MAPE 61.0% > 10%" in refused.stderr and "--force" in refused.stderr
    assert run_cli(*args, "--force").code == 0


def test_drift_correction_rescales_to_median_conditions():
    """Networks measured while the machine was slow are scaled back; one burst changes nothing."""
    from dnatool.profile.run import drift_corrected

    refs = {f"ref|{i}": {"ms": ms} for i, ms in enumerate([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])}
    net = "net|[[0,[1]]]"
    samples = {**refs, "stem": {"ms": 1.0, "ref": 1}, "head": {"ms": 2.0, "ref": 4}}
    samples[net] = {"ms": 9.0, "ratio": 2.0, "ref": 4}  # measured A B A B: ratio x median
    corrected = drift_corrected(samples)
    assert corrected["stem"] == corrected["head"] == pytest.approx(1.5)  # median reference: 1.5
    assert corrected[net] == pytest.approx(3.0)
    assert corrected["ref|3"] == 2.0  # reference runs themselves are kept as measured
    burst = {f"ref|{i}": {"ms": ms} for i, ms in enumerate([1.0, 1.0, 5.0, 1.0, 1.0])}
    assert drift_corrected({**burst, "stem": {"ms": 3.0, "ref": 2}})["stem"] == pytest.approx(3.0)
    assert drift_corrected({"stem": {"ms": 3.0, "ref": 0}}) == {"stem": 3.0}  # no references


def test_accuracy_figures_and_the_constant_baseline():
    acc = calibrate.accuracy([1.0, 2.06, 2.8, 4.5], [1.0, 2.0, 3.0, 4.0])
    assert acc["within_5pct"] == 0.5 and acc["within_10pct"] == 0.75
    assert acc["mape"] == pytest.approx((0 + 0.03 + 0.2 / 3 + 0.125) / 4)
    assert acc["spearman"] == pytest.approx(1.0) and acc["kendall"] == pytest.approx(1.0)
    const = calibrate.constant_baseline([1.0, 2.0, 3.0, 4.0])
    assert const["constant_ms"] == 2.5 and const["spearman"] is None and const["kendall"] is None
    assert const["mape"] == pytest.approx((1.5 + 0.25 + 1 / 6 + 0.375) / 4)


def test_timing_paired_is_robust_to_drift_and_bursts():
    """A B A B: a machine slowing down 2x mid-run, and a burst in one round, leave the ratio."""
    from dnatool.runtime.timing import TimingProtocol, time_paired

    class Fake:
        def __init__(self, ms, clock):
            self.ms, self.clock = ms, clock

        def run(self, n):
            self.clock["calls"] += 1
            calls = self.clock["calls"]
            slow = 2.0 if calls > 8 else 1.0  # the machine halves its speed halfway
            burst = 5.0 if calls == 13 else 1.0  # one round of the network hit by a burst
            return [self.ms * slow * burst] * n

    clock = {"calls": 0}
    paired = time_paired(Fake(3.0, clock), Fake(1.0, clock), TimingProtocol(pair_rounds=7))
    assert paired.ratio == pytest.approx(3.0) and paired.rounds == 7
    assert paired.corrected(1.5) == pytest.approx(4.5)
    assert paired.ms in (3.0, 6.0)  # raw: whatever the machine did


def test_protocol_overrides_one_line_errors():
    from dnatool.profile.measure import Protocol

    p = Protocol().with_overrides(["pair_rounds=12", "min_seconds=0.5", "calibration_nets=30"])
    assert (p.pair_rounds, p.min_seconds, p.calibration_nets) == (12, 0.5, 30)
    with pytest.raises(BadInput, match="did you mean 'pair_rounds'"):
        Protocol().with_overrides(["pair_round=3"])
    with pytest.raises(BadInput, match="must be int"):
        Protocol().with_overrides(["warmup=many"])
    with pytest.raises(BadInput, match="'calibration_nets' must be >= 3"):
        Protocol().with_overrides(["calibration_nets=2"])


@pytest.mark.parametrize("name", ["tiny", "tiny-w"])
def test_strata_extremes_are_exact_and_networks_span_the_range(name, tmp_path):
    """Fastest and slowest by DP over interface widths equal brute force; stratified networks
    run from one to the other, evenly, distinct, none excluded."""
    import itertools

    from dnatool.profile.samples import choices_text
    from dnatool.profile.strata import extremes, latency_costs, stratified
    from dnatool.search.synthetic import write_synthetic_lut

    space = load_space(name)
    table = load_lut(write_synthetic_lut(tmp_path / "lut.json", space, seed=3))
    costs = latency_costs(space, table)
    every = [
        table.predict_ms(space, list(c))
        for c in itertools.product(
            *[
                [
                    (cell, tuple(p))
                    for cell, b in enumerate(block.cells)
                    for p in itertools.product(range(len(block.ops)), repeat=b.layers)
                ]
                for block in space.blocks
            ]
        )
    ]
    lo, hi = extremes(costs)
    assert costs.total(lo) == pytest.approx(min(every)) and costs.total(hi) == pytest.approx(
        max(every)
    )
    exclude = {choices_text(space.sample(np.random.default_rng(9)))}
    nets = stratified(space, costs, 10, seed=0, exclude=exclude)
    predicted = [table.predict_ms(space, c) for c in nets]
    assert predicted[0] == pytest.approx(min(every)) and predicted[-1] == pytest.approx(max(every))
    targets = np.linspace(min(every), max(every), 10)
    assert np.max(np.abs(np.array(predicted) - targets)) <= 0.1 * (max(every) - min(every))
    texts = [choices_text(c) for c in nets]
    assert len(set(texts)) == 10 and not exclude & set(texts)


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
    result = cli("profile", "validate", str(imported.path), "-n", "3")
    assert result.code == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"Error: latency table {imported.path} holds on-device measurements of backend 'phone' "
        "(imported from phone.csv); dnatool cannot measure on that device"
    ]


@pytest.mark.parametrize(
    "args,says",
    [
        (["--device", "ort-cpu", "--space", "tiny"], "dnatool profile measure --device"),
        (["--device", "ort-cpu", "--lut", "x.json", "--validate", "5"], "profile validate LUT"),
        (["--space", "tiny", "--export-ops", "ops"], "profile export-ops DIR"),
        (["--device", "p", "--import", "m.csv"], "profile import CSV --device"),
    ],
)
def test_old_single_command_forms_are_refused_with_the_new_verb(cli, args, says):
    result = cli("profile", *args)
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "is now a subcommand" in result.stderr and says in result.stderr


@pytest.fixture
def inproc(capsys):
    """`dnatool ARGS` in this process: (exit code, stderr)."""
    from dnatool.cli.main import main

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            main(list(args))
        return int(info.value.code or 0), capsys.readouterr().err

    return run


def test_bad_input_to_every_profile_verb_is_one_line_exit_2(imported, tmp_path, inproc):
    bad = [
        ["measure", "--device", "npu-9000", "--space", "tiny"],  # unknown backend
        ["measure", "--device", "ort-cpu", "--space", "tinny"],  # unknown space
        ["measure", "--device", "ort-cpu", "--space", "tiny", "-o", "warmpu=3"],
        ["measure", "--device", "ort-cpu", "--space", "tiny", "--clock", "cpu", "--threads", "2"],
        ["measure", str(tmp_path)],  # RUN without a manifest (and no --device)
        ["validate", str(tmp_path / "missing.json")],
        ["validate", str(imported.path), "-n", "2"],
        ["validate", str(imported.path), "--device", "ort-cpu"],  # the table names its backend
        ["export-ops", str(tmp_path / "ops"), "--space", "tinny"],
        ["import", str(tmp_path / "missing.csv"), "--device", "phone", "--space", "tiny"],
        ["import", str(tmp_path / "missing.csv"), "--space", "tiny"],  # no --device
        ["mesure", "--device", "ort-cpu"],
    ]
    for args in bad:
        extra = ["--out", str(tmp_path / "x.json")] if args[0] == "measure" else []
        code, err = inproc("profile", *args, *extra)
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
    assert not (tmp_path / "x.json").exists()


def test_phone_whole_networks_validate_an_imported_table(imported, tiny, tmp_path, inproc):
    """export-ops --networks writes whole networks across the MACs range; their latencies
    measured on the device validate the table imported from the same device."""
    code, err = inproc(
        "profile",
        "export-ops",
        str(tmp_path / "ops"),
        "--space",
        "tiny",
        "--no-pte",
        "--networks",
        "4",
    )
    assert code == 0, err
    assert len(list((tmp_path / "ops" / "networks").glob("*.onnx"))) == 4
    lines = (tmp_path / "ops" / "networks.csv").read_text().splitlines()
    assert lines[0] == "name,choices,macs,measured_ms" and len(lines) == 5
    macs = [int(line.rsplit(",", 2)[1]) for line in lines[1:]]
    assert macs == sorted(macs) and macs[0] < macs[-1]  # smallest to largest
    filled = [lines[0]] + [f"{line}{0.4 + 0.1 * i}" for i, line in enumerate(lines[1:])]
    (tmp_path / "measured.csv").write_text("\n".join(filled) + "\n")
    code, err = inproc(
        "profile", "validate", str(imported.path), "--measured", str(tmp_path / "measured.csv")
    )
    assert code == 0, err
    report = json.loads(imported.path.with_suffix(".validate.json").read_text())
    assert report["samples"] == 4 and "drift_corrected" not in report
    assert [n["measured_ms"] for n in report["networks"]] == pytest.approx([0.4, 0.5, 0.6, 0.7])
    assert "verdict:" in err and report["verdict"]
    (tmp_path / "bad.csv").write_text(lines[0] + "\n" + lines[1] + "-1\n")
    code, err = inproc(
        "profile", "validate", str(imported.path), "--measured", str(tmp_path / "bad.csv")
    )
    assert code == 2 and "measured_ms" in err and len(err.strip().splitlines()) == 1


def test_measure_takes_the_space_of_a_run_or_the_paper_recipes(tmp_path, tiny):
    from dnatool.cli.profile import _space
    from dnatool.search.synthetic import write_synthetic_run
    from dnatool.train.recipe import TrainRecipe

    run = write_synthetic_run(tmp_path / "run", tiny, seed=1)
    assert _space(str(run), None).digest == tiny.digest
    assert _space(None, None).name == TrainRecipe().space == "dna-mbconv"
    assert _space(None, "tiny-w").name == "tiny-w"
    with pytest.raises(BadInput, match="not the space run"):
        _space(str(run), "tiny-w")


@pytest.mark.parametrize("name", ["tiny", "tiny-w"])
def test_sample_keys_round_trip_and_name_what_was_measured(name):
    """Every name a profile plan writes parses to a typed key that writes it back unchanged; a
    coupled space names block and head inputs by width, an uncoupled one keeps schema-1 names."""
    from dnatool.profile.measure import Protocol, plan
    from dnatool.profile.samples import SampleKey

    space = load_space(name)
    keys = [SampleKey.parse(text) for text in plan(space, Protocol(), 1)]
    assert [str(k) for k in keys] == list(plan(space, Protocol(), 1))
    kinds = {k.kind for k in keys}
    assert kinds == {"stem", "head", "block", "net"}
    paths = [k for k in keys if k.kind == "block" and not k.overhead]
    assert {k.block for k in paths} == set(range(len(space.blocks)))
    for k in paths:
        assert str(k.input_overhead()) in {str(o) for o in keys if o.overhead}
        assert space._check_choice(k.block, k.choice) == k.choice
    coupled = any(len(space.in_widths(b)) > 1 for b in range(len(space.blocks) + 1))
    assert coupled == (name == "tiny-w")
    assert coupled == any(k.width is not None for k in keys)
    for text in ("stem", "head", "overhead|stem", "overhead|head", "overhead|2", "block|1|0|012"):
        assert str(SampleKey.parse(text)) == text  # schema-1 tables keep loading
    assert SampleKey.parse("ref|7") == SampleKey.ref(7)
    assert SampleKey.parse("block|1@24|0|10,2").choice == (0, (10, 2))
    for bad in ("stems", "head@x", "block|one|0|1", "net|[[0,", "ref|", "cell|3"):
        with pytest.raises(BadInput, match=re.escape(f"{bad!r} is not a sample name")):
            SampleKey.parse(bad)

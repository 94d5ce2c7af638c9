"""Tables for devices dnatool cannot drive: export every op, import measurements made there.

`export_ops` writes each entry the space needs (stem, every reachable layer, head) as a standalone
ONNX model converted as `dnatool export` converts a network (`runtime.onnx.to_onnx`), plus an ExecuTorch/XNNPACK `.pte` when the mobile extra is installed, a
`manifest.json` and a `measurements.csv` template with the keys; `import_csv` turns that CSV,
filled in on the device, into a table with the same keys. Imported entries are isolated-op
timings: they are not calibrated against whole networks (the header says so).
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

from dnatool.arch.space import SearchSpace
from dnatool.errors import BadInput
from dnatool.profile import measure
from dnatool.profile.lut import LatencyTable, new_header, space_keys
from dnatool.profile.samples import choices_text
from dnatool.utils import io
from dnatool.utils.locks import locked

CSV_FIELDS = ("key", "mean_ms", "std_ms", "n")


def op_module(
    space: SearchSpace, k: int, spec: Any, width: int, res: int, batch: int
) -> tuple[Any, tuple[int, ...]]:
    """The timm module of one entry and its input shape."""
    from dnatool.nn.timm_adapter import build_op

    if spec is None:
        return measure.stem_net(space, batch) if k < 0 else measure.head_net(space, batch, width)
    return build_op(width, spec, space.act), (batch, width, res, res)


def _filename(i: int, key: str) -> str:
    return (
        f"{i:03d}_"
        + re.sub(r"[^A-Za-z0-9._-]+", "_", key.split("|")[0] + "_" + key.split("|")[1])[:80]
    )


def export_ops(
    space: SearchSpace,
    out_dir: str | Path,
    batch: int = 1,
    report: Any = None,
    pte: bool | None = None,
    networks: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Write every op as ONNX (and .pte: `pte` True, or None when executorch is installed) plus
    manifest.json and a CSV template; and `networks` whole networks for validation on the device
    (`export_networks`)."""
    from dnatool.nn.timm_adapter import count_macs, count_params
    from dnatool.runtime import executorch
    from dnatool.runtime.onnx import INPUT_NAME, to_onnx_bytes

    out = Path(out_dir)
    keys = space_keys(space, batch)
    missing = executorch.missing()
    if pte and missing:
        from dnatool.errors import RunFailure

        raise RunFailure(f"--pte: {missing}")
    pte = missing is None if pte is None else pte
    ops = []
    for i, (key, (k, spec, width, res)) in enumerate(keys.items()):
        module, shape = op_module(space, k, spec, width, res, batch)
        name = _filename(i, key)
        io.write_bytes(out / f"{name}.onnx", to_onnx_bytes(module, shape))
        record = {
            "key": key,
            "onnx": f"{name}.onnx",
            "input_shape": list(shape),
            "params": int(count_params(module)),
            "macs": int(count_macs(module, (1, *shape[1:]))),
        }
        if pte:
            io.write_bytes(out / f"{name}.pte", executorch.pte_bytes(module, shape))
            record["pte"] = f"{name}.pte"
        ops.append(record)
        if report:
            report("advance", task="export", status=name)
    manifest = {
        "format": "dnatool.ops",
        "space": space.name,
        "batch": batch,
        "input_name": INPUT_NAME,
        "conversion": "ONNX: dnatool.runtime.onnx.to_onnx (as `dnatool export`); .pte: "
        "torch.export + XnnpackPartitioner",
        "ops": ops,
        "csv_columns": list(CSV_FIELDS),
    }
    io.write_json(out / "manifest.json", manifest)
    io.write_text(
        out / "measurements.csv",
        ",".join(CSV_FIELDS) + "\n" + "".join(f"{o['key']},,,\n" for o in ops),
    )
    result = {"dir": str(out), "ops": len(ops), "pte": pte}
    if networks:
        result["networks"] = export_networks(space, out, networks, batch, seed, pte, report)
    return result


NETWORK_FIELDS = ("name", "choices", "macs", "measured_ms")


def export_networks(
    space: SearchSpace,
    out_dir: str | Path,
    n: int,
    batch: int = 1,
    seed: int = 0,
    pte: bool = False,
    report: Any = None,
) -> int:
    """n whole networks spread over the space's MACs range, the smallest and largest included
    (`profile.strata`), as ONNX (+ .pte) under `DIR/networks/`, with `DIR/networks.csv` to fill
    on the device: `profile validate LUT --measured` then compares them with a table imported
    from the same device, so the phone's table is checked on whole networks too."""
    from dnatool.profile.strata import mac_costs, stratified
    from dnatool.runtime.onnx import to_onnx_bytes

    out = Path(out_dir)
    costs = mac_costs(space)
    lines = [",".join(NETWORK_FIELDS)]
    for i, choices in enumerate(stratified(space, costs, n, seed)):
        name = f"net_{i:03d}"
        module, shape = measure.whole_net(space, choices, batch)
        io.write_bytes(out / "networks" / f"{name}.onnx", to_onnx_bytes(module, shape))
        if pte:
            from dnatool.runtime.executorch import pte_bytes

            io.write_bytes(out / "networks" / f"{name}.pte", pte_bytes(module, shape))
        macs = int(costs.total(costs.index_of(choices)))
        lines.append(f'{name},"{choices_text(choices)}",{macs},')
        if report:
            report("advance", task="export", status=name)
    io.write_text(out / "networks.csv", "\n".join(lines) + "\n")
    return n


def read_networks(path: str | Path, space: SearchSpace) -> list[tuple[list[Any], float]]:
    """(choices, measured ms) of every row of a filled `networks.csv`; bad rows in one line."""
    import json

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"measurements file not found: {path}")
    rows = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"choices", "measured_ms"} <= set(reader.fieldnames):
            raise BadInput(f"{path} needs the columns choices and measured_ms (networks.csv)")
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            try:
                choices = [
                    (int(c), tuple(int(op) for op in p)) for c, p in json.loads(row["choices"])
                ]
                space.to_arch(choices)
            except (ValueError, TypeError, BadInput):
                raise BadInput(
                    f"{where}: choices {row['choices']!r} are not an architecture of space "
                    f"{space.name!r}"
                ) from None
            ms = _milliseconds(where, "measured_ms", row["measured_ms"])
            if ms <= 0:
                raise BadInput(f"{where}: measured_ms must be > 0, got {row['measured_ms']!r}")
            rows.append((choices, ms))
    if len(rows) < 3:
        raise BadInput(f"{path}: validation needs at least 3 measured networks, got {len(rows)}")
    return rows


@locked("out")  # one writer per table
def import_csv(
    space: SearchSpace,
    csv_path: str | Path,
    out: str | Path,
    device: str,
    batch: int = 1,
    force: bool = False,
) -> LatencyTable:
    """A table from on-device measurements (CSV columns key, mean_ms[, std_ms, n])."""
    rows = _read_csv(Path(csv_path))
    keys = space_keys(space, batch)
    unknown = [key for key in rows if key not in keys]
    if unknown:
        raise BadInput(
            f"{csv_path}: key {unknown[0]!r} is not an op of space {space.name!r} at batch {batch}"
        )
    missing = [key for key in keys if key not in rows]
    if missing:
        raise BadInput(
            f"{csv_path}: {len(missing)} op(s) of space {space.name!r} have no measurement, e.g. {missing[0]!r}"
        )
    if Path(out).exists() and not force:
        raise BadInput(f"{out} exists; use --force to overwrite it")
    from dnatool.profile.run import entry_costs

    fingerprint = {
        "backend": device,
        "source": f"imported from {Path(csv_path).name}",
        "batch": batch,
        "precision": "fp32",
        "threads": None,
        "runtime": "external",
    }
    protocol = {
        "statistic": "as measured on the device",
        "context": "isolated ops (not calibrated)",
    }
    table = LatencyTable(Path(out), new_header(space, fingerprint, protocol))
    costs = entry_costs(space, batch, "fp32")
    table.entries = {key: {**rows[key], **costs[key]} for key in keys}
    table.header.update(
        complete=True,
        calibration={"a": 1.0, "b": 0.0, "method": "none: imported isolated-op timings"},
    )
    table.save()
    return table


def _read_csv(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        raise BadInput(f"measurements file not found: {path}")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"key", "mean_ms"} <= set(reader.fieldnames):
            raise BadInput(f"{path} needs the columns key and mean_ms (optional std_ms, n)")
        rows: dict[str, dict[str, Any]] = {}
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            if row["key"] in rows:
                raise BadInput(f"{where}: key {row['key']!r} is listed twice")
            rows[row["key"]] = {
                "mean": _milliseconds(where, "mean_ms", row["mean_ms"]),
                "std": _milliseconds(where, "std_ms", row.get("std_ms") or "0"),
                "n": _count(where, row.get("n") or "1"),
            }
    return rows


def _milliseconds(where: str, column: str, text: str | None) -> float:
    """A finite, non-negative number of milliseconds, or BadInput naming row, column and value."""
    try:
        value = float(text or "")
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise BadInput(f"{where}: {column} must be a finite number >= 0 (ms), got {text!r}")
    return value


def _count(where: str, text: str) -> int:
    """A whole number of timed runs >= 1 (`50` or `50.0`), or BadInput naming row, column, value."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value.is_integer() and value >= 1):
        raise BadInput(f"{where}: n must be a whole number >= 1, got {text!r}")
    return int(value)

"""A latency table's prediction beside the measured latency of the artifact that ships.

`dnatool export MODEL --lut LUT` prices MODEL's architecture with the table and, when this
machine is the table's device, measures the exported artifact itself with the table's session
options, clock and protocol, A B A B with the table's reference network (as `profile validate`
measures): the raw and drift-corrected latency and their errors go into export.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dnatool.arch.space import Choice, SearchSpace
from dnatool.arch.spec import ArchSpec
from dnatool.errors import BadInput

if TYPE_CHECKING:
    from dnatool.nn.model_run import LoadedModel


def arch_choices(arch: ArchSpec, space: SearchSpace) -> list[Choice]:
    """The choices of `space` that make `arch` (from its `meta`, checked against the space)."""
    meta = arch.meta or {}
    raw = meta.get("choices")
    if meta.get("space") != space.name or not isinstance(raw, list):
        raise BadInput(
            f"architecture {arch.name!r} records no choices of space {space.name!r} (the "
            "table's); --lut prices architectures searched in the table's space"
        )
    try:
        choices = [(int(c), tuple(int(op) for op in p)) for c, p in raw]
        same = space.to_arch(choices).stages == arch.stages
    except (TypeError, ValueError, BadInput):
        same = False
    if not same or arch.resolution != space.resolution:
        raise BadInput(
            f"architecture {arch.name!r} is not the network its choices make in space "
            f"{space.name!r}; --lut cannot price it"
        )
    return choices


def table_prediction(
    loaded: LoadedModel, onnx_bytes: bytes, lut_path: str | Path
) -> dict[str, Any]:
    """{predicted_ms, comparable, ...}: the table's figure and, on the table's device, the
    measured latency of `onnx_bytes` (an ort-cpu table) or of the same conversion (others)."""
    from dnatool.arch.space import load_space
    from dnatool.profile import validate as V
    from dnatool.profile.lut import load_lut
    from dnatool.profile.measure import Protocol, time_paired
    from dnatool.utils.io import file_sha256

    lut = load_lut(lut_path)
    space = load_space(str(lut.header["space"]))
    lut.check_space(space)
    predicted = lut.predict_ms(space, arch_choices(loaded.arch, space))
    result: dict[str, Any] = {
        "path": str(lut_path),
        "sha256": file_sha256(lut_path),
        "device": V._device_name(lut),
        "predicted_ms": predicted,
    }
    reason = V.unavailable_reason(lut)
    if reason:
        return {**result, "comparable": False, "reason": reason}
    backend = V.table_backend(lut)
    shape = (lut.batch, loaded.arch.in_chans, loaded.arch.resolution, loaded.arch.resolution)
    if backend.name == "ort-cpu":  # the shipped file itself, in the table's session
        from dnatool.runtime.ort import OrtRunner, session

        runner = OrtRunner(
            session(onnx_bytes, threads=backend.options.threads), shape, backend.clock
        )
        measured = "the exported ONNX file"
    else:
        import copy

        runner = backend.prepare(copy.deepcopy(loaded.model), shape)
        measured = f"the exported network converted for {backend.name} as export converts it"
    paired = time_paired(
        runner, V.reference_runner(lut, space), Protocol.from_dict(lut.header["protocol"])
    )
    return {
        **result,
        "comparable": True,
        "measured": measured,
        **V.paired_figures(predicted, paired, V.table_reference_ms(lut)),
    }

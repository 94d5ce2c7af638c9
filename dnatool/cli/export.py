"""`dnatool export MODEL --onnx FILE [--trt FILE] [--triton DIR]`: deployable files with proof."""

from __future__ import annotations

from typing import Any

import click

from dnatool.cli._options import json_option


@click.command()
@click.argument("model_ref", metavar="MODEL")
@click.option(
    "--onnx",
    "onnx_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="ONNX file to write (export.json goes beside it).",
)
@click.option(
    "--trt",
    "trt_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TensorRT plan to build (needs TensorRT and a CUDA GPU).",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default="fp32",
    show_default=True,
    help="TensorRT precision (int8: calibrated on real images).",
)
@click.option(
    "--triton",
    "triton_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write a Triton model repository here.",
)
@click.option("--name", default=None, help="Triton model name (default: the ONNX file's stem).")
@click.option(
    "--tolerance",
    type=float,
    default=1e-4,
    show_default=True,
    help="Largest max-abs-diff torch vs onnxruntime accepted.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Largest batch of the TensorRT profile and Triton's max_batch_size.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="onnxruntime intra-op threads for parity and latency (0: one per core).",
)
@click.option(
    "--lut",
    "lut_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Latency table: report its prediction beside the measured latency (on its device).",
)
@click.option(
    "--mmseg-config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write an mmseg DeepLabV3+ config (other kinds: dnatool backbone config).",
)
@json_option
def export(
    model_ref: str,
    onnx_path: str,
    trt_path: str | None,
    precision: str,
    triton_dir: str | None,
    name: str | None,
    tolerance: float,
    max_batch: int,
    threads: int,
    lut_path: str | None,
    mmseg_config: str | None,
    as_json: bool,
) -> None:
    """Export MODEL (a model run, or an ARCH with random weights) to ONNX, checked against torch."""
    from dnatool.cli._console import Reporter, emit_json, progress
    from dnatool.export.run import export_model

    if mmseg_config is None and onnx_path is None:
        raise click.UsageError("give --onnx FILE and/or --mmseg-config FILE")
    written = None
    if mmseg_config is not None:
        from dnatool.backbones.configs import export_mmseg_config

        written = export_mmseg_config(model_ref, mmseg_config)
        if onnx_path is None:
            if as_json:
                emit_json(written)
            else:
                _print_config(written)
            return
    with progress() as bar:
        result = export_model(
            model_ref,
            onnx_path,
            trt_path=trt_path,
            precision=precision,
            triton_dir=triton_dir,
            triton_name=name,
            tolerance=tolerance,
            max_batch=max_batch,
            threads=threads,
            lut=lut_path,
            report=Reporter(bar),
        )
    if written is not None:
        result["mmseg_config"] = written
    if as_json:
        emit_json(result)
        return
    _print_summary(result)


def _print_lut(lut: dict[str, Any]) -> None:
    from dnatool.cli._console import out

    line = f"latency table {lut['path']}: predicted {lut['predicted_ms']:.3f} ms"
    if not lut["comparable"]:
        line += f"; not measured here: {lut['reason']}"
    else:
        line += (
            f", measured {lut['measured_ms']:.3f} ms ({100 * lut['error']:+.1f}%) on "
            f"{lut['device']}"
        )
        if "drift_corrected_ms" in lut:
            line += (
                f"; drift-corrected {lut['drift_corrected_ms']:.3f} ms "
                f"({100 * lut['drift_corrected_error']:+.1f}%)"
            )
    out.print(line, highlight=False, soft_wrap=True)


def _print_config(written: dict[str, Any]) -> None:
    from dnatool.cli._console import out

    out.print(
        f"wrote {written['config']} ({written['kind']}): backbone levels "
        f"{written['out_indices']}, channels {written['channels']}, strides {written['strides']}",
        highlight=False,
        soft_wrap=True,
    )


def _print_summary(result: dict[str, Any]) -> None:
    from dnatool.cli._console import info, out

    if not result["trained"]:
        info(
            "[bold yellow]untrained:[/] random initialisation (BatchNorm statistics from a few "
            "batches); parity and latency only, no accuracy"
        )
    out.print(
        f"{result['onnx']}  opset {result['opset']}  {result['onnx_bytes'] / 1e6:.1f} MB  "
        f"trained={str(result['trained']).lower()}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"parity: max abs diff {result['max_abs_diff']:.3g} (tolerance {result['tolerance']:g};"
        f" random {result['max_abs_diff_random']:.3g}, real {result['max_abs_diff_real']:.3g}"
        f" on {result['real_inputs']}; |logits| up to {result['output_abs_max']:.3g})",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"latency (batch 1, median): onnxruntime {result['ort_latency_ms']:.3f} ms "
        f"({result['ort_session']['intra_op_threads']} thread(s)), "
        f"torch eager {result['torch_latency_ms']:.3f} ms",
        highlight=False,
        soft_wrap=True,
    )
    if "lut" in result:
        _print_lut(result["lut"])
    if "tensorrt" in result:
        trt = result["tensorrt"]
        out.print(
            f"tensorrt {trt['precision']}: {trt['plan']}  max abs diff "
            f"{trt['trt_max_abs_diff']:.3g}  latency {trt['trt_latency_ms']:.3f} ms",
            highlight=False,
            soft_wrap=True,
        )
    if "triton" in result:
        out.print(
            f"triton repository: {result['triton']['repository']} "
            f"({', '.join(result['triton']['models'])})",
            highlight=False,
            soft_wrap=True,
        )
    if "mmseg_config" in result:
        _print_config(result["mmseg_config"])
    out.print(f"report: {result['report']}", highlight=False, soft_wrap=True)

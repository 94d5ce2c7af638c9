"""`dnatool serve MODEL`: an Open Inference Protocol (KServe v2) HTTP server, loopback by default."""

from __future__ import annotations

import click


@click.command()
@click.argument("model_ref", metavar="MODEL")
@click.option(
    "--name", default=None, help="Model name in the URLs (default: the model file's stem)."
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; anything but loopback exposes an unauthenticated server.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="TCP port (0: any free port, printed on stderr).",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Largest dynamic batch in samples; 1 turns batching off.",
)
@click.option(
    "--max-wait-ms",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Longest a request waits for others to join its batch.",
)
@click.option(
    "--max-queue",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Requests waiting beyond this are refused with 503.",
)
@click.option(
    "--max-request-mb",
    type=click.FloatRange(min=0.001),
    default=32.0,
    show_default=True,
    help="Largest request body; bigger ones get 413.",
)
@click.option(
    "--max-inflight-mb",
    type=click.FloatRange(min=0.001),
    default=128.0,
    show_default=True,
    help="Request bodies held at once across connections (JSON counts 8x); beyond: 503.",
)
@click.option(
    "--request-timeout-s",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="A request must arrive whole (headers and body) this soon after its first byte.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="onnxruntime intra-op threads (0: its default).",
)
def serve(
    model_ref: str,
    name: str | None,
    host: str,
    port: int,
    max_batch: int,
    max_wait_ms: float,
    max_queue: int,
    max_request_mb: float,
    max_inflight_mb: float,
    request_timeout_s: float,
    threads: int,
) -> None:
    """Serve MODEL (.onnx, or a model run / ARCH exported on the fly) until SIGINT or SIGTERM."""
    from dnatool.cli._console import info
    from dnatool.serve import resolved_onnx
    from dnatool.serve.server import Limits, ModelApp, serve_forever

    if host not in ("127.0.0.1", "localhost", "::1"):
        info(f"[bold yellow]warning:[/] binding {host}: the server has no authentication")
    with resolved_onnx(model_ref, report=_log) as (onnx_path, default_name):
        limits = Limits(
            max_body_bytes=int(max_request_mb * (1 << 20)),
            max_inflight_bytes=int(max_inflight_mb * (1 << 20)),
            request_timeout_s=request_timeout_s,
        )
        app = ModelApp(
            onnx_path,
            name or default_name,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_queue=max_queue,
            limits=limits,
            threads=threads,
        )
        if app.metadata.get("dnatool.trained") == "false":
            info("[bold yellow]untrained:[/] this model has random weights")
        serve_forever(app, host, port)


def _log(event: str, **fields: object) -> None:
    from dnatool.cli._console import info

    if event == "log":
        info(str(fields["message"]))

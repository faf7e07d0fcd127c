"""``pgrecall serve``: the HTTP API on uvicorn."""

from __future__ import annotations

import typer

from pgrecall.cli.base import app, fail, settings
from pgrecall.errors import ConfigurationError, PgRecallError
from pgrecall.http.app import is_loopback
from pgrecall.http.serving import default_workers, serve


@app.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind"),
    port: int = typer.Option(8080, "--port", help="port to listen on"),
    workers: int = typer.Option(
        default_workers(),
        "--workers",
        min=1,
        max=64,
        help="processes serving requests (default: one per two cores)",
    ),
    access_log: bool = typer.Option(
        False, "--access-log", help="log a line per request (off by default)"
    ),
) -> None:
    """Serve the HTTP API (loopback only without API keys).

    OpenAPI at /openapi.json; PGRECALL_API_KEYS allows other addresses.
    """
    config = settings()
    if config.api_keys is None and not is_loopback(host):
        raise fail(
            ConfigurationError(
                f"refusing to serve on {host} without API keys: set PGRECALL_API_KEYS, or bind "
                "to 127.0.0.1"
            )
        )
    try:
        serve(config, host=host, port=port, workers=workers, access_log=access_log)
    except PgRecallError as exc:
        raise fail(exc) from None

"""``pgrecall serve``: the HTTP API on uvicorn."""

from __future__ import annotations

import typer
import uvicorn

from pgrecall.cli.base import app, fail, settings
from pgrecall.errors import ConfigurationError
from pgrecall.http.app import create_app, is_loopback


@app.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind"),
    port: int = typer.Option(8080, "--port", help="port to listen on"),
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
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", proxy_headers=False)

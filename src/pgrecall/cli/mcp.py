"""``pgrecall mcp``: the MCP server on stdin/stdout, for desktop and coding agents."""

from __future__ import annotations

import typer

from pgrecall.cli.base import app, fail, run, settings
from pgrecall.errors import ConfigurationError
from pgrecall.mcp import missing_sdk


@app.command("mcp")
def mcp_command(
    namespace: list[str] | None = typer.Option(
        None,
        "--namespace",
        "-n",
        help="a namespace the agent may use (repeat it; 'prefix*' allows a family); "
        "the first is the default (or set PGRECALL_MCP_NAMESPACES)",
    ),
) -> None:
    """Serve MCP on stdin/stdout, for agents such as Claude Code.

    The tools remember, recall, get, list, update, forget and stats reach only the namespaces
    named here; a call that names none uses the first.
    """
    missing = missing_sdk()
    if missing is not None:
        raise fail(ConfigurationError(missing))
    config = settings()
    namespaces = namespace or config.mcp_namespaces
    if not namespaces:
        raise fail(
            ConfigurationError(
                "name the namespaces the agent may use: --namespace NAME (repeatable) or "
                'PGRECALL_MCP_NAMESPACES=["NAME"]'
            )
        )
    if any(not name.strip() for name in namespaces):
        raise fail(ConfigurationError("--namespace may not be empty"))
    from pgrecall.mcp.server import serve_stdio

    run(serve_stdio(config, namespaces))

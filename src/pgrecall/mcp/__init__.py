"""pgrecall as an MCP server (the ``mcp`` extra): ``pgrecall mcp`` on stdio, ``/mcp`` in serve.

Only this module imports without the MCP SDK: ``missing_sdk`` tells whether it is installed.
"""

from __future__ import annotations

from importlib.util import find_spec

INSTALL_HINT = "the MCP server needs the mcp extra: pip install 'pgrecall[mcp]'"


def missing_sdk() -> str | None:
    """None when the MCP SDK is installed, else what to install."""
    return None if find_spec("mcp") is not None else INSTALL_HINT

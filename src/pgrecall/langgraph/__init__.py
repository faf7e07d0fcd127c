"""pgrecall as LangGraph's long-term memory store (the ``langgraph`` extra)."""

from __future__ import annotations

from pgrecall.langgraph.store import PgRecallStore

__all__ = ["PgRecallStore"]

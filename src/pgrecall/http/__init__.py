"""The HTTP API (FastAPI): a thin layer over MemoryStore for agents in any language."""

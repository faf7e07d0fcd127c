"""Ollama as an embedder: the HTTP client of ``/api/embed`` and the Embedder over it."""

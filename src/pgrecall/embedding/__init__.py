"""Embedders turn texts into unit vectors: the Ollama HTTP client and the local model."""

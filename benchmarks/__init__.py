"""Benchmarks: scripts that print numbers and ratios (see benchmarks/README.md)."""

"""Moving memories in and out as JSONL: the line format, export, import."""

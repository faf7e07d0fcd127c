"""Whether the embedder answers, shared by ingestion and the worker in one process.

After a transient failure ``remember`` stops trying to embed in line for a while and stores
memories as pending at once (an import does not wait out retries chunk after chunk); the worker
keeps probing and clears the mark on its first success.
"""

from __future__ import annotations

import time

# How long after a failure in-line embedding is skipped.
DOWN_SECONDS = 15.0


class EmbedderHealth:
    """A process-local circuit breaker."""

    def __init__(self, down_seconds: float = DOWN_SECONDS) -> None:
        self._down_seconds = down_seconds
        self._down_until = 0.0

    def mark_down(self) -> None:
        """The embedder failed transiently: skip in-line attempts for a while."""
        self._down_until = time.monotonic() + self._down_seconds

    def mark_up(self) -> None:
        """The embedder answered."""
        self._down_until = 0.0

    @property
    def down(self) -> bool:
        """True while in-line embedding should not be tried."""
        return time.monotonic() < self._down_until

"""Whether the embedder answers, shared by ingestion, recall and the worker in one process.

After a transient failure ``remember`` stops trying to embed in line for a while and stores
memories as pending at once (an import does not wait out retries chunk after chunk); the worker
keeps probing and clears the mark on its first success.

The breaker is also where the user hears about it: one warning on the logger
``pgrecall.embedding.health`` when the embedder stops answering (what failed, what happens
meanwhile, how to fix it) and one line when it answers again; never one per call.
Warnings reach stderr in a plain script with no logging configured (Python's last-resort
handler), so pgrecall adds no handler of its own.
"""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)

# How long after a failure in-line embedding is skipped.
DOWN_SECONDS = 15.0

# What the user reads after the reason of an outage, and when it is over.
MEANWHILE = (
    "Meanwhile memories are kept as pending (embedded once it answers) and recall ranks by "
    "keywords only."
)
ANSWERS_AGAIN = (
    "pgrecall: the embedder answers again: recall ranks by meaning, and the worker embeds the "
    "pending memories."
)


class EmbedderHealth:
    """A process-local circuit breaker that warns once per outage."""

    def __init__(self, down_seconds: float = DOWN_SECONDS) -> None:
        self._down_seconds = down_seconds
        self._down_until = 0.0
        self._failing = False  # between a failure and the next success: the outage warned of

    def mark_down(self, reason: str) -> None:
        """The embedder failed transiently (``reason`` says how and what to do): skip in-line
        attempts for a while, and warn if it answered before."""
        self._down_until = time.monotonic() + self._down_seconds
        if not self._failing:
            self._failing = True
            logger.warning("pgrecall: %s. %s", reason.rstrip("."), MEANWHILE)

    def mark_up(self) -> None:
        """The embedder answered; say so once if it had failed."""
        self._down_until = 0.0
        if self._failing:
            self._failing = False
            logger.warning(ANSWERS_AGAIN)

    @property
    def down(self) -> bool:
        """True while in-line embedding should not be tried."""
        return time.monotonic() < self._down_until

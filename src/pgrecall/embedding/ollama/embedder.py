"""The Ollama embedder: the Embedder contract over ``/api/embed``.

Before its first batch it asks ``/api/show`` once whether the model is pulled, can embed and
makes vectors of the size the store expects, so a wrong model fails at once with a clear message.
"""

from __future__ import annotations

import asyncio
import math
import re

from pgrecall.config import Settings
from pgrecall.embedding.base import BatchingEmbedder, BatchOutput
from pgrecall.embedding.ollama.client import ModelFacts, OllamaClient, RetryPolicy
from pgrecall.embedding.space import EmbeddingSpace
from pgrecall.errors import DimensionMismatchError, InputTooLongError, NotAnEmbeddingModelError

_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def estimated_tokens(text: str) -> int:
    """A generous token estimate without the model's tokenizer (special tokens included)."""
    return math.ceil(max(len(text.split()) * 1.3, len(text) / 4)) + 2


def keep_alive_value(setting: str) -> str | float:
    """Ollama takes a duration string or a number of seconds; a bare number string other than
    "0" is a 400, so send numbers as numbers."""
    return float(setting) if _NUMBER.fullmatch(setting.strip()) else setting.strip()


class OllamaEmbedder(BatchingEmbedder):
    """Embeds through an Ollama server."""

    def __init__(
        self, settings: Settings, space: EmbeddingSpace, client: OllamaClient | None = None
    ) -> None:
        super().__init__(
            space,
            batch_size=settings.embed_batch_size,
            batch_chars=settings.embed_batch_chars,
            concurrency=settings.embed_concurrency,
        )
        self._settings = settings
        self._model = settings.model
        self.client = client or OllamaClient(
            settings.ollama_url,
            timeout=settings.ollama_timeout,
            connect_timeout=settings.ollama_connect_timeout,
            retry=RetryPolicy(
                max_attempts=settings.ollama_max_attempts,
                budget_seconds=settings.ollama_retry_budget,
            ),
        )
        self._facts: ModelFacts | None = None
        self._facts_lock = asyncio.Lock()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()

    async def ping(self) -> str:
        """Ollama answers and has the model (asked every time: this is a health check)."""
        version = await self.client.version()
        await self.model_facts()
        return f"ollama {version} at {self.client.base_url}, model {self._model}"

    async def model_facts(self) -> ModelFacts:
        """The model's facts, checked against the space; asked once."""
        async with self._facts_lock:
            if self._facts is None:
                facts = await self.client.show(self._model)
                self._check(facts)
                self._facts = facts
            return self._facts

    def _check(self, facts: ModelFacts) -> None:
        if not facts.can_embed:
            listed = ", ".join(facts.capabilities or ())
            raise NotAnEmbeddingModelError(
                f'model "{self._model}" cannot embed (capabilities: {listed}): '
                "choose one such as mxbai-embed-large, nomic-embed-text or all-minilm"
            )
        full = facts.dimensions
        wanted = self.space.dimensions
        if full is None:
            return
        shortened = self._settings.embed_dimensions is not None
        if (not shortened and full != wanted) or full < wanted:
            raise DimensionMismatchError(
                f'model "{self._model}" makes {full}-dimensional vectors but this store expects '
                f"{wanted}: set PGRECALL_EMBED_DIMENSIONS={wanted} (models trained for it can be "
                "shortened) or use the model the store was built with"
            )

    def _payload(self, texts: list[str]) -> dict[str, object]:
        payload: dict[str, object] = {"input": texts, "truncate": self._settings.ollama_truncate}
        if self._settings.embed_dimensions is not None:
            payload["dimensions"] = self._settings.embed_dimensions
        if self._settings.ollama_keep_alive is not None:
            payload["keep_alive"] = keep_alive_value(self._settings.ollama_keep_alive)
        if self._settings.ollama_options:
            payload["options"] = self._settings.ollama_options
        return payload

    async def _embed_batch(self, texts: list[str]) -> BatchOutput:
        facts = await self.model_facts()
        try:
            reply = await self.client.embed(self._model, self._payload(texts))
        except InputTooLongError:
            if len(texts) > 1:
                await self._find_too_long(texts)
            raise InputTooLongError(
                f"input at position 0 is longer than {self._model}'s context and truncation is "
                "off: shorten it, or set PGRECALL_OLLAMA_TRUNCATE=true",
                position=0,
            ) from None
        return BatchOutput(
            vectors=reply.embeddings,
            truncated=self._truncated(texts, facts, reply.prompt_eval_count),
        )

    async def _find_too_long(self, texts: list[str]) -> None:
        """Ollama does not say which input was too long: try them one by one."""
        for position, text in enumerate(texts):
            try:
                await self.client.embed(self._model, self._payload([text]))
            except InputTooLongError as exc:
                raise InputTooLongError(
                    f"input at position {position} is longer than {self._model}'s context and "
                    "truncation is off: shorten it, or set PGRECALL_OLLAMA_TRUNCATE=true",
                    position=position,
                ) from exc

    def _truncated(self, texts: list[str], facts: ModelFacts, evaluated: int | None) -> int:
        """Inputs Ollama probably cut: over the token limit by estimate, confirmed by the
        server evaluating fewer tokens than the estimates add up to."""
        limit = facts.token_limit
        options_ctx = (self._settings.ollama_options or {}).get("num_ctx")
        if isinstance(options_ctx, int) and options_ctx > 0:
            limit = min(limit, options_ctx) if limit else options_ctx
        if not self._settings.ollama_truncate or limit is None or evaluated is None:
            return 0
        estimates = [estimated_tokens(text) for text in texts]
        if evaluated >= sum(estimates):
            return 0
        return sum(estimate > limit for estimate in estimates)

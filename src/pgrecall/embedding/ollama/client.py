"""Ollama's HTTP API on one ``httpx.AsyncClient``: retries, and errors translated to ours.

Retried, with exponential backoff and jitter, bounded by attempts and by total time:
connection errors, timeouts, dropped connections, 429, 500, 502, 503, 504. Never retried: 400,
403, 404, 501 (the request itself is wrong; sending it again cannot help), and a connection the
operating system refuses or a host name that does not resolve: nothing listens there, which is
known at once and will not change within a retry budget (a server that is starting is waited
for by the embedding worker's own backoff, not by the caller).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from pgrecall.embedding.models import canonical_name
from pgrecall.errors import (
    BadEmbeddingResponseError,
    EmbedderBusyError,
    EmbedderUnavailableError,
    EmbeddingError,
    InputTooLongError,
    ModelNotFoundError,
    NotAnEmbeddingModelError,
)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_RETRYABLE_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to keep trying one request."""

    max_attempts: int = 5
    budget_seconds: float = 60.0
    base_delay: float = 0.25
    max_delay: float = 8.0

    def delay(self, attempt: int) -> float:
        """Backoff before retry number ``attempt`` (1-based): exponential, half of it jittered."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What ``/api/show`` says about a model."""

    name: str
    architecture: str
    dimensions: int | None
    context_length: int | None
    num_ctx: int | None
    capabilities: tuple[str, ...] | None

    @property
    def can_embed(self) -> bool:
        """False only when the server lists capabilities and ``embedding`` is not among them."""
        return self.capabilities is None or "embedding" in self.capabilities

    @property
    def token_limit(self) -> int | None:
        """Tokens per input the server embeds before cutting (num_ctx never raises the GGUF's)."""
        limits = [value for value in (self.context_length, self.num_ctx) if value]
        return min(limits) if limits else None


@dataclass(frozen=True, slots=True)
class EmbedReply:
    """The body of a successful ``/api/embed``, unchecked."""

    embeddings: list[list[float]]
    prompt_eval_count: int | None


@dataclass(frozen=True, slots=True)
class PullProgress:
    """One line of ``/api/pull``'s NDJSON stream."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.text.strip()[:300]


def _nothing_listens(exc: BaseException) -> str | None:
    """Why no server can answer, when the operating system said so at once: "connection
    refused" or "name does not resolve"; None for failures that may pass (timeouts, resets).

    httpx wraps the OSError (a group of them when a name has several addresses): it is found
    by type in the exception's causes, never by its message."""
    causes: list[BaseException] = [exc]
    for _ in range(8):  # httpx -> httpcore -> anyio -> OS: a few links at most
        cause = causes[-1].__cause__ or causes[-1].__context__
        if cause is None:
            break
        causes.append(cause)
    for cause in causes:
        if isinstance(cause, socket.gaierror):
            return "name does not resolve"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, BaseExceptionGroup):
            reasons = [_nothing_listens(inner) for inner in cause.exceptions]
            if all(reasons):
                return reasons[0]
            return None
    return None


def _number_lists(value: object) -> list[list[float]] | None:
    """``value`` as lists of floats if it is a list of equally long number lists, else None.

    Checked and converted by numpy in C: the loops in Python took ~3 ms per 64 vectors of 384,
    on the event loop every recall and ingest shares."""
    if not isinstance(value, list) or not all(isinstance(vector, list) for vector in value):
        return None
    try:
        array = np.array(value)
    except ValueError:  # lists of different lengths
        return None
    if value and (array.ndim != 2 or array.dtype.kind not in "fiu"):
        return None
    converted: list[list[float]] = array.astype(np.float64).tolist()
    return converted


def is_context_length_error(message: str) -> bool:
    """Every Ollama version's wording of 'input longer than the context' mentions it."""
    return "context length" in message.lower()


def _parse_num_ctx(parameters: object) -> int | None:
    if not isinstance(parameters, str):
        return None
    for line in parameters.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "num_ctx" and fields[1].isdigit():
            return int(fields[1])
    return None


class OllamaClient:
    """The endpoints pgrecall uses: embed, show, tags, version, pull."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 120.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``transport`` replaces the network (tests hand in ``httpx.MockTransport``)."""
        self.base_url = base_url.rstrip("/")
        self._retry = retry or RetryPolicy()
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_keepalive_connections=16, max_connections=64),
            transport=transport,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def version(self) -> str:
        """The server's version, e.g. ``0.33.0``."""
        body = await self._json("GET", "/api/version", model=None)
        return str(body.get("version", ""))

    async def tags(self) -> list[str]:
        """Names (with tag) of the models pulled on the server."""
        body = await self._json("GET", "/api/tags", model=None)
        models = body.get("models")
        if not isinstance(models, list):
            raise BadEmbeddingResponseError(f"{self.base_url}/api/tags answered without a list")
        return [str(item.get("name", "")) for item in models if isinstance(item, dict)]

    async def show(self, model: str) -> ModelFacts:
        """Facts of one model; ModelNotFoundError when it is not pulled."""
        body = await self._json("POST", "/api/show", model=model, payload={"model": model})
        info = body.get("model_info")
        info = info if isinstance(info, dict) else {}
        architecture = str(info.get("general.architecture", ""))
        dimensions = info.get(f"{architecture}.embedding_length")
        context = info.get(f"{architecture}.context_length")
        capabilities = body.get("capabilities")
        return ModelFacts(
            name=canonical_name(model),
            architecture=architecture,
            dimensions=dimensions if isinstance(dimensions, int) else None,
            context_length=context if isinstance(context, int) else None,
            num_ctx=_parse_num_ctx(body.get("parameters")),
            capabilities=tuple(capabilities) if isinstance(capabilities, list) else None,
        )

    async def embed(self, model: str, payload: Mapping[str, Any]) -> EmbedReply:
        """POST /api/embed with ``payload`` (``model`` is added); the reply's shape is checked,
        not its numbers."""
        body = await self._json(
            "POST", "/api/embed", model=model, payload={**payload, "model": model}
        )
        embeddings = _number_lists(body.get("embeddings"))
        if embeddings is None:
            raise BadEmbeddingResponseError(
                f"{self.base_url}/api/embed answered without a list of number lists"
            )
        count = body.get("prompt_eval_count")
        return EmbedReply(
            embeddings=embeddings, prompt_eval_count=count if isinstance(count, int) else None
        )

    async def pull(self, model: str) -> AsyncIterator[PullProgress]:
        """Stream ``/api/pull`` progress; raise ModelNotFoundError on an error line."""
        try:
            async with self._http.stream(
                "POST",
                "/api/pull",
                json={"model": model, "stream": True},
                timeout=httpx.Timeout(None, connect=self._http.timeout.connect),
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._status_error(response, model)
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        item = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise BadEmbeddingResponseError(f"/api/pull sent {line[:100]!r}") from exc
                    if "error" in item:
                        raise ModelNotFoundError(
                            f'Ollama could not pull "{model}": {item["error"]} '
                            "(check the name on ollama.com/library)"
                        )
                    yield PullProgress(
                        status=str(item.get("status", "")),
                        digest=item.get("digest"),
                        total=item.get("total"),
                        completed=item.get("completed"),
                    )
        except httpx.TransportError as exc:
            raise self._transport_error(exc, model) from exc

    async def _json(
        self, method: str, path: str, *, model: str | None, payload: object = None
    ) -> dict[str, Any]:
        response = await self._send(method, path, model=model, payload=payload)
        try:
            body = response.json()
        except ValueError as exc:
            raise BadEmbeddingResponseError(
                f"{self.base_url}{path} answered with something that is not JSON: "
                f"{response.text[:100]!r}"
            ) from exc
        if not isinstance(body, dict):
            raise BadEmbeddingResponseError(f"{self.base_url}{path} answered {body!r:.100}")
        return body

    async def _send(
        self, method: str, path: str, *, model: str | None, payload: object
    ) -> httpx.Response:
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            failure: EmbeddingError
            try:
                response = await self._http.request(method, path, json=payload)
            except _RETRYABLE_TRANSPORT as exc:
                failure = self._transport_error(exc, model)
                if _nothing_listens(exc):
                    raise failure from exc
                cause: BaseException = exc
            except httpx.TransportError as exc:
                raise self._transport_error(exc, model) from exc
            else:
                if response.status_code == 200:
                    return response
                failure = self._status_error(response, model)
                if response.status_code not in RETRYABLE_STATUS:
                    raise failure
                cause = failure
            delay = self._retry.delay(attempt)
            out_of_time = time.monotonic() - started + delay > self._retry.budget_seconds
            if attempt >= self._retry.max_attempts or out_of_time:
                raise failure from cause
            await asyncio.sleep(delay)

    def _transport_error(self, exc: httpx.TransportError, model: str | None) -> EmbeddingError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            why = _nothing_listens(exc) or exc.__class__.__name__
            pull = f" and `ollama pull {model}`" if model else ""
            return EmbedderUnavailableError(
                f"Ollama is not reachable at {self.base_url} ({why}): start it with "
                f"`ollama serve`{pull}, set PGRECALL_OLLAMA_URL to where it runs, or set "
                "PGRECALL_EMBEDDER=local to embed in process (a store keeps the model it was "
                "made with: give that a new PGRECALL_DATA_DIR or database)"
            )
        if isinstance(exc, httpx.TimeoutException):
            return EmbedderUnavailableError(
                f"Ollama at {self.base_url} did not answer in time: it may be loading the model; "
                "raise PGRECALL_OLLAMA_TIMEOUT or retry"
            )
        return EmbedderUnavailableError(
            f"the connection to Ollama at {self.base_url} failed ({exc.__class__.__name__}: "
            f"{exc}); retry, and check the Ollama server log"
        )

    def _status_error(self, response: httpx.Response, model: str | None) -> EmbeddingError:
        status = response.status_code
        message = _error_message(response)
        where = f"{self.base_url}{response.request.url.path}"
        if status == 404 and "not found" in message and model is not None:
            return ModelNotFoundError(f'model "{model}" is not pulled: run: ollama pull {model}')
        if status == 404:
            return EmbedderUnavailableError(
                f"{where} does not exist ({message}): is this Ollama 0.2.6 or newer?"
            )
        if status == 501:
            return NotAnEmbeddingModelError(
                f'model "{model}" is not an embedding model ({message}): choose one such as '
                "mxbai-embed-large, nomic-embed-text or all-minilm"
            )
        if status == 400 and is_context_length_error(message):
            return InputTooLongError(
                f"an input is longer than {model}'s context ({message}): shorten it, or set "
                "PGRECALL_OLLAMA_TRUNCATE=true to let Ollama cut it"
            )
        if status == 403:
            return EmbedderUnavailableError(
                f"Ollama at {self.base_url} refused the request (403 {message}): it accepts "
                "loopback or private host names only; reach it by such a name"
            )
        if status in (429, 503):
            return EmbedderBusyError(
                f"Ollama at {self.base_url} stayed busy ({status} {message}) through every "
                "retry: lower PGRECALL_EMBED_CONCURRENCY or raise OLLAMA_MAX_QUEUE"
            )
        return BadEmbeddingResponseError(f"Ollama failed on {where}: {status} {message}")

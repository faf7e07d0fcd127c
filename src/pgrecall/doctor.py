"""``pgrecall doctor``: is everything pgrecall needs there, and does it fit together?"""

from __future__ import annotations

from dataclasses import dataclass

from pgrecall.config import Settings
from pgrecall.db import inspect
from pgrecall.db.embedded import database_dsn
from pgrecall.db.pool import connect
from pgrecall.embedding.backends import BACKENDS
from pgrecall.embedding.models import canonical_name
from pgrecall.embedding.ollama.client import ModelFacts, OllamaClient, RetryPolicy
from pgrecall.embedding.space import configured_space
from pgrecall.errors import PgRecallError

# Doctor answers fast: one try per question.
_ONE_TRY = RetryPolicy(max_attempts=1, budget_seconds=10)


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str


async def _ollama_checks(settings: Settings) -> tuple[list[Check], int | None]:
    client = OllamaClient(
        settings.ollama_url, timeout=settings.ollama_timeout, connect_timeout=2, retry=_ONE_TRY
    )
    checks: list[Check] = []
    try:
        try:
            version = await client.version()
        except PgRecallError as exc:
            return [Check("ollama reachable", False, str(exc))], None
        checks.append(Check("ollama reachable", True, f"{client.base_url}, version {version}"))
        model = canonical_name(settings.model)
        if model not in await client.tags():
            checks.append(
                Check("model present", False, f"{model} is not pulled: run pgrecall pull {model}")
            )
            return checks, None
        checks.append(Check("model present", True, model))
        facts: ModelFacts = await client.show(model)
        listed = ", ".join(facts.capabilities) if facts.capabilities else "not listed"
        checks.append(Check("embedding capability", facts.can_embed, listed))
        size = settings.embed_dimensions or facts.dimensions
        limit = f", {facts.token_limit} tokens per input" if facts.token_limit else ""
        checks.append(Check("model size", size is not None, f"{size} dimensions{limit}"))
        return checks, size
    finally:
        await client.aclose()


async def _database_check(settings: Settings, size: int | None) -> Check:
    try:
        async with database_dsn(settings.database_url, settings.data_dir) as dsn:
            connection = await connect(dsn)
            try:
                column = await inspect.vector_dimensions(connection)
            finally:
                await connection.close()
    except PgRecallError as exc:
        return Check("database", False, str(exc))
    if column is None:
        return Check("database column", False, "memories table missing: run pgrecall migrate")
    if size is None:
        return Check("database column", True, f"vector({column})")
    if column != size:
        return Check(
            "database column",
            False,
            f"vector({column}) but the model makes {size}-dimensional vectors: set "
            f"PGRECALL_EMBED_DIMENSIONS={column} or use another database",
        )
    return Check("database column", True, f"vector({column}) matches the model")


async def run_checks(settings: Settings) -> list[Check]:
    """Every check, in order; a failed one does not stop the rest when they can still run."""
    if not BACKENDS[settings.embedder].remote:
        space = configured_space(settings)
        model = f"{space.kind} model"
        checks = [Check(model, True, f"{space.model}, {space.dimensions} dimensions")]
        size: int | None = space.dimensions
    else:
        checks, size = await _ollama_checks(settings)
    checks.append(await _database_check(settings, size))
    return checks

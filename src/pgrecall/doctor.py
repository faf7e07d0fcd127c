"""``pgrecall doctor``: is everything pgrecall needs there, and does it fit together?"""

from __future__ import annotations

from dataclasses import dataclass

from pgrecall.config import Settings
from pgrecall.db import inspect
from pgrecall.db.embedded import database_dsn
from pgrecall.db.pool import connect
from pgrecall.embedding import lifecycle
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


def space_checks(spaces: lifecycle.Overview) -> list[Check]:
    """The active space, any space being built with its progress, the one kept for rollback."""
    if spaces.active is None:
        return [Check("active space", True, "none yet: the first memory records it")]
    checks = [Check("active space", True, spaces.active.space.describe())]
    if spaces.building is not None:
        build = spaces.building
        share = f" ({100 * build.done / build.total:.0f}%)" if build.total else ""
        then = "pgrecall reembed --switch" if build.complete else "pgrecall reembed"
        checks.append(
            Check(
                "space being built",
                True,
                f"{build.space.describe()}: {build.done} of {build.total} memories{share}; "
                f"next: {then}",
            )
        )
    if spaces.previous is not None:
        checks.append(
            Check(
                "previous space",
                True,
                f"{spaces.previous.space.describe()} kept for pgrecall reembed --rollback "
                "(--drop-old frees it)",
            )
        )
    return checks


async def _database_checks(settings: Settings, size: int | None) -> list[Check]:
    try:
        async with database_dsn(settings.database_url, settings.data_dir) as dsn:
            connection = await connect(dsn)
            try:
                column = await inspect.vector_dimensions(connection)
                spaces = await lifecycle.overview(connection) if column is not None else None
            finally:
                await connection.close()
    except PgRecallError as exc:
        return [Check("database", False, str(exc))]
    if column is None or spaces is None:
        return [Check("database column", False, "memories table missing: run pgrecall migrate")]
    column_check = _column_check(column, size, spaces)
    return [column_check, *space_checks(spaces)]


def _column_check(column: int, size: int | None, spaces: lifecycle.Overview) -> Check:
    if size is None:
        return Check("database column", True, f"vector({column})")
    building = spaces.building
    if column != size and building is not None and building.space.dimensions == size:
        return Check(
            "database column",
            True,
            f"vector({column}) today; the model's {size}-dimensional space is being built",
        )
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
    checks.extend(await _database_checks(settings, size))
    return checks

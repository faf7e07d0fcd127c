"""API keys, each bound to the namespaces (exact names or ``prefix*`` patterns) it may use.

No keys configured means no authentication, which ``pgrecall serve`` allows on loopback only.
Every front end checks a caller's namespaces here (how a key is presented is the front end's).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from pgrecall.api.errors import Forbidden, Unauthorized
from pgrecall.audit import key_actor
from pgrecall.catalog import no_memory
from pgrecall.records import Memory
from pgrecall.store import MemoryStore
from pgrecall.transfer.exporter import ExportScope


@dataclass(frozen=True, slots=True)
class Access:
    """What the caller may touch; ``patterns`` None means everything (no keys configured).
    ``actor`` names the key in the audit log (None: the server's local user)."""

    patterns: tuple[str, ...] | None
    actor: str | None = None

    @property
    def everything(self) -> bool:
        """True for an unauthenticated server or a key with ``*``."""
        return self.patterns is None or "*" in self.patterns

    def allows(self, namespace: str) -> bool:
        """Whether ``namespace`` is inside this access."""
        if self.patterns is None:
            return True
        for pattern in self.patterns:
            if pattern.endswith("*"):
                if namespace.startswith(pattern[:-1]):
                    return True
            elif namespace == pattern:
                return True
        return False

    @property
    def default_namespace(self) -> str | None:
        """The namespace a call that names none uses: the first exact name of this access
        (a ``prefix*`` pattern names no one namespace); None when there is none."""
        for pattern in self.patterns or ():
            if not pattern.endswith("*"):
                return pattern
        return None

    def require(self, namespaces: Iterable[str]) -> None:
        """Raise Forbidden naming the first namespace outside this access."""
        for namespace in namespaces:
            if not self.allows(namespace):
                raise Forbidden(f"this API key may not use namespace {namespace!r}")

    def export_scope(self) -> ExportScope:
        """Every namespace this access may use, as the scope of an export."""
        if self.patterns is None or self.everything:
            return ExportScope.everything()
        return ExportScope(
            names=tuple(p for p in self.patterns if not p.endswith("*")),
            prefixes=tuple(p[:-1] for p in self.patterns if p.endswith("*")),
        )

    def require_everything(self, what: str) -> None:
        """Raise Forbidden unless the caller may see every namespace."""
        if not self.everything:
            raise Forbidden(f"{what} across namespaces needs a key with '*'; name a namespace")


async def visible_memory(memory_id: UUID, caller: Access, store: MemoryStore) -> Memory:
    """The memory, if the caller may see its namespace. One the caller may not see answers as
    an unknown id does: a 403 naming the namespace would tell that the id exists, and where."""
    memory = await store.get(memory_id)
    if not caller.allows(memory.namespace):
        raise no_memory(memory_id)
    return memory


def check_key(presented: str | None, keys: Mapping[str, Sequence[str]] | None) -> Access:
    """The access of ``presented`` among ``keys`` (constant-time comparison)."""
    if keys is None:
        return Access(patterns=None)
    if not presented:
        raise Unauthorized("send an API key: Authorization: Bearer <key> (or X-API-Key)")
    matched: Sequence[str] | None = None
    for key, patterns in keys.items():
        if hmac.compare_digest(key.encode(), presented.encode()):
            matched = patterns
    if matched is None:
        raise Unauthorized("unknown API key")
    return Access(patterns=tuple(matched), actor=key_actor(presented))

"""LangGraph namespace tuples to pgrecall namespaces and back: injective and prefix-safe.

A tuple becomes ``root`` followed by each label, escaped, then ``/``::

    ("foo",)        -> "langgraph/foo/"
    ("foo", "bar")  -> "langgraph/foo/bar/"
    ("foobar",)     -> "langgraph/foobar/"
    ("a/b",)        -> "langgraph/a%2Fb/"

Escaping turns ``%``, ``/`` and every non-printable character into ``%XX`` (its UTF-8 bytes),
so ``/`` only ever ends a label. That gives the two properties the store relies on:

- injective: decoding splits on ``/`` and unescapes each label, so two tuples never share a
  namespace (``("a/b",)`` and ``("a", "b")`` differ; so do ``("foo.bar",)`` and ``("foo", "bar")``,
  which a dot-joined mapping would merge);
- prefix-safe: the tuples under a prefix tuple ``P`` are exactly the namespaces whose text starts
  with ``encode(P)``. As ``encode(P)`` ends with ``/``, ``("foo",)`` never matches ``("foobar",)``
  (the prefix match LangGraph's PostgresStore got wrong, CVE-2026-71433).

A pgrecall namespace holds at most 256 characters: a longer encoded tuple is refused by the
store with InvalidInputError.
"""

from __future__ import annotations

from urllib.parse import unquote

SEPARATOR = "/"
_ESCAPED = frozenset("%/")


def _escape_char(char: str) -> str:
    if char in _ESCAPED or not char.isprintable():
        return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    return char


def escape_label(label: str) -> str:
    """One label with ``%``, ``/`` and non-printable characters as ``%XX``."""
    return "".join(_escape_char(char) for char in label)


class NamespaceCodec:
    """Maps namespace tuples into the pgrecall namespaces that start with ``root``."""

    def __init__(self, root: str) -> None:
        self.root = root

    def encode(self, namespace: tuple[str, ...]) -> str:
        """The pgrecall namespace of ``namespace``; for a prefix tuple, the text that every
        namespace under it starts with (``root`` alone for the empty tuple)."""
        return self.root + "".join(escape_label(label) + SEPARATOR for label in namespace)

    def decode(self, namespace: str) -> tuple[str, ...] | None:
        """The tuple ``namespace`` encodes, or None for a namespace this codec did not make."""
        if not namespace.startswith(self.root) or not namespace.endswith(SEPARATOR):
            return None
        labels = namespace[len(self.root) : -len(SEPARATOR)].split(SEPARATOR)
        decoded = tuple(unquote(label, errors="surrogatepass") for label in labels)
        if not all(decoded) or self.encode(decoded) != namespace:
            return None
        return decoded

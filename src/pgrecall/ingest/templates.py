"""The indexed text: what gets embedded and keyword-indexed, rendered from content + metadata.

A template such as ``"{speaker}: {content}"`` or ``"{date} {speaker}: {content}"`` puts names and
dates into both the vector and the keyword index; ``content`` is stored and returned as given.
The store has one template, overridable per namespace (exact name or ``prefix*``). Missing
metadata fields render as nothing. Templates are part of the embedding space.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from typing import Any

from pgrecall.errors import ConfigurationError

DEFAULT_TEMPLATE = "{content}"


def check_template(template: str) -> str:
    """Refuse templates with attribute or index access, conversions, or no fields at all."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigurationError(f"template {template!r} is malformed: {exc}") from exc
    fields = [name for _, name, _, _ in parts if name is not None]
    if not fields:
        raise ConfigurationError(f"template {template!r} names no field; use {{content}}")
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ConfigurationError(
                f"template {template!r}: write plain fields like {{speaker}}, not {{{name}}}"
            )
    return template


class _Fields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


class TextTemplates:
    """The store's template and its per-namespace overrides."""

    def __init__(self, default: str, per_namespace: Mapping[str, str] | None = None) -> None:
        self.default = check_template(default)
        self.per_namespace = {k: check_template(v) for k, v in (per_namespace or {}).items()}

    def template_for(self, namespace: str) -> str:
        """Exact name first, then the longest matching ``prefix*``, then the default."""
        if namespace in self.per_namespace:
            return self.per_namespace[namespace]
        prefixes = [
            p for p in self.per_namespace if p.endswith("*") and namespace.startswith(p[:-1])
        ]
        return self.per_namespace[max(prefixes, key=len)] if prefixes else self.default

    def render(self, namespace: str, content: str, metadata: Mapping[str, Any]) -> str | None:
        """The indexed text, or None when it is the content itself."""
        template = self.template_for(namespace)
        if template == DEFAULT_TEMPLATE:
            return None
        fields = _Fields({k: _text(v) for k, v in metadata.items() if isinstance(k, str)})
        fields["content"] = content
        rendered = " ".join(template.format_map(fields).split())
        return rendered if rendered != content else None

    def identity(self) -> str:
        """A stable text naming these templates ('' for the plain default)."""
        if self.default == DEFAULT_TEMPLATE and not self.per_namespace:
            return ""
        return json.dumps(
            {"default": self.default, "namespaces": self.per_namespace}, sort_keys=True
        )


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)

from __future__ import annotations

import pytest

from pgrecall.errors import ConfigurationError
from pgrecall.ingest.templates import TextTemplates, check_template


def test_render_fills_metadata_and_skips_the_plain_default() -> None:
    templates = TextTemplates(
        "{date} {speaker}: {content}", {"raw-*": "{content}", "x": "{content} #{tag}"}
    )
    assert templates.render("chat", "hello", {"speaker": "Ada", "date": "2024-05-01"}) == (
        "2024-05-01 Ada: hello"
    )
    assert templates.render("chat", "hello", {}) == ": hello"
    assert templates.render("raw-log", "hello", {"speaker": "Ada"}) is None
    assert templates.render("x", "hi", {"tag": ["a", "b"]}) == 'hi #["a", "b"]'
    assert TextTemplates("{content}").identity() == ""
    assert "speaker" in templates.identity()


@pytest.mark.parametrize(
    "bad", ["no fields", "{content.__class__}", "{0}", "{content!r}", "{a:>9}", "{"]
)
def test_unsafe_or_malformed_templates_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        check_template(bad)

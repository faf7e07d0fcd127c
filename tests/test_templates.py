from __future__ import annotations

import pytest

from pgrecall.errors import ConfigurationError
from pgrecall.ingest.templates import AUTO_TEMPLATE, TextTemplates, check_template


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


def test_auto_puts_who_and_when_before_the_content_when_the_metadata_has_them() -> None:
    auto = TextTemplates(AUTO_TEMPLATE)
    turn = {"speaker": "Caroline", "session_date": "1:56 pm on 8 May, 2023", "turn": 3}
    assert auto.render("chat", "I went to a  support group.", turn) == (
        "1:56 pm on 8 May, 2023 Caroline: I went to a support group."
    )
    assert auto.render("chat", "hi", {"speaker": "Ada"}) == "Ada: hi"
    assert auto.render("chat", "hi", {"date": "2024-05-01", "kind": "x"}) == "2024-05-01 hi"
    # session_date is preferred to date; empty or null values count as missing
    assert auto.render("chat", "hi", {"date": "d2", "session_date": "d1"}) == "d1 hi"
    assert auto.render("chat", "hi", {"speaker": "", "date": None}) is None
    assert auto.render("docs", "an abstract", {"doc": "x"}) is None  # the content itself
    assert auto.identity() not in ("", TextTemplates("{speaker}: {content}").identity())


@pytest.mark.parametrize(
    "bad", ["no fields", "{content.__class__}", "{0}", "{content!r}", "{a:>9}", "{"]
)
def test_unsafe_or_malformed_templates_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        check_template(bad)

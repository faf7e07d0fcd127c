"""pgrecall history, invalidate, audit and the --as-of / --valid-at options (issue 20, point 8),
run as the installed command would be."""

from __future__ import annotations

import getpass
import json
from datetime import datetime, timedelta

from .test_cli import _pgrecall, _store_env


def test_a_fact_that_changes_on_the_command_line(migrated_dsn: str) -> None:
    environment = _store_env(migrated_dsn)
    first = _pgrecall(
        "remember", "Ada lives in London", "-n", "ada", "--key", "home", **environment
    )
    assert first.returncode == 0, first.stderr
    memory_id = first.stdout.strip()
    second = _pgrecall(
        "remember", "Ada lives in Paris", "-n", "ada", "--key", "home", **environment
    )
    assert second.stdout.strip() == memory_id

    history = _pgrecall("history", "--key", "home", "-n", "ada", "--json", **environment)
    assert history.returncode == 0, history.stderr
    versions = json.loads(history.stdout)["versions"]
    assert [(v["version"], v["content"]) for v in versions] == [
        (1, "Ada lives in London"),
        (2, "Ada lives in Paris"),
    ]
    table = _pgrecall("history", memory_id, **environment)
    assert "Ada lives in London" in table.stdout
    assert "now" in table.stdout

    then = datetime.fromisoformat(versions[1]["current_from"]) - timedelta(microseconds=1)
    recalled = _pgrecall(
        "recall",
        "Ada",
        "-n",
        "ada",
        "--mode",
        "keyword",
        "--as-of",
        then.isoformat(),
        "--json",
        **environment,
    )
    assert recalled.returncode == 0, recalled.stderr
    assert [hit["content"] for hit in json.loads(recalled.stdout)["hits"]] == [
        "Ada lives in London"
    ]

    ended = _pgrecall("invalidate", memory_id, "--reason", "moved", "--json", **environment)
    assert ended.returncode == 0, ended.stderr
    assert json.loads(ended.stdout)["invalid_reason"] == "moved"
    hidden = _pgrecall("recall", "Ada", "-n", "ada", "--mode", "keyword", "--json", **environment)
    assert json.loads(hidden.stdout)["hits"] == []
    shown = _pgrecall(
        "recall",
        "Ada",
        "-n",
        "ada",
        "--mode",
        "keyword",
        "--include-invalid",
        "--json",
        **environment,
    )
    assert [hit["content"] for hit in json.loads(shown.stdout)["hits"]] == ["Ada lives in Paris"]

    audit = _pgrecall("audit", "-n", "ada", "--json", **environment)
    assert audit.returncode == 0, audit.stderr
    entries = json.loads(audit.stdout)["entries"]
    assert [e["action"] for e in entries] == ["invalidate", "supersede", "create"]
    assert {e["actor"] for e in entries} == {f"user:{getpass.getuser()}"}


def test_bad_times_are_one_line_errors(migrated_dsn: str) -> None:
    environment = _store_env(migrated_dsn)
    for arguments, message in [
        (["recall", "q", "-n", "a", "--as-of", "yesterday"], "--as-of takes an ISO 8601 time"),
        (["list", "-n", "a", "--as-of", "2024-01-01T00:00:00"], "--as-of takes an ISO 8601"),
        (
            [
                "remember",
                "x",
                "-n",
                "a",
                "--valid-from",
                "2024-01-01T00:00:00Z",
                "--valid-until",
                "2020-01-01T00:00:00Z",
            ],
            "valid_from must come before valid_until",
        ),
        (["history", "-n", "a"], "history takes a memory id or a key"),
    ]:
        completed = _pgrecall(*arguments, **environment)
        assert completed.returncode == 2, (arguments, completed.stdout, completed.stderr)
        assert message in completed.stderr, (arguments, completed.stderr)
        assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgrecall.config import DEFAULT_OLLAMA_MODEL, LOCAL_MODEL, load_settings, ollama_host_to_url
from pgrecall.embedding.space import configured_space
from pgrecall.errors import ConfigurationError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("PGRECALL_") or name == "OLLAMA_HOST":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults() -> None:
    settings = load_settings()
    assert settings.database_url is None
    assert settings.embedder == "ollama"
    assert settings.model == DEFAULT_OLLAMA_MODEL
    assert settings.ollama_url == "http://localhost:11434"
    assert settings.data_dir.name == "pgrecall"
    assert configured_space(settings).dimensions == 1024


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGRECALL_DATABASE_URL", "postgresql://u:p@db:5432/mem")
    monkeypatch.setenv("PGRECALL_EMBED_MODEL", "nomic-embed-text")
    monkeypatch.setenv("PGRECALL_EMBED_DIMENSIONS", "256")
    monkeypatch.setenv("PGRECALL_OLLAMA_OPTIONS", '{"num_ctx": 512}')
    settings = load_settings()
    assert settings.database_url == "postgresql://u:p@db:5432/mem"
    assert settings.model == "nomic-embed-text"
    assert settings.ollama_options == {"num_ctx": 512}
    space = configured_space(settings)
    assert space.dimensions == 256
    assert space.document_prefix == "search_document: "
    assert space.query_prefix == "search_query: "


def test_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PGRECALL_EMBEDDER=local\nPGRECALL_DATA_DIR=/srv/pgrecall\n")
    settings = load_settings()
    assert settings.embedder == "local"
    assert settings.model == LOCAL_MODEL
    assert settings.data_dir == Path("/srv/pgrecall")
    assert configured_space(settings).dimensions == 384


@pytest.mark.parametrize(
    ("ollama_host", "expected"),
    [
        ("0.0.0.0", "http://127.0.0.1:11434"),  # noqa: S104
        (":11500", "http://127.0.0.1:11500"),
        ("gpu-box", "http://gpu-box:11434"),
        ("gpu-box:9000", "http://gpu-box:9000"),
        ("https://ollama.example", "https://ollama.example:443"),
        ("http://10.0.0.5/ollama/", "http://10.0.0.5:80/ollama"),
        ("[::1]:11434", "http://[::1]:11434"),
    ],
)
def test_ollama_host_is_honoured(
    monkeypatch: pytest.MonkeyPatch, ollama_host: str, expected: str
) -> None:
    assert ollama_host_to_url(ollama_host) == expected
    monkeypatch.setenv("OLLAMA_HOST", ollama_host)
    assert load_settings().ollama_url == expected


def test_pgrecall_url_wins_over_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "elsewhere:1")
    monkeypatch.setenv("PGRECALL_OLLAMA_URL", "http://127.0.0.1:2")
    assert load_settings().ollama_url == "http://127.0.0.1:2"


def test_every_bad_value_is_listed_in_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGRECALL_EMBEDDER", "openai")
    monkeypatch.setenv("PGRECALL_EMBED_DIMENSIONS", "-3")
    monkeypatch.setenv("PGRECALL_DATABASE_URL", "mysql://x")
    monkeypatch.setenv("PGRECALL_EMBED_BATCH_SIZE", "many")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    for name in ("EMBEDDER", "EMBED_DIMENSIONS", "DATABASE_URL", "EMBED_BATCH_SIZE"):
        assert f"PGRECALL_{name}=" in message
    assert "'openai'" in message
    assert "postgresql://" in message


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MAX_CONTENT_CHARS", "200001", "less than or equal to 200000"),
        ("MAX_CONTENT_CHARS", "0", "greater than or equal to 1"),
        ("HYBRID_VECTOR_WEIGHT", "101", "must be 0 or a number from 1e-06 to 100"),
        ("HYBRID_KEYWORD_WEIGHT", "1e-9", "must be 0 or a number from 1e-06 to 100"),
        ("HYBRID_KEYWORD_WEIGHT", "-1", "must be 0 or a number from 1e-06 to 100"),
        ("HYBRID_VECTOR_WEIGHT", "inf", "must be 0 or a number from 1e-06 to 100"),
        ("HYBRID_VECTOR_WEIGHT", "nan", "must be 0 or a number from 1e-06 to 100"),
        ("HYBRID_FUSION", "zscore", "Input should be 'rrf' or 'scores'"),
        ("HYBRID_FUSION", "", "Input should be 'rrf' or 'scores'"),
    ],
)
def test_sizes_and_weights_have_bounds(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"PGRECALL_{variable}", value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert f"PGRECALL_{variable}={value!r}: " in str(caught.value)
    assert message in str(caught.value)


# Garbage for the settings of re-embedding and neighbours: below, at and past their bounds,
# not a number, not finite, not whole.
GARBAGE_SETTINGS = [
    (variable, value)
    for variable in ("REEMBED_RATE", "SPACE_RECHECK_SECONDS")
    for value in ("-1", "0", "1e400", "1e308", "inf", "-inf", "nan", "many", "", "0x10")
] + [
    (variable, value)
    for variable in ("REEMBED_BATCH_SIZE", "RECALL_NEIGHBOURS")
    for value in ("-1", "99999999999999999999", "1.5", "1e3", "nan", "inf", "many", "", "true")
]


@pytest.mark.parametrize(("variable", "value"), GARBAGE_SETTINGS)
def test_garbage_settings_are_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(f"PGRECALL_{variable}", value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"invalid settings: PGRECALL_{variable}={value!r}: ")
    assert "\n" not in message


def test_a_long_bad_value_is_cut_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGRECALL_NAMESPACE_TEMPLATES", "{" + '"a": "b", ' * 5000)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith('invalid settings: PGRECALL_NAMESPACE_TEMPLATES=\'{"a": "b", ')
    assert "... (50003 characters)" in message
    assert len(message) < 300


def test_every_bad_value_is_on_the_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGRECALL_REEMBED_RATE", "nan")
    monkeypatch.setenv("PGRECALL_SPACE_RECHECK_SECONDS", "1e308")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert str(caught.value) == (
        "invalid settings: PGRECALL_SPACE_RECHECK_SECONDS='1e308': Input should be less than "
        "or equal to 3600; PGRECALL_REEMBED_RATE='nan': Input should be a finite number"
    )


def test_the_bounds_themselves_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in (
        ("MAX_CONTENT_CHARS", "200000"),
        ("HYBRID_VECTOR_WEIGHT", "0"),
        ("HYBRID_KEYWORD_WEIGHT", "100"),
    ):
        monkeypatch.setenv(f"PGRECALL_{variable}", value)
    settings = load_settings()
    assert (settings.max_content_chars, settings.hybrid_vector_weight) == (200_000, 0)
    assert settings.hybrid_keyword_weight == 100


def test_local_embedder_refuses_another_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGRECALL_EMBEDDER", "local")
    monkeypatch.setenv("PGRECALL_EMBED_MODEL", "nomic-embed-text")
    with pytest.raises(ConfigurationError, match="local embedder runs only"):
        load_settings()


def test_unknown_model_needs_dimensions() -> None:
    settings = load_settings(embed_model="my-own-embedder")
    with pytest.raises(ConfigurationError, match="PGRECALL_EMBED_DIMENSIONS"):
        configured_space(settings)
    assert configured_space(load_settings(embed_model="my-own-embedder", embed_dimensions=512))


def test_oversized_models_must_be_shortened() -> None:
    with pytest.raises(ConfigurationError, match="at most 2000"):
        configured_space(load_settings(embed_model="qwen3-embedding:8b"))
    space = configured_space(load_settings(embed_model="qwen3-embedding:8b", embed_dimensions=1024))
    assert space.dimensions == 1024
    assert space.query_prefix.startswith("Instruct: ")
    with pytest.raises(ConfigurationError, match="larger than"):
        configured_space(load_settings(embed_model="all-minilm", embed_dimensions=512))


def test_prefix_overrides_apply() -> None:
    settings = load_settings(
        embed_model="mxbai-embed-large", query_prefix="", document_prefix="d: "
    )
    space = configured_space(settings)
    assert (space.document_prefix, space.query_prefix) == ("d: ", "")
    assert space.model == "mxbai-embed-large:latest"


def test_json_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGRECALL_API_KEYS", '{"0123456789abcdef": ["agent-*"]}')
    monkeypatch.setenv("PGRECALL_NAMESPACE_TEMPLATES", '{"chat-*": "{speaker}: {content}"}')
    settings = load_settings()
    assert settings.api_keys == {"0123456789abcdef": ["agent-*"]}
    assert settings.namespace_templates == {"chat-*": "{speaker}: {content}"}
    monkeypatch.setenv("PGRECALL_API_KEYS", '{"short": ["*"]}')
    with pytest.raises(ConfigurationError, match="at least 16 characters"):
        load_settings()
    monkeypatch.setenv("PGRECALL_API_KEYS", "{not json")
    with pytest.raises(ConfigurationError, match="is not JSON"):
        load_settings()


VALID_KEY = "valid-key-0123456789-secret"


@pytest.mark.parametrize(
    "keys",
    [
        f'{{"{VALID_KEY}": ["a"], "short-secret": ["b"]}}',
        f'{{"{VALID_KEY}": ["a"], "another-key-0123456789": []}}',
        f'{{"{VALID_KEY}": "a"}}',
        f'{{"{VALID_KEY}": ["a"],',
    ],
    ids=["short key", "no namespace", "not a list", "not JSON"],
)
def test_bad_api_keys_are_never_echoed(monkeypatch: pytest.MonkeyPatch, keys: str) -> None:
    monkeypatch.setenv("PGRECALL_API_KEYS", keys)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert "PGRECALL_API_KEYS=<hidden>" in message
    for secret in (VALID_KEY, "short-secret", "another-key-0123456789"):
        assert secret not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mysql://ada:s3cret@db.example/mem", "mysql://ada:***@db.example/mem"),
        ("host=db.example password=s3cret user=ada", "host=db.example password=*** user=ada"),
        ("mysql://db.example/mem?user=ada&password=s3cret", "?user=ada&password=***"),
    ],
)
def test_a_bad_database_url_is_shown_without_its_password(
    monkeypatch: pytest.MonkeyPatch, url: str, shown: str
) -> None:
    monkeypatch.setenv("PGRECALL_DATABASE_URL", url)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "s3cret" not in str(caught.value)
    assert shown in str(caught.value)


def test_a_bad_ollama_url_is_shown_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGRECALL_OLLAMA_URL", "http://ada:s3cret@gpu-box:port")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "s3cret" not in str(caught.value)
    assert "gpu-box" in str(caught.value)


def test_settings_keep_their_secrets_out_of_repr() -> None:
    settings = load_settings(
        database_url="postgresql://ada:s3cret@db.example/mem", api_keys={VALID_KEY: ["*"]}
    )
    assert "s3cret" not in repr(settings)
    assert VALID_KEY not in repr(settings)
    assert settings.api_keys == {VALID_KEY: ["*"]}

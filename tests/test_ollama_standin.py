"""The stand-in answers as ../shared/ollama-embed-api.md says the real server does."""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .ollama_standin import BUSY_MESSAGE, Fault, OllamaStandin


@pytest.fixture
def http(ollama: OllamaStandin) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ollama.url, timeout=30) as client:
        yield client


def _embed(http: httpx.Client, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post("/api/embed", content=content)


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"", 400, "missing request body"),
        (
            {"model": "all-minilm", "input": "x", "truncate": "yes"},
            400,
            "json: cannot unmarshal string into Go struct field EmbedRequest.truncate of type bool",
        ),
        (
            {"model": "all-minilm", "input": "x", "dimensions": 256.5},
            400,
            "json: cannot unmarshal 256.5 into Go struct field EmbedRequest.dimensions of type int",
        ),
        ({"input": "x"}, 404, "model '' not found"),
        ({"model": "bad name!", "input": "x"}, 400, "invalid model name"),
        ({"model": "all-minilm", "input": 42}, 400, "invalid input type"),
        ({"model": "all-minilm", "input": ["a", None]}, 400, "invalid input type"),
        ({"model": "foo", "input": "x"}, 404, 'model "foo" not found, try pulling it first'),
        ({"model": "llama3.2", "input": "x"}, 501, "This server does not support embeddings"),
        (
            {"model": "all-minilm", "input": "x", "keep_alive": "300"},
            400,
            'time: missing unit in duration "300"',
        ),
        ({"model": "all-minilm", "input": "x", "keep_alive": True}, 400, "Unsupported type"),
        (
            {"model": "all-minilm", "input": "x", "options": {"num_ctx": "big"}},
            500,
            'option "num_ctx" must be of type integer',
        ),
        (
            {"model": "nomic-embed-text", "input": "word " * 3000, "truncate": False},
            400,
            "the input length exceeds the context length",
        ),
    ],
)
def test_error_table(http: httpx.Client, body: Any, status: int, error: str) -> None:
    response = _embed(http, body)
    assert response.status_code == status
    assert response.json()["error"].startswith(error)


@pytest.mark.parametrize("empty", ["", [], None])
def test_empty_input_returns_no_vectors(http: httpx.Client, empty: Any) -> None:
    body: dict[str, Any] = {"model": "All-MiniLM"}
    if empty is not None:
        body["input"] = empty
    response = _embed(http, body)
    assert response.status_code == 200
    assert response.json() == {"model": "All-MiniLM", "embeddings": []}


def test_vectors_are_unit_length_in_input_order(http: httpx.Client) -> None:
    texts = ["first text", "second, longer text about cats", "third"]
    together = _embed(http, {"model": "nomic-embed-text", "input": texts}).json()
    assert list(together) == [
        "model",
        "embeddings",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
    ]
    for text, vector in zip(texts, together["embeddings"], strict=True):
        alone = _embed(http, {"model": "nomic-embed-text", "input": text}).json()
        assert alone["embeddings"][0] == vector
        assert math.fsum(v * v for v in vector) == pytest.approx(1.0, abs=1e-5)
    assert together["prompt_eval_count"] == sum(
        len(t.replace(",", " ,").split()) + 2 for t in texts
    )


def test_dimensions_cut_and_renormalise(http: httpx.Client) -> None:
    for dimensions, expected in ((256, 256), (0, 768), (4096, 768), (-5, 768)):
        body = {"model": "nomic-embed-text", "input": "hello", "dimensions": dimensions}
        vector = _embed(http, body).json()["embeddings"][0]
        assert len(vector) == expected
        assert math.fsum(v * v for v in vector) == pytest.approx(1.0, abs=1e-5)


def test_truncation_keeps_the_head(http: httpx.Client) -> None:
    head = "alpha beta gamma"
    options = {"num_ctx": 5}
    cut = _embed(http, {"model": "nomic-embed-text", "input": head + " delta", "options": options})
    short = _embed(http, {"model": "nomic-embed-text", "input": head, "options": options})
    assert cut.json()["embeddings"] == short.json()["embeddings"]
    assert cut.json()["prompt_eval_count"] == 5


def test_legacy_endpoint_is_not_normalised(http: httpx.Client) -> None:
    body = {"model": "nomic-embed-text", "prompt": "why is the sky blue?"}
    vector = http.post("/api/embeddings", json=body).json()["embedding"]
    assert math.sqrt(math.fsum(v * v for v in vector)) == pytest.approx(22.6, rel=1e-3)
    assert http.post("/api/embeddings", json={"prompt": "x"}).json() == {
        "error": "model is required"
    }
    assert http.post("/api/embeddings", json={"model": "all-minilm", "prompt": ""}).json() == {
        "embedding": []
    }


def test_show_tags_version_root(http: httpx.Client) -> None:
    assert http.get("/").text == "Ollama is running"
    assert http.get("/api/version").json() == {"version": "0.33.0"}
    names = [m["name"] for m in http.get("/api/tags").json()["models"]]
    assert "all-minilm:latest" in names
    assert "bge-m3:latest" not in names
    shown = http.post("/api/show", json={"model": "nomic-embed-text"}).json()
    assert shown["model_info"]["general.architecture"] == "nomic-bert"
    assert shown["model_info"]["nomic-bert.embedding_length"] == 768
    assert shown["capabilities"] == ["embedding"]
    missing = http.post("/api/show", json={"model": "foo"})
    assert (missing.status_code, missing.json()) == (404, {"error": "model 'foo:latest' not found"})
    assert http.get("/api/nothing").text == "404 page not found"
    assert http.get("/api/embed").status_code == 405


def test_pull_streams_ndjson(http: httpx.Client) -> None:
    response = http.post("/api/pull", json={"model": "bge-m3"})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[0] == {"status": "pulling manifest"}
    assert lines[-1] == {"status": "success"}
    assert any("completed" in line for line in lines)
    assert "bge-m3:latest" in [m["name"] for m in http.get("/api/tags").json()["models"]]
    unknown = http.post("/api/pull", json={"model": "no-such-model"})
    assert unknown.status_code == 200
    assert unknown.text.splitlines()[-1] == (
        '{"error": "pull model manifest: file does not exist"}'
    )


def test_faults(http: httpx.Client, ollama: OllamaStandin) -> None:
    body = {"model": "nomic-embed-text", "input": ["a", "b"]}
    ollama.script(Fault.BUSY, Fault.WRONG_COUNT, Fault.NAN)
    busy = _embed(http, body)
    assert (busy.status_code, busy.json()["error"]) == (503, BUSY_MESSAGE)
    assert len(_embed(http, body).json()["embeddings"]) == 1
    assert "NaN" in _embed(http, body).text
    assert len(_embed(http, body).json()["embeddings"]) == 2
    ollama.script(Fault.DROP)
    with pytest.raises(httpx.RemoteProtocolError):
        _embed(http, body)


def test_answers_are_sent_without_waiting_for_a_delayed_ack(
    ollama: OllamaStandin, http: httpx.Client
) -> None:
    # Headers and body are separate writes: with Nagle's algorithm on, each answer on a kept-alive
    # connection waited ~40 ms for the client's delayed ACK, in every test that embeds.
    assert _embed(http, {"model": "all-minilm", "input": "x"}).status_code == 200
    server = ollama._server
    assert server is not None
    with server.connections_lock:
        connections = list(server.open_connections)
    assert connections
    for connection in connections:
        assert connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0

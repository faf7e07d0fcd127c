"""Known embedding models: size, context length and the prefixes for documents and queries.

Ollama applies no prefix itself; models trained with instructions need them client-side.
Figures come from ../shared/ollama-embed-api.md §9; `/api/show` is the authority at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

_RETRIEVAL_QUERY = "Represent this sentence for searching relevant passages: "
_QWEN3_QUERY = (
    "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What pgrecall knows of one model (by Ollama name, tag included)."""

    name: str
    dimensions: int
    context_length: int
    document_prefix: str = ""
    query_prefix: str = ""


_MODELS = (
    ModelInfo("all-minilm:latest", 384, 256),
    ModelInfo("all-minilm:22m", 384, 256),
    ModelInfo("all-minilm:33m", 384, 256),
    ModelInfo("nomic-embed-text:latest", 768, 2048, "search_document: ", "search_query: "),
    ModelInfo("nomic-embed-text:v1.5", 768, 2048, "search_document: ", "search_query: "),
    ModelInfo("mxbai-embed-large:latest", 1024, 512, "", _RETRIEVAL_QUERY),
    ModelInfo("mxbai-embed-large:335m", 1024, 512, "", _RETRIEVAL_QUERY),
    ModelInfo("snowflake-arctic-embed:latest", 1024, 512, "", _RETRIEVAL_QUERY),
    ModelInfo("snowflake-arctic-embed:335m", 1024, 512, "", _RETRIEVAL_QUERY),
    ModelInfo("snowflake-arctic-embed:l", 1024, 512, "", _RETRIEVAL_QUERY),
    ModelInfo("snowflake-arctic-embed:137m", 768, 2048, "", _RETRIEVAL_QUERY),
    ModelInfo("snowflake-arctic-embed:110m", 768, 512, "", _RETRIEVAL_QUERY),
    ModelInfo("snowflake-arctic-embed:33m", 384, 512, "", _RETRIEVAL_QUERY),
    ModelInfo("snowflake-arctic-embed:22m", 384, 512, "", _RETRIEVAL_QUERY),
    ModelInfo("snowflake-arctic-embed2:latest", 1024, 8192, "", "query: "),
    ModelInfo("bge-m3:latest", 1024, 8192),
    ModelInfo(
        "embeddinggemma:latest",
        768,
        2048,
        "title: none | text: ",
        "task: search result | query: ",
    ),
    ModelInfo(
        "embeddinggemma:300m",
        768,
        2048,
        "title: none | text: ",
        "task: search result | query: ",
    ),
    ModelInfo("qwen3-embedding:latest", 4096, 32768, "", _QWEN3_QUERY),
    ModelInfo("qwen3-embedding:8b", 4096, 32768, "", _QWEN3_QUERY),
    ModelInfo("qwen3-embedding:4b", 2560, 32768, "", _QWEN3_QUERY),
    ModelInfo("qwen3-embedding:0.6b", 1024, 32768, "", _QWEN3_QUERY),
)
_BY_NAME = {info.name: info for info in _MODELS}


def canonical_name(model: str) -> str:
    """Ollama's matching: case-insensitive, tag ``latest`` when none is given."""
    name = model.strip().lower()
    last_segment = name.rsplit("/", 1)[-1]
    return name if ":" in last_segment else f"{name}:latest"


def known_model(model: str) -> ModelInfo | None:
    """The facts for ``model`` (any case, tag optional); None when pgrecall does not know it."""
    return _BY_NAME.get(canonical_name(model))

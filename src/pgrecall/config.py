"""Settings: the only place pgrecall reads the environment (prefix ``PGRECALL_``, ``.env`` too)."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pgrecall.errors import ConfigurationError

ENV_PREFIX = "PGRECALL_"
OLLAMA_DEFAULT_PORT = 11434
DEFAULT_OLLAMA_MODEL = "mxbai-embed-large"
LOCAL_MODEL = "multilingual-e5-small-q4"
# pgvector's HNSW index accepts `vector` columns of at most 2,000 dimensions.
MAX_INDEXED_DIMENSIONS = 2000
# The most PGRECALL_MAX_CONTENT_CHARS may be. The keyword index's tsvector holds at most
# 1,048,575 bytes of lexemes, and the worst text measured (distinct 10-character words of
# 4-byte characters) needs 4 of them a character: past ~262,000 characters the write fails.
# 200,000 leaves room for the words a template adds.
MAX_CONTENT_CHARS = 200_000
# Fusion weights, of the settings and of a recall: 0 turns a ranking off; one below the minimum
# underflows PostgreSQL's float8 division (weight / (rrf_k + rank)), an error instead of a
# ranking; the maximum puts the ratio of the two at 1e8, far past any useful tilt.
MIN_FUSION_WEIGHT = 1e-6
MAX_FUSION_WEIGHT = 100.0
# How hybrid recall fuses its rankings: by rank (reciprocal-rank fusion) or by score (each
# ranking's scores in standard deviations, recall/sql.py's scores_fused).
FusionMethod = Literal["rrf", "scores"]
# A switch waits for every process to read the active space again: an hour is already a long
# wait for `pgrecall reembed --switch`, and past it the wait is a mistake (1e308: forever).
MAX_SPACE_RECHECK_SECONDS = 3600.0
# Texts per second of a re-embedding's throttle: a million is far past what any embedder takes
# (the local model: ~100/s); the bound keeps a typo (1e400, read as infinity) from passing.
MAX_REEMBED_RATE = 1e6


# A libpq keyword or URL parameter that carries a password.
_PASSWORD_PARAMETER = re.compile(r"(password\s*=\s*)[^&\s]*", re.IGNORECASE)
_HIDDEN = "<hidden>"
_SHOWN_CHARS = 80  # of a bad value, in an error


def redact_url(url: str) -> str:
    """``url`` (a DSN, an Ollama URL) with its password shown as ``***``, whether in the user
    part or as a ``password=`` parameter, for messages and logs; everything else as given."""
    masked = _PASSWORD_PARAMETER.sub(r"\1***", url)
    scheme, sep, rest = masked.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not sep or not at:
        return masked
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{location}" if ":" in credentials else masked


def ollama_host_to_url(value: str) -> str:
    """Turn an ``OLLAMA_HOST``-style value (``0.0.0.0``, ``:11434``, ``host:port``) into a URL.

    Follows Ollama's own parsing (``envconfig.Host``): scheme defaults to http, port to 11434
    (80/443 when a scheme is given without one). A bind-all address is not somewhere a client
    can send to, so it becomes loopback.
    """
    text = value.strip()
    scheme, sep, rest = text.partition("://")
    default_port = OLLAMA_DEFAULT_PORT
    if not sep:
        scheme, rest = "http", text
    elif scheme == "http":
        default_port = 80
    elif scheme == "https":
        default_port = 443
    else:
        raise ValueError(f"unsupported scheme {scheme!r}: use http or https")
    hostport, _, path = rest.partition("/")
    parsed = urlsplit(f"//{hostport}")
    try:
        port = parsed.port or default_port
    except ValueError as exc:
        raise ValueError(f"invalid port in {redact_url(value)!r}") from exc
    host = parsed.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):  # noqa: S104 - translating a bind address, not binding
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{ipaddress.ip_address(host)}]"
    suffix = f"/{path}".rstrip("/")
    return f"{scheme}://{host}:{port}{suffix}"


FUSION_WEIGHT_RANGE = f"must be 0 or a number from {MIN_FUSION_WEIGHT:g} to {MAX_FUSION_WEIGHT:g}"


def fusion_weight_allowed(value: object) -> bool:
    """Whether ``value`` may weigh a ranking in hybrid fusion (a number, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value == 0 or MIN_FUSION_WEIGHT <= value <= MAX_FUSION_WEIGHT


def _seconds(default: float, description: str, *, most: float | None = None) -> Any:
    """A setting in seconds: a duration, so finite and above zero, at most ``most``."""
    return Field(default=default, gt=0, le=most, allow_inf_nan=False, description=description)


def _count(default: int, description: str, *, most: int | None = None) -> Any:
    """A setting that counts something (texts, tries, rows): at least one, at most ``most``."""
    return Field(default=default, ge=1, le=most, description=description)


class Settings(BaseSettings):
    """Everything configurable, validated once at start."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL DSN; unset runs the embedded PostgreSQL",
        repr=False,  # it may hold a password
    )
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("pgrecall")),
        description="where the embedded PostgreSQL keeps its data",
    )
    embedder: Literal["ollama", "local"] = Field(
        default="ollama", description="ollama (HTTP) or local (in-process multilingual-e5-small)"
    )
    ollama_url: str = Field(
        default=f"http://localhost:{OLLAMA_DEFAULT_PORT}",
        validation_alias=AliasChoices("PGRECALL_OLLAMA_URL", "OLLAMA_HOST", "ollama_url"),
        description="Ollama base URL; falls back to Ollama's own OLLAMA_HOST",
    )
    embed_model: str | None = Field(
        default=None,
        description=f"embedding model; default {DEFAULT_OLLAMA_MODEL} (ollama) or {LOCAL_MODEL}",
    )
    embed_dimensions: int | None = Field(
        default=None,
        ge=1,
        le=MAX_INDEXED_DIMENSIONS,
        description="vector size; unset means the model's full size",
    )
    document_prefix: str | None = Field(
        default=None, description="text put before every stored memory; unset = the model's own"
    )
    query_prefix: str | None = Field(
        default=None, description="text put before every query; unset = the model's own"
    )
    ollama_timeout: float = _seconds(120.0, "seconds per embed request")
    ollama_connect_timeout: float = _seconds(5.0, "seconds to connect")
    ollama_keep_alive: str | None = Field(
        default=None, description='how long Ollama keeps the model loaded ("5m", "-1")'
    )
    ollama_truncate: bool = Field(
        default=True, description="let Ollama cut over-long inputs (false = error instead)"
    )
    ollama_options: dict[str, Any] | None = Field(
        default=None, description='runner options as JSON, e.g. {"num_ctx": 512}'
    )
    ollama_max_attempts: int = _count(5, "tries per request", most=50)
    ollama_retry_budget: float = _seconds(60.0, "seconds spent retrying one request at most")
    embed_batch_size: int = _count(64, "texts per request", most=4096)
    embed_batch_chars: int = _count(64_000, "characters per request at most")
    embed_concurrency: int = _count(2, "requests in flight", most=64)
    query_batch_wait_ms: float = Field(
        default=1.0,
        ge=0,
        le=100,
        description="how long a recall's query waits for concurrent ones to share its embed "
        "call (0: each query alone)",
    )
    text_search_config: str = Field(
        default="pgrecall_simple",
        pattern=r"^[a-z_][a-z0-9_]*$",
        description="PostgreSQL text search configuration of keyword search (set at migration)",
    )
    index_template: str = Field(
        default="auto",
        description=(
            "text embedded and indexed, from content and metadata: '{speaker}: {content}'; "
            "auto: '<session_date or date> <speaker>: <content>' with what the metadata has"
        ),
    )
    context_key: str = Field(
        default="session",
        max_length=256,
        description="metadata key naming a memory's thread: index it with the ones before it "
        "(empty: off)",
    )
    context_window: int = Field(
        default=1, ge=1, le=8, description="memories before it in its thread indexed with one"
    )
    recall_neighbours: int = Field(
        default=0,
        ge=0,
        le=8,
        description="memories before and after each hit in its thread that a recall returns "
        "with it, unless the recall says (0: none)",
    )
    namespace_templates: dict[str, str] | None = Field(
        default=None,
        description='templates per namespace (exact or "prefix*"), as JSON',
    )
    auto_migrate: bool = Field(
        default=True, description="upgrade the schema when a store opens (false: refuse instead)"
    )
    max_content_chars: int = _count(
        100_000, "longest memory text accepted, in characters", most=MAX_CONTENT_CHARS
    )
    ingest_chunk_size: int = _count(250, "memories embedded and written per step", most=100_000)
    ingest_concurrent_writes: int = _count(
        2, "chunks of one remember call written at once, each on its own connection", most=64
    )
    inline_embed_timeout: float = _seconds(
        10.0,
        "seconds remember waits per embed request's worth of texts before storing "
        "memories as pending (not applied to the in-process model)",
    )
    worker: bool = Field(
        default=True, description="run the embedding worker inside every MemoryStore"
    )
    worker_batch_size: int = _count(64, "memories per claim", most=4096)
    worker_poll_seconds: float = _seconds(5.0, "the worker looks for due work at least this often")
    embed_max_attempts: int = _count(8, "worker tries before a memory is marked failed", most=100)
    embed_backoff_seconds: float = _seconds(
        2.0, "first retry delay of the worker; doubles per attempt"
    )
    embed_backoff_max_seconds: float = _seconds(300.0, "longest delay between two worker attempts")
    expired_grace_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="seconds an expired memory (already gone from every read) is kept before "
        "the worker deletes it",
    )
    expired_sweep_seconds: float = _seconds(60.0, "how often the worker deletes expired memories")
    audit_retention_days: int = Field(
        default=365,
        ge=0,
        description="days audit entries (who changed which memory, when) are kept; 0 keeps them",
    )
    exact_scan_max_rows: int = Field(
        default=20_000,
        ge=0,
        description="namespaces up to this size are searched exactly; larger ones by HNSW",
    )
    index_sweep_seconds: float = _seconds(
        30.0, "how often the worker looks for large namespaces to index"
    )
    index_batch_size: int = _count(
        1000, "rows moved into the HNSW graph per transaction", most=100_000
    )
    # Below it today's scan of the matching tsvectors is as fast (benchmarks/RESULTS.md, issue
    # 25) and the postings (larger than the memories themselves) are not worth their space.
    keyword_postings_min_rows: int = Field(
        default=2_000,
        ge=0,
        description="namespaces from this size get keyword postings (BM25 reads the query's "
        "lexemes only), written by the worker in the background",
    )
    keyword_postings_batch_size: int = _count(
        500, "memories whose keyword postings the worker writes per transaction", most=100_000
    )
    # Below it a namespace's rows are few enough to scan where they are, and a copy of its
    # vectors is not worth its space (benchmarks/RESULTS.md, issue 25).
    vector_copy_min_rows: int = Field(
        default=2_000,
        ge=0,
        description="namespaces from this size get a copy of their vectors in a narrow table "
        "(the exact scan reads it instead of the memories' rows), written by the worker in "
        "the background",
    )
    vector_copy_batch_size: int = _count(
        1000, "memories whose vectors the worker copies per transaction", most=100_000
    )
    # SciFact's 5,183 copies of 384 dimensions take 8 MB; a namespace at the exact-scan limit
    # (20,000) of 768, 61 MB (recall/vector_cache.py).
    vector_cache_mb: int = Field(
        default=256,
        ge=0,
        le=1_000_000,
        description="megabytes of vector copies each process keeps to score exact recall of "
        "copied namespaces in memory (0: off, every recall scans the copies in PostgreSQL)",
    )
    # SciFact's 5,183 abstracts hold ~600,000 postings: ~6 MB (recall/keyword_cache.py).
    keyword_cache_mb: int = Field(
        default=256,
        ge=0,
        le=1_000_000,
        description="megabytes of keyword postings each process keeps to score BM25 of large "
        "namespaces in memory (0: off, every recall reads its postings from PostgreSQL)",
    )
    space_recheck_seconds: float = _seconds(
        2.0,
        "how often a process reads the store's active embedding space again (learns of a "
        "pgrecall reembed --switch, which waits this long before it settles)",
        most=MAX_SPACE_RECHECK_SECONDS,
    )
    reembed_batch_size: int = _count(64, "memories embedded per pgrecall reembed batch", most=4096)
    reembed_rate: float | None = Field(
        default=None,
        gt=0,
        le=MAX_REEMBED_RATE,
        allow_inf_nan=False,
        description="texts per second each pgrecall reembed process sends the embedder at most "
        "(unset: no limit), so it keeps serving live traffic",
    )
    # Fusion defaults tuned on SciFact's train claims and checked on LoCoMo-dev
    # (benchmarks/RESULTS.md, issue 24).
    hybrid_fusion: FusionMethod = Field(
        default="scores",
        description="how hybrid recall fuses its rankings: scores (each ranking's scores in "
        "standard deviations, weighted and summed) or rrf (weight / (rrf_k + rank))",
    )
    hybrid_vector_weight: float = Field(
        default=1.0, description="weight of the vector ranking in hybrid fusion"
    )
    hybrid_keyword_weight: float = Field(
        default=1.0, description="weight of the keyword ranking in hybrid fusion"
    )
    hybrid_depth: int = _count(100, "candidates taken from each ranking before fusion", most=1000)
    hybrid_split: bool = Field(
        default=True,
        description="a hybrid recall running alone (no other recall in flight in the process, "
        "two pool connections free) runs its two rankings at once on two connections, then "
        "fuses them in a third statement; under load, one statement",
    )
    keyword_scoring: Literal["python", "sql"] = Field(
        default="python",
        description="BM25 of namespaces that read the keyword postings: scored in the server "
        "(numpy) from the query's postings, fetched by one statement, or in PostgreSQL's "
        "statement",
    )
    rrf_k: float = Field(
        default=5.0, gt=0, description="reciprocal-rank-fusion constant: 1 / (rrf_k + rank)"
    )
    bm25_k1: float = Field(default=0.9, ge=0, description="BM25 term-frequency saturation")
    bm25_b: float = Field(default=0.4, ge=0, le=1, description="BM25 length normalisation")
    # 100: graph recall@10 0.995 on 100k synthetic e5-like vectors (0.990 at 64) for +4% of p50
    # (2.65 against 2.56 ms), and 0.991 on SciFact's real e5 abstracts and claims (0.982 at 64);
    # 200 reaches 1.000 / 0.998 for +40% (benchmarks/RESULTS.md, "The synthetic corpus").
    hnsw_ef_search: int = _count(100, "HNSW candidate list size for large namespaces", most=1000)
    api_keys: dict[str, list[str]] | None = Field(
        default=None,
        description='HTTP API keys and the namespaces each may use, as JSON: {"key": ["ns", '
        '"prefix-*"]}; "*" is every namespace',
        repr=False,  # secrets
    )
    http_max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="largest HTTP request body accepted"
    )
    http_max_batch: int = _count(1000, "most memories one HTTP request may carry")
    mcp_namespaces: list[str] | None = Field(
        default=None,
        description='namespaces `pgrecall mcp` may use, as JSON: ["ns", "prefix-*"]; the first '
        "exact name is the default of a tool call that names none (--namespace overrides)",
    )
    pool_min_size: int = Field(default=1, ge=0, le=100, description="database pool minimum")
    pool_max_size: int = _count(10, "database pool maximum", most=1000)

    @field_validator("ollama_url", mode="before")
    @classmethod
    def _normalise_ollama_url(cls, value: object) -> object:
        if isinstance(value, str):
            return ollama_host_to_url(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        scheme = urlsplit(value).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("must start with postgresql:// (or postgres://)")
        return value

    @field_validator("hybrid_vector_weight", "hybrid_keyword_weight")
    @classmethod
    def _check_fusion_weight(cls, value: float) -> float:
        if not fusion_weight_allowed(value):
            raise ValueError(FUSION_WEIGHT_RANGE)
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_api_keys(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        if value is None:
            return None
        for key, namespaces in value.items():
            if len(key) < 16:
                raise ValueError("every API key needs at least 16 characters")
            if not namespaces:
                raise ValueError("every API key needs at least one namespace pattern")
        return value

    @field_validator("mcp_namespaces")
    @classmethod
    def _check_mcp_namespaces(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not all(name.strip() for name in value)):
            raise ValueError("must list at least one namespace, none of them empty")
        return value

    @field_validator(
        "ollama_options", "api_keys", "namespace_templates", "mcp_namespaces", mode="before"
    )
    @classmethod
    def _parse_json(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"is not JSON: {exc.msg}") from exc
        return value

    @model_validator(mode="after")
    def _check_combination(self) -> Settings:
        if self.embedder == "local" and self.embed_model not in (None, LOCAL_MODEL):
            raise ValueError(
                f"the local embedder runs only {LOCAL_MODEL}; unset PGRECALL_EMBED_MODEL "
                "or choose PGRECALL_EMBEDDER=ollama"
            )
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("PGRECALL_POOL_MIN_SIZE is larger than PGRECALL_POOL_MAX_SIZE")
        return self

    @property
    def model(self) -> str:
        """The embedding model in effect, defaults applied."""
        if self.embed_model is not None:
            return self.embed_model
        return LOCAL_MODEL if self.embedder == "local" else DEFAULT_OLLAMA_MODEL


def _field(location: tuple[int | str, ...]) -> str | None:
    """The field an error is about; a field read through an alias (OLLAMA_HOST) is located by
    the alias."""
    if not location:
        return None
    name = str(location[0]).lower()
    return "ollama_url" if name == "ollama_host" else name.removeprefix(ENV_PREFIX.lower())


def _env_name(location: tuple[int | str, ...]) -> str:
    if not location:
        return "settings"
    name = str(location[0])
    return name if name.isupper() else ENV_PREFIX + name.upper()  # an alias is the name already


def _shown(location: tuple[int | str, ...], value: object) -> str:
    """A bad value as a message may show it: API keys never, URLs without their password, and
    no more than ``_SHOWN_CHARS`` of it (a whole JSON file pasted into a variable is not a line
    of error)."""
    field = _field(location)
    if field == "api_keys":
        return _HIDDEN
    if field in ("database_url", "ollama_url") and isinstance(value, str):
        value = redact_url(value)
    shown = repr(value)
    if len(shown) <= _SHOWN_CHARS:
        return shown
    return f"{shown[:_SHOWN_CHARS]}... ({len(shown)} characters)"


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment (and overrides), or raise one ConfigurationError
    listing every bad value, on one line (a CLI prints it as its one line of error)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            where = _env_name(error["loc"])
            if error["loc"] and error["type"] != "missing":
                problems.append(f"{where}={_shown(error['loc'], error['input'])}: {message}")
            else:
                problems.append(f"{where}: {message}")
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from exc

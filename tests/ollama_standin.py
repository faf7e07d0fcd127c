"""A stand-in Ollama server on 127.0.0.1 that follows ../shared/ollama-embed-api.md.

Real HTTP (``http.server`` in a thread), Ollama's status codes and error strings, empty-input
and truncation behaviour, L2-normalised float32 vectors in input order. ``all-minilm`` answers
with the real local model's vectors (so tests through HTTP carry semantics); other embedding
models get deterministic bag-of-words vectors. Faults can be scripted or drawn at random:
latency, 429/503 busy, 500/502, dropped connection, NaN, wrong size, wrong count.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import hashlib
import json
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

VERSION = "0.33.0"
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
TOO_LONG_MESSAGE = "the input length exceeds the context length"
_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*(:[A-Za-z0-9._-]+)?$")
_TOKEN = re.compile(r"\w+|[^\w\s]")


class Fault(enum.Enum):
    """What the next /api/embed request suffers."""

    SLOW = "slow"
    BUSY = "busy"  # 503, Ollama's queue-full message
    RATE_LIMITED = "rate_limited"  # 429, as a proxy in front of Ollama would
    SERVER_ERROR = "server_error"  # 500
    BAD_GATEWAY = "bad_gateway"  # 502 from a proxy
    DROP = "drop"  # connection closed without a response
    NAN = "nan"  # a NaN inside a 200 (a broken or pre-0.14 server)
    WRONG_SIZE = "wrong_size"
    WRONG_COUNT = "wrong_count"
    UNNORMALISED = "unnormalised"  # first vector scaled by 3 (a server that forgot to normalise)


@dataclass
class StandinModel:
    """A model the stand-in knows; ``pulled`` ones answer, others can be pulled."""

    name: str
    architecture: str
    dimensions: int
    context_length: int
    num_ctx: int | None
    capabilities: tuple[str, ...] = ("embedding",)
    local_vectors: bool = False
    legacy_norm: float = 1.0
    pulled: bool = True


def default_models() -> dict[str, StandinModel]:
    models = [
        StandinModel("all-minilm:latest", "bert", 384, 512, 256, local_vectors=True),
        StandinModel("nomic-embed-text:latest", "nomic-bert", 768, 2048, 8192, legacy_norm=22.6),
        StandinModel("mxbai-embed-large:latest", "bert", 1024, 512, 512, legacy_norm=17.6),
        StandinModel("llama3.2:latest", "llama", 3072, 131072, None, ("completion", "tools")),
        StandinModel("bge-m3:latest", "bert", 1024, 8192, None, pulled=False),
    ]
    return {model.name: model for model in models}


def canonical(name: str) -> str:
    name = name.strip().lower()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@functools.lru_cache(maxsize=1)
def _local_model() -> Any:
    from pgrecall.embedding.local import LocalModel

    return LocalModel()


@functools.lru_cache(maxsize=65536)
def _word_vector(word: str, dimensions: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dimensions)


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _hash_vector(tokens: list[str], dimensions: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    total = _word_vector("[CLS]", dimensions) * 0.1
    for token in tokens:
        total = total + _word_vector(token, dimensions)
    return total


def _normalise(vector: np.ndarray[Any, Any]) -> list[float]:
    as32 = np.asarray(vector, dtype=np.float32)
    norm = float(np.sqrt(np.sum(as32 * as32)))
    scaled = as32 / max(norm, 1e-12)
    return [float(f"{v:.9g}") for v in scaled.astype(np.float32)]


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Record:
    """One request the stand-in served."""

    method: str
    path: str
    body: Any


@dataclass
class StandinState:
    models: dict[str, StandinModel] = field(default_factory=default_models)
    scripted: list[Fault] = field(default_factory=list)
    fault_shares: dict[Fault, float] = field(default_factory=dict)
    latency: float = 0.0
    requests: list[Record] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self) -> Fault | None:
        with self.lock:
            if self.scripted:
                return self.scripted.pop(0)
            roll = self.rng.random()
            for fault, share in self.fault_shares.items():
                if roll < share:
                    return fault
                roll -= share
        return None


def _parse_keep_alive(value: Any) -> None:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return
    if isinstance(value, str):
        if value.strip() in ("0", "") or re.fullmatch(
            r"-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+", value
        ):
            return
        raise BadRequest(400, f'time: missing unit in duration "{value}"')
    raise BadRequest(400, f"Unsupported type: '{type(value).__name__}'")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, a kept-alive connection holds
    # the body until the client's delayed ACK: 44-54 ms per embed call here, 0.8-6 ms with it off.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    # -- plumbing ---------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, body: object) -> None:
        self._send(status, json.dumps(body).encode(), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _decode(self, raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            raise BadRequest(400, "missing request body")
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BadRequest(400, f"invalid character at offset {exc.pos}") from exc
        if not isinstance(body, dict):
            raise BadRequest(400, "json: cannot unmarshal array into Go value of type api.Request")
        return body

    def _route(self) -> None:
        state = self.server.state
        host = (self.headers.get("Host") or "").split(":")[0]
        if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
            self._error(403, "forbidden")
            return
        routes = {
            ("GET", "/"): self._root,
            ("HEAD", "/"): self._root,
            ("GET", "/api/version"): self._version,
            ("HEAD", "/api/version"): self._version,
            ("GET", "/api/tags"): self._tags,
            ("HEAD", "/api/tags"): self._tags,
            ("POST", "/api/show"): self._show,
            ("POST", "/api/pull"): self._pull,
            ("POST", "/api/embed"): self._embed,
            ("POST", "/api/embeddings"): self._legacy_embeddings,
        }
        raw = self._body() if self.command == "POST" else b""
        handler = routes.get((self.command, self.path))
        with state.lock:
            state.requests.append(Record(self.command, self.path, _maybe_json(raw)))
        if handler is None:
            known_path = any(path == self.path for _, path in routes)
            status, text = (
                (405, "405 method not allowed") if known_path else (404, "404 page not found")
            )
            self._send(status, text.encode(), "text/plain")
            return
        try:
            handler(raw)
        except BadRequest as exc:
            self._error(exc.status, exc.message)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _route

    # -- endpoints --------------------------------------------------------------------------
    def _root(self, raw: bytes) -> None:
        self._send(200, b"Ollama is running", "text/plain; charset=utf-8")

    def _version(self, raw: bytes) -> None:
        self._json(200, {"version": VERSION})

    def _tags(self, raw: bytes) -> None:
        pulled = [m for m in self.server.state.models.values() if m.pulled]
        self._json(200, {"models": [_tag_entry(model) for model in pulled]})

    def _model(self, name: str) -> StandinModel | None:
        model = self.server.state.models.get(canonical(name))
        return model if model is not None and model.pulled else None

    def _show(self, raw: bytes) -> None:
        body = self._decode(raw)
        name = body.get("model") or body.get("name") or ""
        if not name:
            raise BadRequest(400, "model is required")
        model = self._model(name)
        if model is None:
            raise BadRequest(404, f"model '{canonical(name)}' not found")
        info: dict[str, Any] = {
            "general.architecture": model.architecture,
            f"{model.architecture}.embedding_length": model.dimensions,
            f"{model.architecture}.context_length": model.context_length,
        }
        if "embedding" in model.capabilities:
            info[f"{model.architecture}.pooling_type"] = 1
        parameters = f"num_ctx                        {model.num_ctx}" if model.num_ctx else ""
        self._json(
            200,
            {
                "license": "",
                "modelfile": f"FROM {model.name}",
                "parameters": parameters,
                "template": "{{ .Prompt }}",
                "details": _details(model),
                "model_info": info,
                "tensors": [],
                "capabilities": list(model.capabilities),
                "modified_at": "2026-11-01T10:00:00.000000000Z",
            },
        )

    def _pull(self, raw: bytes) -> None:
        body = self._decode(raw)
        name = body.get("model") or body.get("name") or ""
        model = self.server.state.models.get(canonical(name))
        lines: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        if model is None:
            lines.append({"error": "pull model manifest: file does not exist"})
        else:
            digest = "sha256:" + hashlib.sha256(model.name.encode()).hexdigest()
            total = model.dimensions * 1000
            for completed in (0, total // 2, total):
                line: dict[str, Any] = {"status": f"pulling {digest[7:19]}", "digest": digest}
                line["total"] = total
                if completed:
                    line["completed"] = completed
                lines.append(line)
            lines += [
                {"status": "verifying sha256 digest"},
                {"status": "writing manifest"},
                {"status": "success"},
            ]
            model.pulled = True
        if body.get("stream") is False:
            last = lines[-1]
            self._json(500 if "error" in last else 200, last)
            return
        payload = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
        self._send(200, payload, "application/x-ndjson")

    def _embed(self, raw: bytes) -> None:
        state = self.server.state
        body = self._decode(raw)
        _check_types(body)
        name = body.get("model")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest(404, f"model '{name or ''}' not found")
        if not _VALID_NAME.match(name):
            raise BadRequest(400, "invalid model name")
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs] if inputs else []
        elif inputs is None:
            inputs = []
        elif not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise BadRequest(400, "invalid input type")
        model = self._model(name)
        if model is None:
            raise BadRequest(404, f'model "{name}" not found, try pulling it first')
        fault = state.next_fault()
        if state.latency or fault is Fault.SLOW:
            time.sleep(state.latency or 0.5)
        if fault is Fault.DROP:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        statuses = {
            Fault.BUSY: (503, BUSY_MESSAGE),
            Fault.RATE_LIMITED: (429, "too many requests"),
            Fault.SERVER_ERROR: (500, "llama runner process has terminated: signal: killed"),
            Fault.BAD_GATEWAY: (502, "bad gateway"),
        }
        if fault in statuses:
            raise BadRequest(*statuses[fault])  # type: ignore[index]
        if not inputs:
            self._json(200, {"model": name, "embeddings": []})
            return
        if "embedding" not in model.capabilities:
            raise BadRequest(
                501, "This server does not support embeddings. Start it with `--embeddings`"
            )
        vectors, evaluated = _embed_items(model, inputs, body)
        if fault is Fault.NAN:
            vectors[0][0] = float("nan")
        elif fault is Fault.WRONG_SIZE:
            vectors = [vector[:-1] for vector in vectors]
        elif fault is Fault.UNNORMALISED:
            vectors[0] = [3.0 * v for v in vectors[0]]
        elif fault is Fault.WRONG_COUNT:
            vectors = vectors[:-1] if len(vectors) > 1 else vectors * 2
        reply = {
            "model": name,
            "embeddings": vectors,
            "total_duration": 14143917,
            "load_duration": 1019500,
            "prompt_eval_count": evaluated,
        }
        self._send(200, json.dumps(reply).encode(), "application/json; charset=utf-8")

    def _legacy_embeddings(self, raw: bytes) -> None:
        body = self._decode(raw)
        name = body.get("model")
        if not name:
            raise BadRequest(400, "model is required")
        model = self._model(name)
        if model is None:
            raise BadRequest(404, f'model "{name}" not found, try pulling it first')
        prompt = body.get("prompt") or ""
        if not prompt:
            self._json(200, {"embedding": []})
            return
        limit = _token_limit(model, body.get("options"))
        if len(_tokens(prompt)) + 2 > limit:
            raise BadRequest(500, TOO_LONG_MESSAGE)
        vector = _vectors(model, [prompt])[0]
        self._json(200, {"embedding": [float(v) * model.legacy_norm for v in vector]})


def _maybe_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return raw.decode(errors="replace")


def _check_types(body: dict[str, Any]) -> None:
    truncate = body.get("truncate")
    if truncate is not None and not isinstance(truncate, bool):
        kind = "string" if isinstance(truncate, str) else "number"
        raise BadRequest(
            400,
            f"json: cannot unmarshal {kind} into Go struct field EmbedRequest.truncate "
            "of type bool",
        )
    dimensions = body.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool)):
        raise BadRequest(
            400,
            f"json: cannot unmarshal {json.dumps(dimensions)} into Go struct field "
            "EmbedRequest.dimensions of type int",
        )
    _parse_keep_alive(body.get("keep_alive"))
    options = body.get("options") or {}
    for key in ("num_ctx", "num_batch", "num_thread"):
        if key in options and not isinstance(options[key], int):
            raise BadRequest(500, f'option "{key}" must be of type integer')


def _token_limit(model: StandinModel, options: Any) -> int:
    requested = (options or {}).get("num_ctx") or model.num_ctx or model.context_length
    return min(int(requested), model.context_length)


def _embed_items(
    model: StandinModel, inputs: list[str], body: dict[str, Any]
) -> tuple[list[list[float]], int]:
    limit = _token_limit(model, body.get("options"))
    truncate = body.get("truncate", True) is not False
    if model.local_vectors:
        encoding = _local_model().encode(inputs)
        if not truncate and any(encoding.truncated):
            raise BadRequest(400, TOO_LONG_MESSAGE)
        raw = list(encoding.vectors)
        evaluated = sum(encoding.tokens)
    else:
        raw, evaluated = [], 0
        for text in inputs:
            tokens = _tokens(text)
            if len(tokens) + 2 > limit:
                if not truncate:
                    raise BadRequest(400, TOO_LONG_MESSAGE)
                tokens = tokens[: limit - 2]
            evaluated += len(tokens) + 2
            raw.append(_hash_vector(tokens, model.dimensions))
    dimensions = body.get("dimensions") or 0
    if 0 < dimensions < model.dimensions:
        raw = [np.asarray(vector)[:dimensions] for vector in raw]
    return [_normalise(vector) for vector in raw], evaluated


def _vectors(model: StandinModel, inputs: list[str]) -> list[list[float]]:
    if model.local_vectors:
        return [list(map(float, row)) for row in _local_model().encode(inputs).vectors]
    return [_normalise(_hash_vector(_tokens(text), model.dimensions)) for text in inputs]


def _details(model: StandinModel) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": model.architecture,
        "families": [model.architecture],
        "parameter_size": "23M",
        "quantization_level": "F16",
    }


def _tag_entry(model: StandinModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "model": model.name,
        "modified_at": "2026-11-01T10:00:00.000000000Z",
        "size": model.dimensions * 1000,
        "digest": hashlib.sha256(model.name.encode()).hexdigest(),
        "details": {
            **_details(model),
            "context_length": model.context_length,
            "embedding_length": model.dimensions,
        },
        "capabilities": list(model.capabilities),
    }


class _Server(ThreadingHTTPServer):
    # Handler threads are joined at close, after their sockets are shut down (no leaks).
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: StandinState) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class OllamaStandin:
    """Start with ``start()``; ``url`` is where it listens. ``stop()`` and ``start()`` again
    keep the port, so a test can take Ollama down and bring it back."""

    def __init__(self, port: int = 0) -> None:
        self.state = StandinState()
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> OllamaStandin:
        self._server = _Server(("127.0.0.1", self._port), self.state)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None

    def script(self, *faults: Fault) -> None:
        """The next /api/embed requests suffer these faults, in order."""
        with self.state.lock:
            self.state.scripted.extend(faults)

    def embed_requests(self) -> Iterator[dict[str, Any]]:
        """Bodies of the /api/embed requests served so far."""
        with self.state.lock:
            records = list(self.state.requests)
        return (r.body for r in records if r.path == "/api/embed" and isinstance(r.body, dict))

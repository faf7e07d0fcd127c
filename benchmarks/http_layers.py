"""What each layer adds to a SciFact recall: the store, the ASGI app, the HTTP server.

    python -m benchmarks.http_layers [--limit N] [--modes vector,keyword,hybrid]

SciFact's 5,183 abstracts in one namespace (as ``benchmarks.longdocs``, precomputed vectors),
every test claim (or the first ``--limit``) recalled four ways, taking turns claim by claim
(``longdocs.measure``): ``in-process`` (``MemoryStore.recall``), ``asgi`` (the app of
``create_app`` called in this process, no socket: what FastAPI, the middleware and the
rendering add), ``http`` (the same app under uvicorn in a child process, through the lean
client: what uvicorn, the socket and a second process add) and ``healthz`` (a ``GET /healthz``
round trip to that server: the floor of any request). Then the CPU milliseconds per recall of
each way, in blocks of every claim: this process's for ``in-process`` and ``asgi``, the server
process's for ``http`` (its user + system time from /proc).

``--servers`` names the uvicorn setups to serve with, each a server of its own whose ``http``
and ``healthz`` legs take turns with the others (``SERVERS``: ``serve`` as ``pgrecall serve``
runs it, httptools' parser with a request's head bounded, ``http/protocol.py``; ``h11``
uvicorn's pure-Python parser, which serve ran until session 22; ``httptools`` its C parser
unbounded; ``uvloop`` its event loop; ``both``). The last two need uvloop installed.

Written for issue 25 (benchmarks/RESULTS.md, session 14), where HTTP added 1.25-1.6 ms to each
mode over the in-process recall and the question was which layer holds it; ``--servers`` for
session 15, which measured uvicorn's optional speedups for one client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from typing import Any

import psutil
from fastapi import FastAPI

from benchmarks.common import embedded_server, fresh_database, machine
from benchmarks.lean_http import Client
from benchmarks.longdocs import (
    MODES,
    NAMESPACE,
    SERVE,
    Recall,
    Taught,
    _load_average,
    _open,
    http_clients,
    in_process,
    measure,
    move_postings,
    over_http,
    scifact_vectors,
)
from benchmarks.scifact import _load
from pgrecall import MemoryInput, MemoryStore
from pgrecall.http.app import create_app


async def asgi_call(app: FastAPI, method: str, path: str, body: bytes = b"") -> bytes:
    """One request to ``app`` in this process (no socket, no server); the answer's body."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    delivered = False
    answered = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:  # after the body: the client leaves once it has its answer, as over HTTP
            await answered.wait()
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            answered.set()

    await app(scope, receive, send)
    if messages[0]["status"] != 200:
        raise RuntimeError(f"HTTP {messages[0]['status']}")
    return b"".join(message.get("body", b"") for message in messages[1:])


def through_asgi(app: FastAPI) -> Recall:
    """A recall through the app called in this process; each hit's key."""

    async def recall(query: str, namespace: str, mode: str) -> list[str]:
        body = {"query": query, "namespaces": [namespace], "k": 10, "mode": mode}
        answer = await asgi_call(app, "POST", "/v1/recall", json.dumps(body).encode())
        return [hit["key"] or "" for hit in json.loads(answer)["hits"]]

    return recall


async def scifact_store(dsn: str) -> tuple[str, Taught, MemoryStore]:
    """SciFact's abstracts in one namespace of a fresh database, postings and copies moved."""
    memories = _load("memories.jsonl")
    claims = [q["question"] for q in _load("queries.jsonl")]
    documents, vectors = await scifact_vectors([m["text"] for m in memories], claims)
    taught: Taught = [([m["text"] for m in memories], documents), (claims, vectors)]
    database = await fresh_database(dsn, "http_layers")
    store = await _open(database, taught)
    for start in range(0, len(memories), 500):
        await store.remember(
            [
                MemoryInput(m["text"], key=m["id"], metadata={"doc": m["id"]})
                for m in memories[start : start + 500]
            ],
            namespace=NAMESPACE,
        )
    await move_postings(store, database)
    return database, taught, store


# uvicorn setups to compare (``--servers``): its event loop and its HTTP parser.
SERVERS: dict[str, dict[str, Any]] = {
    "serve": SERVE,
    "h11": {"loop": "asyncio", "http": "h11"},
    "httptools": {"loop": "asyncio", "http": "httptools"},
    "uvloop": {"loop": "uvloop", "http": "h11"},
    "both": {"loop": "uvloop", "http": "httptools"},
}


def _server_process(known: set[int]) -> psutil.Process:
    """The HTTP server started last: the child multiprocessing spawned (not its resource
    tracker, not PostgreSQL) that is not in ``known``."""
    for child in psutil.Process().children():
        if child.pid not in known and "spawn_main" in " ".join(child.cmdline()):
            return child
    raise RuntimeError("no server process found")


async def cpu_per_recall(
    ways: dict[str, Recall], questions: list[str], mode: str, servers: dict[str, psutil.Process]
) -> dict[str, float]:
    """CPU milliseconds per recall of each way, a block of every claim each: the server's for
    an ``http`` way (``servers``, by the way's name), this process's for the others."""
    spent = {}
    for name, recall in ways.items():
        process = servers.get(name, psutil.Process())
        before = sum(process.cpu_times()[:2])
        for question in questions:
            await recall(question, NAMESPACE, mode)
        spent[name] = (sum(process.cpu_times()[:2]) - before) / len(questions) * 1000
    return spent


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None, help="SciFact claims (all: 300)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--servers",
        default="serve",
        help=f"uvicorn setups (default: serve's), of {', '.join(SERVERS)}",
    )
    arguments = parser.parse_args()
    print(f"{machine()}; {_load_average()}")
    questions = [q["question"] for q in _load("queries.jsonl", arguments.limit)]
    setups = arguments.servers.split(",")
    async with embedded_server() as dsn, contextlib.AsyncExitStack() as stack:
        database, taught, store = await scifact_store(dsn)
        stack.push_async_callback(store.close)
        app = create_app(store.settings, store=store)
        app.state.store = store  # what the lifespan does with a store given
        ways: dict[str, Recall] = {
            "in-process": in_process(store, "key"),
            "asgi": through_asgi(app),
        }
        floors: dict[str, Recall] = {}
        servers: dict[str, psutil.Process] = {}
        for setup in setups:
            clients = await stack.enter_async_context(
                http_clients(database, taught, SERVERS[setup])
            )
            name = "http" if len(setups) == 1 else f"http-{setup}"
            ways[name] = over_http(clients["http"], "key")
            floors[name.replace("http", "healthz", 1)] = _healthz(clients["http"])
            servers[name] = _server_process({process.pid for process in servers.values()})
        legs = [*ways, *floors]
        print(f"{'mode':<9}" + "".join(f"{name + ' p50':>22}" for name in legs))
        for mode in arguments.modes.split(","):
            measured = await measure({**ways, **floors}, questions, NAMESPACE, mode)
            found = {name: hits for name, (_, hits) in measured.items() if name in ways}
            same = sum(
                len({json.dumps(hits[i]) for hits in found.values()}) == 1
                for i in range(len(questions))
            )
            p50 = {name: timing[0] for name, (timing, _) in measured.items()}
            p99 = {name: timing[1] for name, (timing, _) in measured.items()}
            print(
                f"{mode:<9}"
                + "".join(f"{p50[name]:>19.3f} ms" for name in legs)
                + f"  asgi - in-process {p50['asgi'] - p50['in-process']:+.3f}, "
                + ", ".join(f"{name} - asgi {p50[name] - p50['asgi']:+.3f}" for name in servers)
                + f"; p99 {', '.join(f'{name} {p99[name]:.2f}' for name in ways)}"
                + f"; identical {same}/{len(questions)}  ({_load_average()})",
                flush=True,
            )
            cpu = await cpu_per_recall(ways, questions, mode, servers)
            print(
                f"{'':<9}CPU ms per recall: "
                + ", ".join(f"{name} {seconds:.3f}" for name, seconds in cpu.items())
                + f" (http: the server's)  ({_load_average()})",
                flush=True,
            )


def _healthz(client: Client) -> Recall:
    """A ``GET /healthz`` round trip on ``client``'s connection: the floor of any request."""

    async def healthz(query: str, namespace: str, mode: str) -> list[str]:
        (await client.get("/healthz")).raise_for_status()  # type: ignore[attr-defined]
        return []

    return healthz


if __name__ == "__main__":
    asyncio.run(main())

"""Many agents at once: HTTP recall throughput of ``pgrecall serve`` against a hand-written floor.

    python -m benchmarks.http_load [--namespaces 100] [--per-namespace 1000] [--clients 16]
                                   [--seconds 20] [--rounds 1] [--serve-arg=--workers=2 ...]
                                   [--env PGRECALL_X=value ...] [--data-dir DIR]

One embedded PostgreSQL, one Ollama stand-in (``tests/ollama_standin.py``, Nagle off so it adds
no TCP delay; a 384-d bag-of-words model, in a process of its own so it does not share the load
generator's interpreter) and ``pgrecall serve`` started as a subprocess against the same database.

1. Ingest: the in-process ``remember`` rate (into a scratch database, then dropped) and the
   same memories over HTTP (``POST /v1/memories``), both in batches of 500 from 4 clients.
2. For ``--seconds`` each, ``--clients`` concurrent clients: the floor (what a hand-written
   client does: one ``/api/embed`` call, then one exact top-10 inner-product query on an
   asyncpg pool of as many connections as clients), HTTP vector recall, HTTP hybrid recall, the
   floor again. The floor runs first and last so that drift of the shared machine shows; the
   HTTP legs are compared with the better of the two. ``--rounds R`` cuts each leg into R
   slices that alternate (floor, vector, hybrid, R times, then the floor again for a slice):
   on a machine other jobs load, a slow minute then falls on every leg alike.

The recall legs' clients are ``lean_http``'s (``--client httpx`` for httpx): the agents' side is
the load generator, not the system measured, and on 2 cores its CPU is the server's. The floor's
``/api/embed`` call and the server's go through httpx alike (each is a client of Ollama).

Every leg prints its QPS, p50, p99, errors and its ratio to the better floor; the load average
(``uptime``) before and after is printed too, for the machine is shared. Each leg also prints the
CPU milliseconds each process spent per recall (``benchmarks/cpu.py``: the load generator, the
server, the stand-in, PostgreSQL, and what other jobs took meanwhile): it says which process
the HTTP path's extra cost is in, and the rate of a CPU-bound leg follows it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import psutil

from benchmarks.common import (
    OUT,
    database_url,
    embedded_server,
    fresh_database,
    machine,
    percentiles,
    sentences,
    settle,
    write_json,
)
from benchmarks.cpu import OTHER, CpuMeter, CpuSnapshot
from benchmarks.lean_http import Client, HttpxClient, LeanPool
from pgrecall import MemoryInput, MemoryStore, load_settings
from pgrecall.db.vectors import register_vector_codec

BATCH = 500
INGEST_CLIENTS = 4
MODEL = "bench-embed"
DIMENSIONS = 384
READY_SECONDS = 120.0
STOP_SECONDS = 30.0
WARMUP_CALLS = 32
FLOOR_SQL = """
    SELECT id, content, metadata, -(embedding <#> $1) AS score FROM memories
    WHERE namespace = $2 ORDER BY embedding <#> $1 LIMIT 10
"""


@dataclass(frozen=True)
class Leg:
    """One timed run of concurrent calls."""

    name: str
    calls: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_ms: dict[str, float]  # CPU milliseconds per call, per process (and other jobs)

    @property
    def qps(self) -> float:
        return self.calls / self.seconds


@dataclass(frozen=True)
class Query:
    text: str
    namespace: str


def _standin(pipe: Connection) -> None:
    """Child process: run the stand-in with the benchmark's model until the pipe closes."""
    from tests.ollama_standin import OllamaStandin, StandinModel

    standin = OllamaStandin()
    standin.state.models[f"{MODEL}:latest"] = StandinModel(
        f"{MODEL}:latest", "bert", DIMENSIONS, 512, 512
    )
    standin.start()
    pipe.send(standin.url)
    try:
        pipe.recv()  # returns (or raises EOFError) when the benchmark is done
    except EOFError:
        pass
    finally:
        standin.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(dsn: str, ollama_url: str, extra: Sequence[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGRECALL_")}
    env.update(
        PGRECALL_DATABASE_URL=dsn,
        PGRECALL_OLLAMA_URL=ollama_url,
        PGRECALL_EMBED_MODEL=MODEL,
        PGRECALL_EMBED_DIMENSIONS=str(DIMENSIONS),
    )
    for item in extra:
        name, _, value = item.partition("=")
        env[name] = value
    return env


@dataclass
class Samples:
    """What the slices of one leg measured, added up."""

    latencies: list[float]
    errors: list[str]
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process, summed

    def leg(self, name: str) -> Leg:
        if self.errors:
            print(f"  {name}: {len(self.errors)} errors, first: {self.errors[0]}", file=sys.stderr)
        p50, _, p99 = percentiles(self.latencies) if self.latencies else (0.0, 0.0, 0.0)
        calls = max(1, len(self.latencies) + len(self.errors))
        cpu_ms = {process: 1000 * spent / calls for process, spent in self.cpu.items()}
        return Leg(name, len(self.latencies), len(self.errors), self.seconds, p50, p99, cpu_ms)


async def _run_slice(
    call: Callable[[Query], Awaitable[None]],
    queries: Sequence[Query],
    clients: int,
    seconds: float,
    into: Samples,
    meter: CpuMeter,
) -> None:
    """``clients`` concurrent loops of ``call`` for ``seconds``, added to ``into``."""
    deadline = time.perf_counter() + seconds
    offset = len(into.latencies) + len(into.errors)

    async def client(first: int) -> None:
        position = offset + first
        while time.perf_counter() < deadline:
            query = queries[position % len(queries)]
            position += clients
            started = time.perf_counter()
            try:
                await call(query)
            except Exception as exc:  # counted, not fatal: errors are one of the figures
                into.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            else:
                into.latencies.append(time.perf_counter() - started)

    before: CpuSnapshot = meter.snapshot()
    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    into.seconds += time.perf_counter() - started
    for process, spent in (meter.snapshot() - before).items():
        into.cpu[process] = into.cpu.get(process, 0.0) + spent


def _batches(texts: list[str], namespaces: list[str]) -> list[list[dict[str, object]]]:
    items = [
        {"namespace": name, "content": text, "metadata": {"turn": i, "speaker": "user"}}
        for i, (text, name) in enumerate(zip(texts, namespaces, strict=True))
    ]
    return [items[start : start + BATCH] for start in range(0, len(items), BATCH)]


async def _drain(
    batches: list[list[dict[str, object]]], send: Callable[..., Awaitable[None]]
) -> float:
    """Send every batch from INGEST_CLIENTS workers; returns seconds."""
    pending = list(reversed(batches))

    async def worker() -> None:
        while pending:
            await send(pending.pop())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(INGEST_CLIENTS)))
    return time.perf_counter() - started


async def ingest_in_process(
    dsn: str, env: dict[str, str], batches: list[list[dict[str, object]]]
) -> float:
    """Memories per second through ``MemoryStore.remember`` with the server's settings."""
    settings = load_settings(
        database_url=dsn,
        ollama_url=env["PGRECALL_OLLAMA_URL"],
        embed_model=MODEL,
        embed_dimensions=DIMENSIONS,
    )
    async with await MemoryStore.open(settings) as store:

        async def send(batch: list[dict[str, object]]) -> None:
            await store.remember([MemoryInput(**item) for item in batch])  # type: ignore[arg-type]

        seconds = await _drain(batches, send)
    return sum(map(len, batches)) / seconds


async def ingest_over_http(
    client: httpx.AsyncClient, batches: list[list[dict[str, object]]]
) -> float:
    """Memories per second through ``POST /v1/memories``."""

    async def send(batch: list[dict[str, object]]) -> None:
        response = await client.post("/v1/memories", json={"memories": batch})
        response.raise_for_status()
        statuses = {item["status"] for item in response.json()["memories"]}
        if statuses != {"embedded"}:
            raise RuntimeError(f"memories came back {statuses}")

    seconds = await _drain(batches, send)
    return sum(map(len, batches)) / seconds


class Server:
    """``pgrecall serve`` as a subprocess, its output in a log file."""

    def __init__(self, env: dict[str, str], arguments: Sequence[str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("w")
        command = [sys.executable, "-m", "pgrecall.cli", "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, *arguments], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    async def ready(self, client: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgrecall serve exited with {self.process.returncode}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError(f"pgrecall serve not ready after {READY_SECONDS} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def _queries(texts: list[str], namespaces: list[str], count: int) -> list[Query]:
    """Four words of a random memory, asked in its namespace."""
    generator = np.random.default_rng(11)
    picks = generator.integers(0, len(texts), count)
    return [
        Query(
            " ".join(generator.choice(texts[i].split()[:-1], size=4, replace=False)),
            namespaces[i],
        )
        for i in picks
    ]


async def recall_legs(
    server: Client,
    ollama: httpx.AsyncClient,
    pool: asyncpg.Pool,
    queries: list[Query],
    clients: int,
    seconds: float,
    rounds: int,
    meter: CpuMeter,
) -> list[Leg]:
    async def floor(query: Query) -> None:
        response = await ollama.post("/api/embed", json={"model": MODEL, "input": [query.text]})
        response.raise_for_status()
        vector = response.json()["embeddings"][0]
        rows = await pool.fetch(FLOOR_SQL, vector, query.namespace)
        if not rows:
            raise RuntimeError(f"no rows in {query.namespace}")

    def over_http(mode: str) -> Callable[[Query], Awaitable[None]]:
        async def recall(query: Query) -> None:
            body = {"query": query.text, "namespaces": [query.namespace], "k": 10, "mode": mode}
            response = await server.post("/v1/recall", body)
            response.raise_for_status()
            if not response.json()["hits"]:
                raise RuntimeError(f"no hits in {query.namespace}")

        return recall

    calls = {"floor": floor, "HTTP vector": over_http("vector"), "HTTP hybrid": over_http("hybrid")}
    for call in calls.values():
        for query in queries[:WARMUP_CALLS]:
            await call(query)
    # Slices alternate, so that the drift of a shared machine falls on every leg alike.
    order = [*(name for _ in range(rounds) for name in calls), "floor again"]
    samples = {name: Samples([], []) for name in order}
    for name in order:
        call = calls.get(name, floor)
        await _run_slice(call, queries, clients, seconds / rounds, samples[name], meter)
    legs = [samples[name].leg(name) for name in samples]
    for leg in legs:
        print(f"  {leg.name}: {leg.qps:.0f}/s", flush=True)
    return legs


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


@contextlib.contextmanager
def running_standin() -> Iterator[tuple[str, int]]:
    """The Ollama stand-in in a process of its own (``_standin``): its URL and pid, until the
    block ends."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    standin = context.Process(target=_standin, args=(theirs,), daemon=True)
    standin.start()
    try:
        url: str = ours.recv()
        assert standin.pid is not None
        yield url, standin.pid
    finally:
        ours.close()
        standin.join(STOP_SECONDS)
        if standin.is_alive():
            standin.kill()


async def run(args: argparse.Namespace) -> dict[str, object]:
    load_before = _load()
    with running_standin() as (ollama_url, standin):
        async with embedded_server(args.data_dir) as admin_dsn:
            result = await _measure(args, admin_dsn, ollama_url, standin)
    result["load_before"] = load_before
    result["load_after"] = _load()
    return result


async def postmaster(dsn: str) -> int:
    """The pid of the PostgreSQL server's postmaster: the parent of a backend."""
    connection = await asyncpg.connect(dsn)
    try:
        backend: int = await connection.fetchval("SELECT pg_backend_pid()")
        return psutil.Process(backend).ppid()  # while the backend lives
    finally:
        await connection.close()


async def _measure(
    args: argparse.Namespace, admin_dsn: str, ollama_url: str, standin: int
) -> dict[str, object]:
    names = [f"agent-{i:03d}" for i in range(args.namespaces)]
    generator = np.random.default_rng(3)
    texts: list[str] = []
    namespaces: list[str] = []
    for name in names:
        texts.extend(sentences(args.per_namespace, generator, tag=f"{name}-"))
        namespaces.extend([name] * args.per_namespace)
    batches = _batches(texts, namespaces)

    if args.recall_only:
        served = database_url(admin_dsn, "http_load")
        await _check_loaded(served, len(texts))
        in_process = over_http = float("nan")
    else:
        scratch = await fresh_database(admin_dsn, "http_load_in_process", migrated=False)
        env = _environment(scratch, ollama_url, args.env)
        in_process = await ingest_in_process(scratch, env, batches)
        print(f"  remember in process: {in_process:,.0f} memories/s", flush=True)
        dropper = await asyncpg.connect(admin_dsn)
        try:
            await dropper.execute('DROP DATABASE "http_load_in_process" WITH (FORCE)')
        finally:
            await dropper.close()
        served = await fresh_database(admin_dsn, "http_load", migrated=False)
    env = _environment(served, ollama_url, args.env)
    server = Server(env, args.serve_arg, OUT / "http_load-server.log")
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    timeout = httpx.Timeout(120.0)
    try:
        async with (
            httpx.AsyncClient(base_url=server.url, limits=limits, timeout=timeout) as client,
            httpx.AsyncClient(base_url=ollama_url, limits=limits, timeout=timeout) as ollama,
        ):
            await server.ready(client)
            if not args.recall_only:
                over_http = await ingest_over_http(client, batches)
                print(f"  remember over HTTP: {over_http:,.0f} memories/s", flush=True)
            await settle(admin_dsn)
            queries = _queries(texts, namespaces, 20_000)
            pool = await asyncpg.create_pool(
                database_url(admin_dsn, "http_load"),
                min_size=args.clients,
                max_size=args.clients,
                init=register_vector_codec,
            )
            try:
                meter = CpuMeter(
                    trees={
                        "server": server.process.pid,
                        "stand-in": standin,
                        "PostgreSQL": await postmaster(admin_dsn),
                    },
                    alone={"load generator": os.getpid()},
                )
                recaller: Client = HttpxClient(client)
                if args.client == "lean":
                    recaller = lean = LeanPool("127.0.0.1", server.port)
                legs = await recall_legs(
                    recaller, ollama, pool, queries, args.clients, args.seconds, args.rounds, meter
                )
            finally:
                await pool.close()
                if args.client == "lean":
                    await lean.aclose()
    finally:
        server.stop()
    return {
        "ingest": {"in_process": in_process, "over_http": over_http},
        "legs": [asdict(leg) | {"qps": leg.qps} for leg in legs],
    }


async def _check_loaded(dsn: str, expected: int) -> None:
    """``--recall-only``: the database of an earlier run in ``--data-dir``, fully loaded."""
    try:
        connection = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        raise SystemExit("--recall-only needs --data-dir of an earlier full run") from None
    try:
        found = await connection.fetchval("SELECT count(*) FROM memories")
    finally:
        await connection.close()
    if found != expected:
        raise SystemExit(f"--recall-only: the database holds {found} memories, not {expected}")


def report(result: dict[str, object], args: argparse.Namespace) -> None:
    ingest: dict[str, float] = result["ingest"]  # type: ignore[assignment]
    legs: list[dict[str, Any]] = result["legs"]  # type: ignore[assignment]
    floor = max(leg["qps"] for leg in legs if leg["name"].startswith("floor"))
    print(
        f"\n{machine()}; {args.namespaces} namespaces x {args.per_namespace:,} memories, "
        f"{args.clients} {args.client} clients, {args.seconds:g} s a leg; "
        f"serve {' '.join(args.serve_arg)} "
        f"{' '.join(args.env)}".rstrip()
    )
    print(f"load average before: {result['load_before']}, after: {result['load_after']}")
    columns = ("QPS", "p50 ms", "p99 ms", "p99/p50", "errors", "x floor")
    print("\n" + f"{'leg':<14}" + "".join(f"{name:>9}" for name in columns))
    for leg in legs:
        ratio = leg["p99_ms"] / leg["p50_ms"] if leg["p50_ms"] else 0.0
        print(
            f"{leg['name']:<14}{leg['qps']:>9.1f}{leg['p50_ms']:>9.1f}{leg['p99_ms']:>9.1f}"
            f"{ratio:>9.2f}{leg['errors']:>8}{leg['qps'] / floor:>9.2f}"
        )
    cpu_report(legs)
    if args.recall_only:
        return
    share = ingest["over_http"] / ingest["in_process"]
    print(
        f"\ningest, {BATCH} a batch, {INGEST_CLIENTS} clients: in process "
        f"{ingest['in_process']:,.0f}/s, over HTTP {ingest['over_http']:,.0f}/s = "
        f"{share:.2f} x in process"
    )


def cpu_report(legs: list[dict[str, Any]]) -> None:
    """CPU milliseconds per recall, per process and leg; ``ours`` adds up the benchmark's own
    processes, ``x floor`` compares it with the first floor's."""
    processes = [name for name in legs[0]["cpu_ms"] if name != OTHER]
    columns = [*processes, "ours", "x floor", OTHER]
    print("\nCPU ms per recall")
    print(f"{'leg':<14}" + "".join(f"{name:>16}" for name in columns))
    floor_ours = sum(legs[0]["cpu_ms"][name] for name in processes)
    for leg in legs:
        cpu: dict[str, float] = leg["cpu_ms"]
        ours = sum(cpu[name] for name in processes)
        figures = [*(cpu[name] for name in processes), ours, ours / floor_ours, cpu[OTHER]]
        print(f"{leg['name']:<14}" + "".join(f"{value:>16.3f}" for value in figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--per-namespace", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="per leg, all rounds")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="slices per leg: floor, vector and hybrid alternate this many times, then the "
        "floor again for a slice",
    )
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="passed to pgrecall serve (repeat)"
    )
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=value for the server (repeat)"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="embedded server directory")
    parser.add_argument(
        "--client",
        choices=("lean", "httpx"),
        default="lean",
        help="the load generator's client of the recall legs (benchmarks/lean_http.py)",
    )
    parser.add_argument(
        "--recall-only",
        action="store_true",
        help="skip the ingest legs: recall from the database an earlier run left in --data-dir",
    )
    args = parser.parse_args()
    result = asyncio.run(run(args))
    report(result, args)
    write_json(
        OUT / "http_load.json",
        {"arguments": vars(args) | {"data_dir": str(args.data_dir)}, **result},
    )


if __name__ == "__main__":
    main()

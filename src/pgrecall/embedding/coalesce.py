"""Concurrent recalls' queries embedded together: one ``embed_queries`` call for many.

Each recall embeds one short query. Sixteen agents recalling at once made sixteen ``/api/embed``
calls, of which ``PGRECALL_EMBED_CONCURRENCY`` (2) were in flight and the rest queued behind
them, each paying a request's overhead. Here a query asked while no call is in flight goes at
once; queries asked while one is in flight wait ``wait_seconds`` (``PGRECALL_QUERY_BATCH_WAIT_MS``,
1 ms by default) for others and share the next call, which goes at the end of the wait or when
the batch is full. Waiting when idle bought nothing and cost every lone recall the timer: in
``benchmarks.recall_latency`` case (b), one client, p50 vector 3.4-4.1 ms and hybrid 5.9-6.4 ms
with a wait before every call, against 1.8 and 2.7 ms without it (same process, same data).
Batching measured alone in ``benchmarks/http_load.py`` on a heavily loaded VM (RESULTS.md):
HTTP hybrid 0.41 -> 0.62 of the hand-written floor, vector 0.49 -> 0.62, in runs that scatter
by about 0.2 (with the wait before every call; not re-run since).

A lone query (nothing in flight) awaits the embedder in its caller's task: a task of its own, a
future and a callback cost it 0.13-0.18 ms in process on SciFact (benchmarks/RESULTS.md, issue
25 session 14) and bought nothing, for no other query shares that call.

A failure of the call is every query's failure (the embedder is down, busy, or has no such
model), except an input too long for the model (truncation off): then each query of the batch
is embedded alone, so it gets its own answer or its own error, with its own position.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pgrecall.embedding.base import Embedder, Vector
from pgrecall.errors import InputTooLongError


class QueryCoalescer:
    """``embed`` one query; queries asked while a call is in flight share the next one."""

    def __init__(self, embedder: Embedder, *, wait_seconds: float, max_batch: int) -> None:
        self._embedder = embedder
        self._wait = wait_seconds
        self._max_batch = max_batch
        self._texts: list[str] = []
        self._waiting: list[asyncio.Future[Vector]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._lone = 0  # lone queries' calls in flight, each in its caller's task

    async def embed(self, text: str) -> Vector:
        """The query's vector (the space's query prefix applied)."""
        if self._wait <= 0:
            return (await self._embedder.embed_queries([text])).vectors[0]
        if not self._in_flight() and not self._texts:  # nobody to wait for or share with
            self._lone += 1
            try:
                return (await self._embedder.embed_queries([text])).vectors[0]
            finally:
                self._lone -= 1
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Vector] = loop.create_future()
        self._texts.append(text)
        self._waiting.append(answer)
        if not self._in_flight() or len(self._texts) >= self._max_batch:
            self._flush()  # nothing in flight (no reason to wait), or the batch is full
        elif self._timer is None:
            self._timer = loop.call_later(self._wait, self._flush)
        return await answer

    def _in_flight(self) -> bool:
        return self._lone > 0 or bool(self._flushes)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        texts, waiting = self._texts, self._waiting
        self._texts, self._waiting = [], []
        if texts:
            task = asyncio.create_task(self._send(texts, waiting))
            self._flushes.add(task)  # held until done: the loop keeps weak references only
            task.add_done_callback(self._flushes.discard)

    async def _send(self, texts: list[str], waiting: Sequence[asyncio.Future[Vector]]) -> None:
        try:
            vectors = (await self._embedder.embed_queries(texts)).vectors
        except asyncio.CancelledError:
            for answer in waiting:
                answer.cancel()
            raise
        except InputTooLongError as exc:
            if len(texts) == 1:
                _fail(waiting, exc)
                return
            await asyncio.gather(*(self._alone(t, f) for t, f in zip(texts, waiting, strict=True)))
            return
        except Exception as exc:  # handed to every caller, raised where each awaits its answer
            _fail(waiting, exc)
            return
        for answer, vector in zip(waiting, vectors, strict=True):
            if not answer.done():
                answer.set_result(vector)

    async def _alone(self, text: str, answer: asyncio.Future[Vector]) -> None:
        try:
            vector = (await self._embedder.embed_queries([text])).vectors[0]
        except Exception as exc:
            _fail([answer], exc)
        else:
            if not answer.done():
                answer.set_result(vector)


def _fail(waiting: Sequence[asyncio.Future[Vector]], exc: BaseException) -> None:
    for answer in waiting:
        if not answer.done():
            answer.set_exception(exc)

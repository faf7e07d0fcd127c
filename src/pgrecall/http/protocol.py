"""The HTTP/1.1 protocol the server runs: uvicorn's on httptools' parser, with h11's bounds.

uvicorn parses HTTP with h11 (pure Python) or httptools (llhttp, C). httptools cut the floor
every request pays, ``GET /healthz`` over a kept-alive connection, to 0.72-0.76x of h11's for
one client, and SciFact recall over HTTP by 0.12-0.21 ms (``python -m benchmarks.http_layers
--servers h11,serve``, two runs; benchmarks/RESULTS.md, issue 25 session 22). But uvicorn's
httptools protocol bounds what a client makes it hold where h11 holds ~16 KB: a 20 MB header
line or trailer was read whole, and requests pipelined without waiting for answers were each
queued (a reading client had 199,000 queued, 420 MB, after 15 s). Here:

- a request's head is at most ``HEAD_BYTES``, and so are its trailers, counted exactly as the
  parser hands over their parts (the target, each header);
- what the parser holds unparsed (httptools keeps a header until its line ends) is bounded by
  the bytes read since the parser last moved on that were not body: reads are fed to it in
  slices of ``HEAD_BYTES``, so at most that many more go uncounted;
- at most ``MOST_PIPELINED`` requests wait behind the one being answered.

Beyond a bound the connection is closed, answered 400 ``HEAD_TOO_LARGE`` first when nothing is
being answered on it (otherwise a 400 would go out ahead of an earlier request's answer; a
client retries unanswered requests on a new connection, RFC 9112 9.3.2). Stricter than h11 in
one way: h11 bounds a head still incomplete at a read, so one of 16-256 KB arriving whole was
served; here it is refused.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# h11's bound on an incomplete event, which uvicorn's h11 protocol puts on a request's head.
HEAD_BYTES = 16 * 1024
HEAD_TOO_LARGE = "Request head too large."
# Requests queued behind the one being answered before the connection is closed: clients
# rarely pipeline at all (browsers never do), and each queued request holds ~2 KB.
MOST_PIPELINED = 16
# What a header adds to a head beyond its name and value, at the least: ":" and the line's end.
_HEADER_FRAMING = 3


class _Refused(Exception):
    """Raised in a parser callback to stop the parse (httptools hands it back from its feed)."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol within h11's bounds on what a client makes it hold."""

    # The current head's or trailers' parts as parsed; the bytes fed since the parser last
    # moved on (a head or a chunk complete, a message ended) that were not body.
    _parsed = 0
    _unparsed = 0
    _moved_on = False
    _in_head = True

    def data_received(self, data: bytes) -> None:
        for start in range(0, len(data), HEAD_BYTES):
            if self.transport.is_closing():
                return
            piece = data[start : start + HEAD_BYTES]
            self._moved_on = False
            self._unparsed += len(piece)
            super().data_received(piece)  # a callback's _Refused comes back as a parser error
            if self._moved_on:  # where in the piece is not known: its rest goes uncounted
                self._unparsed = max(0, self._unparsed)
            if self._unparsed > HEAD_BYTES:
                self._refuse()
                return

    def send_400_response(self, msg: str) -> None:
        """One answer per connection: the parser's error after a refusal sends nothing more."""
        if not self.transport.is_closing():
            super().send_400_response(msg)

    def on_url(self, url: bytes) -> None:
        self._part(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._part(len(name) + len(value) + _HEADER_FRAMING)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._move_on()
        super().on_headers_complete()
        if len(self.pipeline) > MOST_PIPELINED:
            self.transport.close()
            raise _Refused

    def on_body(self, body: bytes) -> None:
        self._unparsed -= len(body)
        super().on_body(body)

    def on_chunk_complete(self) -> None:
        self._move_on()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._move_on()

    def _move_on(self) -> None:
        self._parsed = self._unparsed = 0
        self._moved_on = True

    def _part(self, size: int) -> None:
        self._parsed += size
        if self._parsed > HEAD_BYTES:
            self._refuse()
            raise _Refused

    def _refuse(self) -> None:
        """Answer 400 and close, or only close while a request on the connection is answered."""
        answering = self.pipeline or (self.cycle is not None and not self.cycle.response_complete)
        if self._in_head and not answering:
            self.send_400_response(HEAD_TOO_LARGE)
        else:
            self.transport.close()

"""The HTTP/1.1 protocol the server runs: uvicorn's on httptools' parser, a request's head bounded.

uvicorn parses HTTP with h11 (pure Python) or httptools (llhttp, C). httptools cut the floor
every request pays, ``GET /healthz`` over a kept-alive connection, to 0.71-0.80x of h11's for
one client (``python -m benchmarks.http_layers --servers h11,httptools``; benchmarks/RESULTS.md,
issue 25 session 15), but uvicorn sets it no bound on a request's head: a request with a 20 MB
header line was read whole and answered 200, where h11 refuses a head beyond 16 KB.

Here a head is bounded at ``HEAD_BYTES`` two ways, and answered 400 ``HEAD_TOO_LARGE`` with the
connection closed beyond it:

- as the parser hands over its parts (the target, each header): the head's exact size, whatever
  the reads it came in;
- by the bytes read while a head is incomplete: httptools holds a header until its line ends,
  so an endless line is cut off after ``HEAD_BYTES`` and one read of the socket (asyncio reads
  up to 256 KB at a time), never read whole.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# h11's bound on an incomplete event, which uvicorn's h11 protocol puts on a request's head.
HEAD_BYTES = 16 * 1024
HEAD_TOO_LARGE = "Request head too large."
# What a header adds to a head beyond its name and value: ": " and the line's end.
_HEADER_FRAMING = 4


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop the parse (httptools hands it back from its feed)."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that refuses a request head larger than ``HEAD_BYTES``."""

    # The current request's head so far: its parts as parsed, and the bytes read since it
    # began while incomplete (a read that ends one message and begins the next counts from the
    # next read: at most one read more).
    _head_parsed = 0
    _head_read = 0
    _in_head = True

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_read += len(data)
        super().data_received(data)  # a callback's _HeadTooLarge comes back as a parser error
        if self._in_head and self._head_read > HEAD_BYTES:
            self.send_400_response(HEAD_TOO_LARGE)

    def send_400_response(self, msg: str) -> None:
        """One answer per connection: the parser's error after a refusal sends nothing more."""
        if not self.transport.is_closing():
            super().send_400_response(msg)

    def on_url(self, url: bytes) -> None:
        self._parsed(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed(len(name) + len(value) + _HEADER_FRAMING)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_read, self._head_parsed = True, 0, 0

    def _parsed(self, size: int) -> None:
        self._head_parsed += size
        if self._head_parsed > HEAD_BYTES:
            self.send_400_response(HEAD_TOO_LARGE)
            raise _HeadTooLarge

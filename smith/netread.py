"""Reading an HTTP body within bounds: an idle timeout, a total deadline and a byte limit.

A socket timeout alone bounds only the wait for each byte: a server that trickles a byte a
second keeps a read of a megabyte going for days. So a body is read with read1, which
returns as soon as any bytes arrive, and the deadline is checked between reads. Shared by
the repository fetcher and the registry client: both hand over the urllib3 response.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from smith.inflate import Codec, Inflated, Readable

if TYPE_CHECKING:
    import urllib3  # the caller's: importing it costs a build that downloads nothing
from smith.limits import DEADLINE, Limit, expansion_bound, over_limit

CHUNK = 1 << 20
DRAIN_LIMIT = 64 << 10  # a longer unread body costs the connection, not its download


def deadline_from_now() -> float:
    return time.monotonic() + DEADLINE.value()


class BoundedBody:
    """read(n) of `resp`'s body as it came over the wire (no Content-Encoding undone):
    at most `most` bytes and nothing after `deadline`. More raises `limit`'s error, or,
    with no limit (`most` is the size the metadata declares), a PackageError."""

    def __init__(
        self,
        resp: urllib3.BaseHTTPResponse,
        what: str,
        *,
        deadline: float,
        most: int,
        limit: Limit | None,
    ) -> None:
        self.resp, self.what, self.deadline = resp, what, deadline
        self.most, self.limit = most, limit
        self.total = 0

    def read(self, n: int = -1, /) -> bytes:
        if time.monotonic() > self.deadline:
            raise DEADLINE.error(f"{self.what}: no complete answer")
        data = self.resp.read1(min(n if n > 0 else CHUNK, self.most - self.total + 1))
        self.total += len(data)
        if self.total > self.most:
            raise over_limit(f"{self.what}: the answer", self.most, self.limit)
        return data


def decoded(
    resp: urllib3.BaseHTTPResponse, body: BoundedBody, *, most: int, limit: Limit | None
) -> Readable:
    """`body` with the response's Content-Encoding (gzip, deflate) undone, bounded by
    `most` bytes of output and by the expansion ratio: an encoded bomb trips a limit."""
    encoding = resp.headers.get("Content-Encoding", "").strip().lower()
    codec = {"gzip": Codec.GZIP, "x-gzip": Codec.GZIP, "deflate": Codec.ZLIB}.get(encoding)
    if codec is None:
        return body
    bound, which = expansion_bound(body.most)
    if most < bound:
        return Inflated(body, codec, bound=most, limit=limit, what=body.what)
    return Inflated(body, codec, bound=bound, limit=which, what=body.what)


def drain(resp: urllib3.BaseHTTPResponse) -> None:
    """Give the connection back to the pool when the rest of the body is short; drop it
    when the body is long, of unknown length, or cannot be read."""
    import contextlib

    from urllib3.exceptions import HTTPError  # loaded already: `resp` is urllib3's

    length = resp.headers.get("Content-Length", "")
    with contextlib.suppress(HTTPError, OSError):
        if length.isdigit() and int(length) <= DRAIN_LIMIT:
            resp.drain_conn()
        else:
            resp.close()
    resp.release_conn()

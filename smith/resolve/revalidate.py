"""Is a kept copy still current? The copies fetch.py keeps, and one conditional request.

The fetcher keeps the last repomd.xml of each URL with its validators (ETag /
Last-Modified) under CACHE/revalidate, to ask the server for it conditionally next time.
A warm build asks less: only whether that copy is still current, before it may reuse an
earlier resolution (smith/resolution_memo.py). Only a 304 Not Modified counts; any other
answer (200, a redirect, 401, an error, a timeout) is "cannot tell", and the caller then
does the full build, whose fetcher downloads, follows redirects, retries and reports as it
always does. So the request here needs none of that, and none of urllib3 or http.client
(~30 ms of imports on a path where that is a quarter of the command): one GET on a socket,
and its status line, TLS verified as the fetcher verifies (smith/netenv.py). Only a request
the fetcher would send through a proxy or with credentials (from the URL or netrc) goes
through the fetcher's own client (smith/resolve/transport.py) instead: then the request is
the one a download would send, and a proxy is not a miss.

The socket path imports no more than the standard library's socket (and ssl for https).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from smith.limits import CONNECT_TIMEOUT, IDLE_TIMEOUT
from smith.netenv import ca_context, credentials, proxy_for

STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})[ \r]")
STATUS_BYTES = 256  # a status line is far shorter; a server sending no line end is a miss
# What may go into a request line or a header as it is: no controls, no spaces, no
# non-ASCII (a kept validator is what a server sent; it must not add headers of its own).
PLAIN = re.compile(r"[\x21-\x7e][\x20-\x7e]*")


def is_remote(url: str) -> bool:
    return urllib.parse.urlsplit(url).scheme in ("http", "https")


def kept_paths(cache_dir: Path, url: str) -> tuple[Path, Path]:
    """Where the kept copy of `url` is: (its body, its record: URL, sha256, validators)."""
    key = hashlib.sha256(url.encode()).hexdigest()
    base = cache_dir / "revalidate"
    return base / f"{key}.body", base / f"{key}.json"


def read_kept(cache_dir: Path, url: str) -> tuple[bytes, dict[str, str]] | None:
    """The kept copy and its validators (lower-case header names: etag, last-modified);
    None when there is none or it is damaged."""
    body_path, meta_path = kept_paths(cache_dir, url)
    try:
        meta = json.loads(meta_path.read_bytes())
        body = body_path.read_bytes()
        if meta["url"] != url or hashlib.sha256(body).hexdigest() != meta["sha256"]:
            return None
        validators = {str(k): str(v) for k, v in meta["validators"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return (body, validators) if validators else None


def conditional_headers(validators: Mapping[str, str]) -> dict[str, str]:
    headers = {}
    if "etag" in validators:
        headers["If-None-Match"] = validators["etag"]
    if "last-modified" in validators:
        headers["If-Modified-Since"] = validators["last-modified"]
    return headers


def not_modified(url: str, validators: Mapping[str, str]) -> bool:
    """True when the server answers a conditional GET of `url` with 304 Not Modified."""
    headers = conditional_headers(validators)
    parts = urllib.parse.urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    if (
        not headers
        or parts.scheme not in ("http", "https")
        or not all(PLAIN.fullmatch(v) for v in (parts.netloc, target, *headers.values()))
    ):
        return False
    if proxy_for(url) is not None or credentials(url) is not None:
        return not_modified_as_fetched(url, headers)
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    import socket

    timeout = min(CONNECT_TIMEOUT.value(), IDLE_TIMEOUT.value())
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or ""
        # An ASCII name as bytes: a str is encoded by the idna codec (~8 ms of imports).
        address = (host.encode("ascii") if host.isascii() else host, port)
        with socket.create_connection(address, timeout=timeout) as raw:  # type: ignore[arg-type]
            conn = (
                ca_context().wrap_socket(raw, server_hostname=parts.hostname)
                if parts.scheme == "https"
                else raw
            )
            conn.sendall(request)
            head = b""
            deadline = time.monotonic() + timeout  # a server trickling bytes is cut here
            while b"\n" not in head and len(head) < STATUS_BYTES:
                conn.settimeout(max(deadline - time.monotonic(), 0.001))
                got = conn.recv(STATUS_BYTES - len(head))
                if not got:
                    break
                head += got
    except (OSError, ValueError):  # ssl's errors are OSErrors; a bad port is a ValueError
        return False
    status = STATUS_LINE.match(head)
    return status is not None and status.group(1) == b"304"


def not_modified_as_fetched(url: str, headers: dict[str, str]) -> bool:
    """The conditional GET through the fetcher's client (its proxy, its credentials)."""
    import urllib3

    from smith.errors import PackageError
    from smith.resolve.transport import Transport

    try:
        resp = Transport(min(CONNECT_TIMEOUT.value(), IDLE_TIMEOUT.value())).get(url, headers)
    except (urllib3.exceptions.HTTPError, OSError, PackageError):
        return False
    resp.close()
    return resp.status == 304

"""A local HTTP server that misbehaves on purpose, one planned fault per request.

`server.plan(path, "500", "reset", ...)` queues faults for the next requests of `path`;
`server.always(path, fault)` makes every request of it fail so (retries included); when
neither applies the file is served correctly. `server.routes[path] = (body, headers)`
serves bytes that are no file (a registry's API answers); `server.redirects[path] =
location` answers it with a 302 there. `server.authorization[path]` lists the
Authorization header of each request of it ("" when none).

Faults:
- "404", "500"; "wrong" (every byte flipped); "truncate" (half the body, then close,
  Content-Length promising all of it); "reset" (TCP RST before any answer); "stall"
  (headers, then nothing for 2 seconds).
- "hang": the request is read and never answered (until the client leaves or 60 s).
- "trickle": headers, then one byte of the body every 0.2 s, the body repeated for ever.
- "endless": no Content-Length, and bytes until the client hangs up.
- "oversize": the real body, then bytes until the client hangs up (past any declared size).
- "gzip-bomb": `Content-Encoding: gzip` over 64 MiB of zeros (64 KiB sent).
- "wrong-encoding": `Content-Encoding: gzip` over a body that is not gzip.
- "challenge": HTTP 401 asking for a bearer token from `token` on this server.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import socket
import ssl
import struct
import threading
import time
import zlib
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STALL_SECONDS = 2.0
HANG_SECONDS = 60.0
TRICKLE_PAUSE = 0.2
ENDLESS_MAX = 4 << 30  # a bound of the server's own, in case a client never hangs up


@functools.cache
def gzip_bomb() -> bytes:
    """64 MiB of zeros, gzip-compressed (about 64 KiB)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * (1 << 20)
    return b"".join(comp.compress(zeros) for _ in range(64)) + comp.flush()


class FaultServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.faults: dict[str, deque[str]] = defaultdict(deque)
        self.permanent: dict[str, str] = {}
        self.routes: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.redirects: dict[str, str] = {}
        self.authorization: defaultdict[str, list[str]] = defaultdict(list)
        self.hits: Counter[str] = Counter()
        self.stopping = threading.Event()
        self.statuses: defaultdict[str, list[int]] = defaultdict(list)
        # Validators sent with every file, and honoured in conditional requests.
        self.validators: set[str] = set()
        self._lock = threading.Lock()
        self.url = ""

    def plan(self, path: str, *faults: str) -> None:
        with self._lock:
            self.faults[path].extend(faults)

    def always(self, path: str, fault: str) -> None:
        with self._lock:
            self.permanent[path] = fault

    def _next_fault(self, path: str) -> str:
        with self._lock:
            self.hits[path] += 1
            if self.faults[path]:
                return self.faults[path].popleft()
            return self.permanent.get(path, "")


def _handler(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.lstrip("/").split("?", 1)[0]
            fault = server._next_fault(path)
            server.authorization[path].append(self.headers.get("Authorization", ""))
            if path in server.redirects:
                self.send_response(302)
                self.send_header("Location", server.redirects[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            route = server.routes.get(path)
            file = server.root / path
            if fault == "404" or (route is None and not file.is_file()):
                self.send_error(404)
                return
            if fault == "500":
                self.send_error(500)
                return
            if fault == "reset":
                # SO_LINGER with a zero timeout makes close() send RST.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
                return
            if fault == "hang":
                self.wait(HANG_SECONDS)
                return
            if fault == "challenge":
                self.send_response(401)
                realm = f'Bearer realm="{server.url}token",service="hostile"'
                self.send_header("WWW-Authenticate", realm)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body, headers = route if route is not None else (file.read_bytes(), {})
            if fault in ("endless", "oversize"):
                self.send_response(200)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Connection", "close")
                self.end_headers()
                self.pour(body if fault == "oversize" else b"")
                return
            if fault == "gzip-bomb":
                body, headers = gzip_bomb(), {**headers, "Content-Encoding": "gzip"}
            if fault == "wrong-encoding":
                headers = {**headers, "Content-Encoding": "gzip"}
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            modified = email.utils.formatdate(
                int(file.stat().st_mtime) if route is None else 0, usegmt=True
            )
            if ("etag" in server.validators and self.headers.get("If-None-Match") == etag) or (
                "last-modified" in server.validators
                and self.headers.get("If-Modified-Since") == modified
            ):
                server.statuses[path].append(304)
                self.send_response(304)
                self.end_headers()
                return
            server.statuses[path].append(200)
            self.send_response(200)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body) * (1000 if fault == "trickle" else 1)))
            if "etag" in server.validators:
                self.send_header("ETag", etag)
            if "last-modified" in server.validators:
                self.send_header("Last-Modified", modified)
            self.end_headers()
            if fault == "stall":
                self.wfile.flush()
                time.sleep(STALL_SECONDS)
                return
            if fault == "trickle":
                self.trickle(body or b"x")
                return
            if fault == "wrong":
                body = bytes(b ^ 0xFF for b in body)
            if fault == "truncate":
                body = body[: len(body) // 2]
                self.wfile.write(body)
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

        def wait(self, seconds: float) -> None:
            """Hold the connection, answering nothing, until the client goes or time ends."""
            self.connection.settimeout(0.2)
            end = time.monotonic() + seconds
            while time.monotonic() < end and not server.stopping.is_set():
                try:
                    if self.connection.recv(1) == b"":
                        return
                except TimeoutError:
                    continue
                except OSError:
                    return

        def trickle(self, body: bytes) -> None:
            sent = 0
            try:
                while not server.stopping.is_set() and sent < len(body) * 1000:
                    self.wfile.write(body[sent % len(body) : sent % len(body) + 1])
                    self.wfile.flush()
                    sent += 1
                    time.sleep(TRICKLE_PAUSE)
            except OSError:
                pass  # the client gave up: what it should do

        def pour(self, head: bytes) -> None:
            chunk = b"<" * (1 << 20)
            sent = 0
            try:
                self.wfile.write(head)
                while not server.stopping.is_set() and sent < ENDLESS_MAX:
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except OSError:
                pass

    return Handler


@contextmanager
def fault_server(root: Path, *, tls: tuple[Path, Path] | None = None) -> Iterator[FaultServer]:
    """Serve `root`; with `tls=(cert, key)` over https."""
    state = FaultServer(root)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    scheme = "http"
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        scheme = "https"
    state.url = f"{scheme}://127.0.0.1:{httpd.server_address[1]}/"
    with serving(httpd, state.stopping):
        yield state


@contextmanager
def serving(httpd: ThreadingHTTPServer, stopping: threading.Event | None = None) -> Iterator[None]:
    """`httpd` answering on a thread of its own; `stopping` is set before it shuts down
    (what holds a connection open waits for it)."""
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        if stopping is not None:
            stopping.set()
        httpd.shutdown()
        httpd.server_close()

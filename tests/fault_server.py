"""A local HTTP server that misbehaves on purpose, one planned fault per request.

`server.plan(path, "500", "reset", ...)` queues faults for the next requests of `path`;
when the queue is empty the file is served correctly. Faults: "404", "500", "wrong" (every
byte flipped), "truncate" (half the body, then close, Content-Length promising all of it),
"reset" (TCP RST before any answer) and "stall" (headers, then nothing for 2 seconds).
"""

from __future__ import annotations

import email.utils
import hashlib
import socket
import ssl
import struct
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STALL_SECONDS = 2.0


class FaultServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.faults: dict[str, deque[str]] = defaultdict(deque)
        self.hits: Counter[str] = Counter()
        self.statuses: defaultdict[str, list[int]] = defaultdict(list)
        # Validators sent with every file, and honoured in conditional requests.
        self.validators: set[str] = set()
        self._lock = threading.Lock()
        self.url = ""

    def plan(self, path: str, *faults: str) -> None:
        with self._lock:
            self.faults[path].extend(faults)

    def _next_fault(self, path: str) -> str:
        with self._lock:
            self.hits[path] += 1
            return self.faults[path].popleft() if self.faults[path] else ""


def _handler(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.lstrip("/")
            fault = server._next_fault(path)
            file = server.root / path
            if fault == "404" or not file.is_file():
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
            body = file.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            modified = email.utils.formatdate(int(file.stat().st_mtime), usegmt=True)
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
            self.send_header("Content-Length", str(len(body)))
            if "etag" in server.validators:
                self.send_header("ETag", etag)
            if "last-modified" in server.validators:
                self.send_header("Last-Modified", modified)
            self.end_headers()
            if fault == "stall":
                self.wfile.flush()
                time.sleep(STALL_SECONDS)
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
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()

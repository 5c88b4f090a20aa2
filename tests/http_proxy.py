"""A forwarding HTTP proxy on 127.0.0.1 (requests with an absolute URL, as clients send to
an HTTP proxy for http:// URLs: GET and HEAD, and the PUT, POST and PATCH of a registry
upload), that records what it was asked and with which Proxy-Authorization. End-to-end
headers go through both ways, so a 304 comes back as a 304 and a registry's Location and
Docker-Content-Digest reach the client."""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fault_server import serving

# Hop-by-hop headers: a proxy answers them itself and never passes them on (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer"}
    | {"transfer-encoding", "upgrade", "content-length"}
)


@dataclass
class Proxy:
    url: str = ""
    asked: list[str] = field(default_factory=list)  # the absolute URLs, in order
    auth: list[str] = field(default_factory=list)  # their Proxy-Authorization ("" if none)
    methods: list[str] = field(default_factory=list)  # their methods


def _handler(proxy: Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a client's pool expects

        def log_message(self, format: str, *args: object) -> None:
            pass

        def forward(self) -> None:
            proxy.asked.append(self.path)
            proxy.auth.append(self.headers.get("Proxy-Authorization", ""))
            proxy.methods.append(self.command)
            parts = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            upstream = http.client.HTTPConnection(parts.netloc, timeout=10)
            target = parts.path + ("?" + parts.query if parts.query else "")
            sent = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if body is not None or self.command in ("PUT", "POST", "PATCH"):
                sent["Content-Length"] = str(length)
            upstream.request(self.command, target, body=body, headers=sent)
            answer = upstream.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            if self.command == "HEAD":  # the length of what a GET would have sent
                self.send_header("Content-Length", answer.getheader("Content-Length") or "0")
            else:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            upstream.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = forward

    return Handler


@contextmanager
def http_proxy() -> Iterator[Proxy]:
    proxy = Proxy()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    httpd.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    with serving(httpd):
        yield proxy

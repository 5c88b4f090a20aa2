"""A forwarding HTTP proxy on 127.0.0.1 (GET with an absolute URL, as clients send to
an HTTP proxy for http:// URLs), that records what it was asked and with which
Proxy-Authorization. Conditional headers go through, so a 304 comes back as a 304."""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fault_server import serving

FORWARDED = ("If-None-Match", "If-Modified-Since", "Accept-Encoding", "Authorization")


@dataclass
class Proxy:
    url: str = ""
    asked: list[str] = field(default_factory=list)  # the absolute URLs, in order
    auth: list[str] = field(default_factory=list)  # their Proxy-Authorization ("" if none)


def _handler(proxy: Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            proxy.asked.append(self.path)
            proxy.auth.append(self.headers.get("Proxy-Authorization", ""))
            parts = urllib.parse.urlsplit(self.path)
            upstream = http.client.HTTPConnection(parts.netloc, timeout=10)
            target = parts.path + ("?" + parts.query if parts.query else "")
            sent = {k: v for k in FORWARDED if (v := self.headers.get(k)) is not None}
            upstream.request("GET", target, headers=sent)
            answer = upstream.getresponse()
            body = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            upstream.close()

    return Handler


@contextmanager
def http_proxy() -> Iterator[Proxy]:
    proxy = Proxy()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    httpd.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    with serving(httpd):
        yield proxy

"""GET over HTTP(S) for the repository fetcher: urllib3, as the registry client uses.

One pool manager per (proxy, scheme), made on first use (smith/netpools.py, as for the
registry client) and shared by the threads of fetch_packages (urllib3's pools are
thread-safe). What the environment decides (proxy, CAs, credentials) is smith/netenv.py's.
Redirects are followed here, at most MAX_REDIRECTS and only to http(s): a repository must
not send smith to file:// or another scheme. Credentials go to the host they were given
for; a redirect to another host takes that host's own (netrc), never the first one's.
Bodies are not decoded here (smith/netread.py undoes Content-Encoding within bounds) and
nothing is retried here (the fetcher's own retries and backoff decide).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

import urllib3

from smith.errors import PackageError
from smith.limits import CONNECT_TIMEOUT, IDLE_TIMEOUT
from smith.netenv import ca_context, credentials, without_credentials
from smith.netpools import ProxiedPools, proxy_failure
from smith.netread import drain

MAX_REDIRECTS = 10
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
POOL_SIZE = 8  # connections kept per host: fetch_packages runs 4 downloads at a time
# What smith/netread.py can undo within bounds: a server must not pick another encoding.
ACCEPT_ENCODING = "gzip, deflate"


class Transport:
    """GETs for one fetcher; `timeout` caps the connect and idle timeouts (limits.py)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = urllib3.Timeout(
            connect=min(CONNECT_TIMEOUT.value(), timeout),
            read=min(IDLE_TIMEOUT.value(), timeout),  # the wait for each byte; the
        )  # total deadline is netread's, checked between reads
        self._pools = ProxiedPools(PackageError, tls_options, maxsize=POOL_SIZE)

    def get(self, url: str, headers: Mapping[str, str]) -> urllib3.BaseHTTPResponse:
        """The answer to GET `url` after redirects; its body unread. urllib3's errors
        propagate."""
        first, login = url, credentials(url)
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._get_once(url, headers, login)
            location = resp.headers.get("Location")
            if resp.status not in REDIRECT_STATUS or not location:
                return resp
            drain(resp)  # a long or endless body goes with its connection, unread
            target = redirected(url, location)
            if not same_server(url, target):
                # Credentials stay with the server they were given for; another server
                # gets its own (its URL's, its netrc entry), as with requests.
                login = credentials(target)
            url = target
        raise PackageError(f"download of {first} failed: more than {MAX_REDIRECTS} redirects")

    def _get_once(
        self, url: str, headers: Mapping[str, str], login: tuple[str, str] | None
    ) -> urllib3.BaseHTTPResponse:
        send = {"Accept-Encoding": ACCEPT_ENCODING, **headers}
        if login is not None:
            send.update(urllib3.make_headers(basic_auth=f"{login[0]}:{login[1]}"))
        return self._pools.urlopen(
            "GET",
            without_credentials(url),
            headers=send,
            preload_content=False,  # bounded by the caller: a body may be endless
            decode_content=False,
            redirect=False,
            retries=False,
            timeout=self.timeout,
        )


def tls_options(scheme: str) -> dict[str, object]:
    # The CA store is loaded only for https (a few ms): an http repository never needs it.
    return {"ssl_context": ca_context()} if scheme == "https" else {}


def redirected(url: str, location: str) -> str:
    target = urllib.parse.urljoin(url, location)
    if urllib.parse.urlsplit(target).scheme not in ("http", "https"):
        raise PackageError(f"{url} redirects to {location!r}: only http(s) is followed")
    return target


def same_server(url: str, target: str) -> bool:
    """The same host and port (http on 80 to https on 443 counts as the same)."""
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(target)
    ports = {"http": 80, "https": 443}
    here = (a.hostname, a.port or ports.get(a.scheme))
    there = (b.hostname, b.port or ports.get(b.scheme))
    return here == there or (here, there) == ((a.hostname, 80), (a.hostname, 443))


def describe(err: Exception) -> str:
    """What happened, in the words a user searches for: urllib3's connection errors cover
    a refused connection, an unknown host and a reset alike."""
    if through := proxy_failure(err):
        return through
    text = str(err)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "Failed to resolve" in text:
        return "host not found"
    if isinstance(err, urllib3.exceptions.ConnectTimeoutError):
        return "timed out (ConnectTimeout)"
    if isinstance(err, urllib3.exceptions.ReadTimeoutError):
        return "timed out (ReadTimeout)"
    if "Connection reset" in text:
        return "connection reset"
    return type(err).__name__

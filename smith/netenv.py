"""What the environment says about an HTTP request to a repository: which proxy it goes
through, which certificate authorities verify it, and which credentials it carries.

The rules are the ones smith's downloads always followed (they came from requests, and
users set their environment for them): HTTP_PROXY / HTTPS_PROXY / ALL_PROXY and NO_PROXY
(host suffixes, `*`, IPv4 networks in CIDR form) as urllib.request reads them; the system
CA store, or the bundle REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE names instead (OpenSSL's own
SSL_CERT_FILE / SSL_CERT_DIR reach the system store too); user:password in the URL, else
the host's entry in NETRC or ~/.netrc. Shared by the downloader (smith/resolve/transport.py)
and the conditional request (smith/resolve/revalidate.py), so they never disagree.

Standard library only, imported when asked: the warm path checks a proxy on every build.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
NETRC_FILES = ("~/.netrc", "~/_netrc")


def proxy_for(url: str) -> str | None:
    """The proxy URL a request of `url` goes through, None for a direct connection."""
    # urllib.request reads every *_proxy variable; most environments set none, and then
    # importing it (~5 ms) buys nothing.
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if host is None or bypassed(host):
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    # A proxy written "host:3128" is an HTTP proxy, as requests and curl take it.
    return proxy if "://" in proxy else "http://" + proxy


def bypassed(host: str) -> bool:
    """Whether NO_PROXY names `host`: its own rules (urllib.request.proxy_bypass), and an
    IPv4 network written as CIDR (`10.0.0.0/8`), which requests also honoured."""
    import ipaddress
    import urllib.request

    no_proxy = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in no_proxy.replace(" ", "").split(","):
        if address is not None and "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return bool(urllib.request.proxy_bypass(host))


def ca_context() -> ssl.SSLContext:
    """A TLS context that verifies against the system CAs, or the named bundle instead."""
    import ssl

    bundle = next((os.environ[v] for v in CA_VARIABLES if os.environ.get(v)), None)
    if bundle is None:
        return ssl.create_default_context()
    if os.path.isdir(bundle):  # a directory of hashed certificates, as c_rehash lays out
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)


def credentials(url: str) -> tuple[str, str] | None:
    """(user, password) for `url`: its own user:password@, else its host's netrc entry."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None:
        return urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")
    return netrc_credentials(parts.hostname or "")


def netrc_credentials(host: str) -> tuple[str, str] | None:
    named = os.environ.get("NETRC")
    places = (named,) if named is not None else NETRC_FILES
    path = next((p for p in map(os.path.expanduser, places) if os.path.exists(p)), None)
    if path is None or not host:
        return None
    import netrc

    try:
        entry = netrc.netrc(path).authenticators(host)
    except (netrc.NetrcParseError, OSError):
        return None  # a netrc that cannot be read names no credentials, as before
    if entry is None or not any(entry):
        return None
    login, account, password = entry
    return (login or account or "", password or "")


def without_credentials(url: str) -> str:
    """`url` without user:password@: they go in a header, never in a request line."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

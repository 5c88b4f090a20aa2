"""urllib3 connection pools through the proxy the environment names for each URL.

Repository downloads (smith/resolve/transport.py) and the registry client
(smith/oci/registry.py) both go through `ProxiedPools`, so a proxy, NO_PROXY and the
proxy's credentials mean the same to every request smith makes (smith/netenv.py reads
them). A registry and its token server may be on different sides of NO_PROXY: the pool is
chosen per URL, not per client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import urllib3

from smith.errors import SmithError
from smith.netenv import ca_context, credentials, proxy_for, without_credentials


class ProxiedPools:
    """urlopen() of a PoolManager or ProxyManager, picked by the URL's proxy; `options`
    (the keyword arguments of urllib3.PoolManager) are the same for each; `tls` gives
    those that depend on the URL's scheme (a TLS context only for https)."""

    def __init__(
        self,
        error: type[SmithError],
        tls: Callable[[str], dict[str, Any]] = lambda scheme: {},
        **options: Any,
    ) -> None:
        self._error = error
        self._tls = tls
        self._options = options
        self._managers: dict[tuple[str | None, str], urllib3.PoolManager] = {}
        self._lock = threading.Lock()

    def urlopen(self, method: str, url: str, **kw: Any) -> urllib3.BaseHTTPResponse:
        try:
            return self.manager(url).urlopen(method, url, **kw)
        except urllib3.exceptions.ProxyError as err:
            # urllib3 says only "Unable to connect to proxy": name which one, so that a
            # dead proxy is not taken for a dead registry or repository.
            proxy = without_credentials(proxy_for(url) or "")
            raise urllib3.exceptions.ProxyError(f"the proxy {proxy}", err.original_error) from None

    def manager(self, url: str) -> urllib3.PoolManager:
        proxy = proxy_for(url)
        scheme = url.partition("://")[0]
        with self._lock:
            found = self._managers.get((proxy, scheme))
            if found is None:
                options = {**self._options, **self._tls(scheme)}
                found = self._managers[(proxy, scheme)] = self._new(proxy, options)
            return found

    def _new(self, proxy: str | None, options: dict[str, Any]) -> urllib3.PoolManager:
        if proxy is None:
            return urllib3.PoolManager(**options)
        if not proxy.startswith(("http://", "https://")):
            raise self._error(f"unsupported proxy {proxy!r}: smith speaks to HTTP(S) proxies only")
        login = credentials(proxy)
        auth = urllib3.make_headers(proxy_basic_auth=f"{login[0]}:{login[1]}") if login else {}
        if proxy.startswith("https://"):
            options["proxy_ssl_context"] = ca_context()
        return urllib3.ProxyManager(without_credentials(proxy), proxy_headers=auth, **options)


def proxy_failure(err: BaseException) -> str:
    """'the proxy URL: REASON' when `err` is a proxy's failure (see urlopen), else ''."""
    if not isinstance(err, urllib3.exceptions.ProxyError) or not err.args:
        return ""
    reason = str(err.original_error or "")
    return f"{err.args[0]}: {reason.rpartition(': ')[2] or type(err).__name__}"

"""The OCI distribution API over HTTP: one client per (registry, repository).

urllib3 directly rather than requests: smith needs streaming bodies with an exact
Content-Length and a large block size, its own TLS context (system CAs plus a CA
directory), and its own retry and redirect rules, and urllib3 gives all of that plainly.

Every request goes through `RegistryClient.request`, which adds the Authorization header,
answers a 401 challenge (basic, or the bearer-token flow), follows redirects (dropping the
Authorization header when the host changes) and retries 408/429/5xx and dropped or stalled
connections with exponential backoff. Nothing here logs a header or a body.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError, InsecureRequestWarning, SSLError

from smith.errors import LimitError, RegistryError
from smith.limits import CONNECT_TIMEOUT, DOCUMENT_BYTES, IDLE_TIMEOUT, json_document
from smith.netpools import ProxiedPools, proxy_failure
from smith.netread import BoundedBody, deadline_from_now, drain
from smith.oci.auth import Challenge, Credentials, find_credentials, parse_challenges
from smith.oci.reference import Reference
from smith.oci.registry_options import RegistryOptions

__all__ = ["RegistryOptions"]  # defined apart so that commands need not import urllib3

log = logging.getLogger("smith.registry")
# urllib3 logs every request line with its query string at DEBUG, and a redirect to blob
# storage carries a presigned signature there: --debug must not print it. smith logs each
# request itself, without the query.
logging.getLogger("urllib3").setLevel(logging.WARNING)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
BLOCK_SIZE = 1 << 20  # socket writes and reads: 16 KiB (urllib3's default) costs CPU at 200 MB
MAX_BACKOFF = 30.0
SYSTEM_CERT_DIRS = ("/etc/docker/certs.d", "/etc/containers/certs.d")


class Readable(Protocol):
    """A request body urllib3 streams block by block."""

    def read(self, size: int = -1) -> bytes: ...
    def close(self) -> None: ...


Body = bytes | Callable[[], Readable] | None


class RegistryRequestError(RegistryError):
    """A request failed; `status` (0 when no answer came) and `transient` let callers decide
    whether to fall back (a 400/415 on an OCI manifest) or to start a step again."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        transient: bool = False,
        hint: str = "",
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
        self.transient = transient


def tls_context(options: RegistryOptions, registry: str) -> ssl.SSLContext:
    """The system CAs, plus CA files (and a client certificate) from the CA directories,
    laid out as docker's certs.d: `ca.crt`, `client.cert` + `client.key`."""
    if options.insecure:
        # Nothing is verified: loading the system CAs (~0.1 s, every client) buys nothing.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context()
    dirs = [os.path.join(base, registry) for base in SYSTEM_CERT_DIRS]
    if options.cert_dir:
        if not os.path.isdir(options.cert_dir):
            raise RegistryError(f"the certificate directory {options.cert_dir!r} does not exist")
        dirs.append(options.cert_dir)
    for directory in dirs:
        if not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            try:
                if name.endswith((".crt", ".pem")):
                    context.load_verify_locations(cafile=path)
                elif name.endswith(".cert"):
                    context.load_cert_chain(path, path.removesuffix(".cert") + ".key")
            except (ssl.SSLError, OSError) as err:
                raise RegistryError(f"cannot load the certificate {path!r}: {err}") from None
    if options.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def error_detail(data: bytes) -> tuple[str, str]:
    """The registry's own error code, and code and message for a message."""
    try:
        doc = json_document(data[:65536] or b"{}", "an error")
        first = (doc.get("errors") or [{}])[0]
        code = str(first.get("code", ""))
        # The registry's words, on smith's one line: no newline of theirs may break it.
        text = " ".join(f"{code}: {first.get('message', '')}".split()).strip(": ")
    except (ValueError, AttributeError, IndexError, TypeError, LimitError):
        return "", ""
    return code, f" ({text[:200]})" if text else ""


def shown_url(url: str) -> str:
    """A URL for a message: upload locations carry long opaque state in the query."""
    return url.split("?", 1)[0]


class RegistryClient:
    """Talks to one repository of one registry, with the rights `actions` needs."""

    def __init__(
        self,
        ref: Reference,
        options: RegistryOptions,
        *,
        push: bool = False,
        mount_from: Sequence[str] = (),
    ) -> None:
        self.ref = ref
        self.options = options
        self.creds = options.creds
        if self.creds is None and ref.username:
            self.creds = Credentials(ref.username, ref.password)
        if self.creds is None:
            self.creds = find_credentials(ref.registry, options.authfile)
        actions = "pull,push" if push else "pull"
        self.scopes = [f"repository:{ref.repository}:{actions}"]
        self.scopes += [f"repository:{repo}:pull" for repo in mount_from if repo != ref.repository]
        # Through the proxy the environment names for each URL (HTTPS_PROXY, NO_PROXY: the
        # rules repository downloads follow), the registry's and its token server's alike.
        self.pool = ProxiedPools(
            RegistryError,
            num_pools=4,
            maxsize=max(2, options.jobs + 1),
            ssl_context=tls_context(options, ref.registry),
            blocksize=BLOCK_SIZE,
            # --timeout is the idle timeout (a read that waits that long for a byte fails);
            # the total deadline is netread's, checked between reads.
            timeout=urllib3.Timeout(
                connect=min(options.timeout, CONNECT_TIMEOUT.value()),
                read=min(options.timeout, IDLE_TIMEOUT.value()),
            ),
            retries=False,
        )
        self._auth = ""
        self._lock = threading.Lock()
        self.base = ""
        self.ping()

    # -- the generic request ---------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.base}/v2/{self.ref.repository}/{path}"

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        ok: Sequence[int] = (200,),
        stream: bool = False,
        retry: bool = True,
        what: str = "",
    ) -> urllib3.BaseHTTPResponse:
        """One request, with authentication, redirects and retries. `body` is bytes or a
        callable that opens the body afresh (a retry must resend it from the start)."""
        attempt = auth_rounds = redirects = 0
        what = what or f"{method} {shown_url(url)}"
        first_url = url  # a retry starts here again: a redirect's target may have expired
        while True:
            send = dict(headers or {})
            auth = self._auth
            if auth and urlsplit(url).netloc == urlsplit(self.base).netloc:
                send["Authorization"] = auth
            data = body() if callable(body) else body
            try:
                resp = self.pool.urlopen(
                    method,
                    url,
                    body=data,
                    headers=send,
                    preload_content=False,  # bounded below: a body may be endless
                    decode_content=False,
                    redirect=False,
                    retries=False,
                )
            except SSLError as err:
                raise RegistryError(f"{self.ref}: {what}: TLS failed ({err})") from None
            except (HTTPError, OSError) as err:
                self.pause_or_fail(err, what, attempt, retry, f"{self.ref.registry} unreachable")
                attempt, url, redirects = attempt + 1, first_url, 0
                continue
            finally:
                if data is not None and not isinstance(data, bytes):
                    data.close()
            status = resp.status
            log.debug("%s %s -> %d", method, shown_url(url), status)
            if status == 401 and auth_rounds < 2 and resp.headers.get("WWW-Authenticate"):
                challenge = resp.headers["WWW-Authenticate"]
                drain(resp)
                with self._lock:
                    if self._auth == auth:  # another thread may have renewed it already
                        self.authenticate(challenge, auth_rounds)
                auth_rounds += 1
                continue
            if status in REDIRECT_STATUS and method in ("GET", "HEAD") and redirects < 5:
                location = resp.headers.get("Location", "")
                drain(resp)
                url, redirects = urljoin(url, location), redirects + 1
                continue
            if status in RETRY_STATUS and retry and attempt < self.options.retries:
                wait = retry_after(resp.headers.get("Retry-After", ""))
                drain(resp)
                self.pause(attempt, f"{what}: HTTP {status}", wait)
                attempt, url, redirects = attempt + 1, first_url, 0
                continue
            if status not in ok:
                code, detail = error_detail(read_some(resp, 65536))
                drain(resp)
                denied = status in (401, 403)
                raise RegistryRequestError(
                    f"{self.ref}: {what}: HTTP {status}{detail}",
                    status=status,
                    code=code,
                    transient=status in RETRY_STATUS,
                    hint=f"no {access(self.scopes)} rights on {self.ref.repository}?"
                    if denied
                    else "",
                )
            if stream:
                return resp
            try:
                document = read_document(resp, f"{self.ref}: {what}")
            except (HTTPError, OSError) as err:
                self.pause_or_fail(err, what, attempt, retry, "the answer broke off")
                attempt, url, redirects = attempt + 1, first_url, 0
                continue
            return urllib3.HTTPResponse(
                body=document, headers=resp.headers, status=status, preload_content=False
            )

    def pause_or_fail(
        self, err: Exception, what: str, attempt: int, retry: bool, failure: str
    ) -> None:
        """Wait before another attempt after a network error, or raise the one that ends it."""
        if retry and attempt < self.options.retries:
            self.pause(attempt, f"{what}: {type(err).__name__}")
            return
        raise RegistryRequestError(
            f"{self.ref}: {what}: {failure} ({describe(err)}) after {attempt + 1} attempt(s)",
            transient=True,
        ) from None

    def pause(self, attempt: int, why: str, at_least: float = 0.0) -> None:
        wait = max(at_least, min(MAX_BACKOFF, self.options.backoff * 2**attempt))
        log.info("%s; retrying in %.1f s", why, wait)
        time.sleep(wait)

    # -- connecting and authenticating -----------------------------------------------------

    def ping(self) -> None:
        """`GET /v2/`: find the scheme, and authenticate up front if the registry asks."""
        # http:// means plain HTTP. https:// (the original smith's form for every registry)
        # and docker:// mean TLS, or with --insecure TLS unchecked, then plain HTTP.
        if self.ref.scheme == "http":
            schemes = ["http"]
        else:
            schemes = ["https", "http"] if self.options.insecure else ["https"]
        if self.options.insecure:
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
        for scheme in schemes:
            self.base = f"{scheme}://{self.ref.api_host}"
            try:
                resp = self.request("GET", f"{self.base}/v2/", ok=(200, 401), what="GET /v2/")
            except RegistryError as err:
                if scheme != schemes[-1]:
                    log.debug("%s over %s failed (%s); trying plain HTTP", self.base, scheme, err)
                    continue
                hint = ""
                if scheme == "https" and "TLS" in str(err) and not self.options.insecure:
                    hint = "plain HTTP or a self-signed registry needs --insecure or --cert-dir"
                raise RegistryError(str(err), hint=hint) from None
            if resp.status == 401:
                # The registry wants credentials but gave no challenge to answer.
                raise RegistryError(f"{self.ref.registry} refused access (HTTP 401, no challenge)")
            return

    def authenticate(self, header: str, rounds: int) -> None:
        challenges = parse_challenges(header)
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None:
            self._auth = "Bearer " + self.fetch_token(bearer)
        elif basic is not None:
            if self.creds is None:
                raise RegistryError(
                    f"{self.ref.registry} requires credentials",
                    hint="use --creds, docker login, or a credential helper",
                )
            if rounds > 0:
                raise RegistryError(f"{self.ref.registry} refused the credentials (HTTP 401)")
            self._auth = self.creds.basic_header()
        else:
            raise RegistryError(f"{self.ref.registry} asks for an unsupported authentication")

    def fetch_token(self, challenge: Challenge) -> str:
        """The bearer-token flow: ask the realm for a token covering every scope needed."""
        realm = challenge.get("realm")
        if not realm.startswith(("https://", "http://")):
            raise RegistryError(f"{self.ref.registry} names an invalid token realm {realm!r}")
        scopes = list(self.scopes)
        for scope in challenge.get("scope").split():
            if scope not in scopes:
                scopes.append(scope)
        query = [("service", challenge.get("service"))] if challenge.get("service") else []
        query += [("scope", s) for s in scopes]
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        log.debug("token from %s for %s", shown_url(realm), " ".join(scopes))
        headers = {"Authorization": self.creds.basic_header()} if self.creds else {}
        last = None
        for attempt in range(self.options.retries + 1):
            try:
                # Redirects only (urllib3 drops Authorization when the host changes);
                # errors come back here for smith's own backoff.
                redirects = urllib3.Retry(total=3, connect=0, read=0, status=0, other=0)
                resp = self.pool.urlopen(
                    "GET", url, headers=headers, retries=redirects, preload_content=False
                )
                data = read_document(resp, f"token server {shown_url(realm)}")
            except SSLError as err:
                raise RegistryError(
                    f"token server {shown_url(realm)}: TLS failed ({err})"
                ) from None
            except (HTTPError, OSError) as err:
                last = describe(err)
                self.pause(attempt, f"token server {shown_url(realm)}: {last}")
                continue
            if resp.status in RETRY_STATUS:
                last = f"HTTP {resp.status}"
                self.pause(attempt, f"token server {shown_url(realm)}: {last}")
                continue
            if resp.status in (401, 403):
                who = "the credentials" if self.creds else "anonymous access"
                raise RegistryError(
                    f"token server {shown_url(realm)} refused {who} for {self.ref.repository} "
                    f"(HTTP {resp.status})"
                )
            if resp.status != 200:
                raise RegistryError(f"token server {shown_url(realm)} answered HTTP {resp.status}")
            try:
                doc = json_document(data, f"token server {shown_url(realm)}")
                token = doc.get("token") or doc.get("access_token")
            except (ValueError, AttributeError):
                token = None
            if not isinstance(token, str) or not token:
                raise RegistryError(f"token server {shown_url(realm)} answered no token")
            return token
        raise RegistryError(f"token server {shown_url(realm)} unreachable ({last})")

    # -- the API -------------------------------------------------------------------------

    def get_manifest(self, reference: str, accept: Sequence[str]) -> tuple[bytes, str, str]:
        """Manifest bytes, the Content-Type and the Docker-Content-Digest header."""
        resp = self.request(
            "GET",
            self.url(f"manifests/{reference}"),
            headers={"Accept": ", ".join(accept)},
            what=f"manifest {reference}",
        )
        body = resp.data or b""
        content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return body, content_type, resp.headers.get("Docker-Content-Digest", "")

    def put_manifest(self, reference: str, data: bytes, media_type: str) -> str:
        """PUT a manifest; the digest the registry says it stored (or "")."""
        resp = self.put_manifest_answer(reference, data, media_type, "push manifest")
        return resp.headers.get("Docker-Content-Digest", "")

    def put_manifest_answer(
        self, reference: str, data: bytes, media_type: str, what: str
    ) -> urllib3.BaseHTTPResponse:
        """PUT a manifest; the whole answer (a referrer's push reads its OCI-Subject)."""
        return self.request(
            "PUT",
            self.url(f"manifests/{reference}"),
            headers={"Content-Type": media_type, "Content-Length": str(len(data))},
            body=data,
            ok=(201, 200),
            what=what,
        )

    def has_blob(self, digest: str) -> bool:
        resp = self.request("HEAD", self.url(f"blobs/{digest}"), ok=(200, 404))
        return resp.status == 200

    def get_blob(self, digest: str, offset: int = 0) -> urllib3.BaseHTTPResponse:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        return self.request(
            "GET",
            self.url(f"blobs/{digest}"),
            headers=headers,
            ok=(200, 206),
            stream=True,
            what=f"blob {digest}",
        )

    def start_upload(self, digest: str, mount_from: str = "") -> str:
        """POST an upload session; "" when the blob was mounted from `mount_from`."""
        query = "?" + urlencode({"mount": digest, "from": mount_from}) if mount_from else ""
        resp = self.request(
            "POST",
            self.url(f"blobs/uploads/{query}"),
            headers={"Content-Length": "0"},
            ok=(201, 202),
            what=f"start upload of {digest}",
        )
        if resp.status == 201:
            return ""
        return self.location(resp)

    def cancel_upload(self, location: str) -> None:
        """DELETE an upload session smith will not use; a failure only leaves it to expire."""
        with contextlib.suppress(RegistryError):
            self.request("DELETE", location, ok=(204, 404), retry=False, what="cancel upload")

    def location(self, resp: urllib3.BaseHTTPResponse) -> str:
        location = resp.headers.get("Location", "")
        if not location:
            raise RegistryError(f"{self.ref.registry} gave no upload location")
        return urljoin(self.base + "/", location)


def access(scopes: Sequence[str]) -> str:
    """ "pull,push" from the first scope: what a 401/403 says was missing."""
    return scopes[0].rsplit(":", 1)[-1] if scopes else "pull"


def with_query(url: str, **params: str) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def read_some(resp: urllib3.BaseHTTPResponse, limit: int) -> bytes:
    """At most `limit` bytes of a body (an error's explanation), b"" if it breaks off."""
    try:
        return resp.read(limit)
    except (HTTPError, OSError):
        return b""


def read_document(resp: urllib3.BaseHTTPResponse, what: str) -> bytes:
    """A body smith keeps in memory (a manifest, a token), at most DOCUMENT_BYTES and within
    the download deadline: a registry that sends more, sends forever or trickles is refused
    as the bytes arrive, never buffered until memory ends. Read errors propagate (the
    caller retries)."""
    body = BoundedBody(
        resp, what, deadline=deadline_from_now(), most=DOCUMENT_BYTES.count(), limit=DOCUMENT_BYTES
    )
    try:
        data = b"".join(iter(lambda: body.read(BLOCK_SIZE), b""))
    except BaseException:  # a limit, a broken connection: what is left must not be reused
        resp.close()
        resp.release_conn()
        raise
    drain(resp)
    return data


def retry_after(value: str) -> float:
    try:
        return min(60.0, max(0.0, float(value)))
    except ValueError:
        return 0.0


def describe(err: BaseException) -> str:
    """A short reason for a connection error: urllib3 wraps the OS's words in its own."""
    if through := proxy_failure(err):
        return through
    text = str(err)
    found = re.search(r"\[Errno -?\d+\] [^'\")]*", text)
    if found:
        return found.group(0).strip()
    if "timed out" in text.lower():
        return "timed out"
    return f"{type(err).__name__}: {text}"[:200]


def decode_json(data: bytes, what: str) -> Any:
    try:
        return json_document(data, what)
    except (ValueError, UnicodeDecodeError) as err:
        raise RegistryError(f"{what} is not valid JSON ({err})") from None

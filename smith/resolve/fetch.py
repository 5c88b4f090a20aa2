"""Downloads and the download cache.

Everything smith downloads is checked against a checksum it already knows (from repomd.xml
or the lockfile) and cached under that checksum. A file enters the cache only by a rename
after its bytes were written, flushed and verified, so an interrupted or corrupt download
is never taken as cached. Only repomd.xml, the root of trust for a repository's other
files, is fetched without a checksum: a copy of it is kept only to be revalidated with a
conditional request (If-None-Match / If-Modified-Since), and used only when the server
answers 304 Not Modified, so an unchanged repository costs one small round trip.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from smith.diskspace import CACHE, FULL, check_space, disk_full
from smith.errors import PackageError, SmithError
from smith.leftovers import sweep, tagged
from smith.limits import DOCUMENT_BYTES, DOWNLOAD_BYTES, Limit
from smith.netread import CHUNK, BoundedBody, deadline_from_now, decoded
from smith.resolve.revalidate import is_remote as is_remote
from smith.resolve.revalidate import kept_paths, read_kept

if TYPE_CHECKING:
    import urllib3

    from smith.inflate import Readable
    from smith.resolve.transport import Transport

log = logging.getLogger(__name__)

# repomd.xml says "sha" for sha1 (createrepo before 0.9), and "sha1"/"sha256" otherwise.
CHECKSUM_NAMES = {
    "sha": "sha1",
    "sha1": "sha1",
    "sha224": "sha224",
    "sha256": "sha256",
    "sha384": "sha384",
    "sha512": "sha512",
    "md5": "md5",
}


@dataclass(frozen=True)
class Checksum:
    algo: str  # hashlib name
    hexdigest: str

    @classmethod
    def parse(cls, algo: str, value: str, *, where: str = "") -> Checksum:
        name = CHECKSUM_NAMES.get(algo.lower())
        if name is None:
            raise PackageError(f"unknown checksum type {algo!r}{' in ' + where if where else ''}")
        return cls(name, value.strip().lower())

    def __str__(self) -> str:
        return f"{self.algo}:{self.hexdigest}"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "smith"


def local_path(url: str) -> Path:
    """The host path a file:// URL or a plain path names."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        return Path(urllib.parse.unquote(parts.path))
    if parts.scheme and len(parts.scheme) > 1:
        raise PackageError(f"unsupported URL scheme {parts.scheme!r} in {url}")
    return Path(url)


def join_url(base: str, href: str) -> str:
    if urllib.parse.urlsplit(href).scheme:
        return href
    if is_remote(base) or base.startswith("file:"):
        return urllib.parse.urljoin(base.rstrip("/") + "/", href)
    return os.path.join(base, href)


def contained_url(base: str, href: str, what: str) -> str:
    """`href` joined to `base`, refused when it leaves it: a remote repository's files stay
    under its URL (no file:, no other host, no `..` above it), a local one's inside its
    directory. A repository names its own files; reading elsewhere is for an attacker."""
    url = join_url(base, href)
    if is_remote(base):
        parts, at = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base.rstrip("/") + "/")
        path = urllib.parse.unquote(parts.path)  # %2e%2e is `..` to many servers
        if (
            (parts.scheme, parts.netloc) != (at.scheme, at.netloc)
            or ".." in path.split("/")
            or not path.startswith(urllib.parse.unquote(at.path))
        ):
            raise PackageError(f"{what}: {href!r} is outside the repository {base}")
        return url
    if is_remote(url) or (urllib.parse.urlsplit(href).scheme not in ("", "file")):
        raise PackageError(f"{what}: {href!r} is outside the repository {base}")
    # Lexically: a repository may keep its packages as symbolic links to a shared pool.
    root = os.path.normpath(os.path.abspath(local_path(base)))
    target = os.path.normpath(os.path.abspath(local_path(url)))
    if os.path.commonpath([root, target]) != root:
        raise PackageError(f"{what}: {href!r} is outside the repository {base}")
    return url


def file_checksum(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class _Retry(Exception):
    """A failure worth another attempt (connection trouble, 5xx, wrong bytes)."""


def read_network(body: Readable) -> bytes:
    """The next bytes of a download; a network failure becomes worth another attempt."""
    import urllib3  # imported once a download runs: see _transport

    try:
        return body.read(CHUNK)
    # What a read raises when the connection stalls or breaks: urllib3's and the socket's.
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise _Retry(type(err).__name__) from None


def regular_file(path: Path, url: str) -> Path:
    """`path`, if it is a regular file: a FIFO or a device (`gpgkey: /dev/zero`) would
    block or never end. Checked by stat, which neither opens nor waits."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise PackageError(f"cannot read {url}: {err.strerror}") from None
    if not stat.S_ISREG(mode):
        raise PackageError(f"{url} is not a regular file")
    return path


@contextmanager
def cache_temp(final: Path) -> Iterator[Path]:
    """A temporary name beside `final` that names this run (what killed runs left there
    goes first); removed unless renamed into place. A failed write names the directory."""
    sweep(final.parent)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=tagged(f".{final.name}."))
    os.close(fd)
    try:
        yield Path(tmp)
    except OSError as err:
        raise disk_error(err, final.parent) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def disk_error(err: OSError, directory: Path) -> SmithError:
    """A write that failed, named by the directory it went to (a full disk as every full
    disk is: smith.diskspace)."""
    if err.errno in FULL:
        return disk_full(err, directory, hint=CACHE)
    return SmithError(f"cannot write in {str(directory)!r}: {err.strerror or err}")


class Fetcher:
    """Fetches URLs into the cache. `offline=True` fails at once on any network access."""

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        offline: bool = False,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
    ) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.offline = offline
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._client: Transport | None = None
        self._lock = threading.Lock()

    # -- cache ---------------------------------------------------------------------------

    def cached_path(self, checksum: Checksum) -> Path:
        return self.cache_dir / "blobs" / checksum.algo / checksum.hexdigest

    def _transport(self) -> Transport:
        # One client (its connection pools) for the threads of fetch_packages.
        with self._lock:
            if self._client is None:
                # Imported here: a build from local repositories never downloads (urllib3).
                from smith.resolve.transport import Transport

                self._client = Transport(self.timeout)
            return self._client

    # -- fetching ------------------------------------------------------------------------

    def fetch(self, url: str, checksum: Checksum, size: int = 0) -> Path:
        """A verified local copy of `url` (from the cache when it is there already).

        `size`, when the metadata declares one, bounds the download: a server that sends
        more is refused as the bytes arrive. Local files (file:// or a plain path) are
        verified in place and not copied.
        """
        if not is_remote(url):
            path = local_path(url)
            try:
                got = file_checksum(regular_file(path, url), checksum.algo)
            except OSError as err:
                raise PackageError(f"cannot read {url}: {err.strerror}") from None
            if got != checksum.hexdigest:
                raise PackageError(
                    f"checksum mismatch for {url}: {checksum.algo} {got}, expected "
                    f"{checksum.hexdigest}"
                )
            return path
        final = self.cached_path(checksum)
        if final.exists():
            # Re-checked on every use: a cache entry damaged after it was written (disk,
            # a stray editor) must never become a package in an image.
            if file_checksum(final, checksum.algo) == checksum.hexdigest:
                return final
            log.warning("dropping damaged cache entry %s", final)
            final.unlink()
        self._check_online(url)
        final.parent.mkdir(parents=True, exist_ok=True)
        deadline = deadline_from_now()
        self._retrying(url, deadline, lambda: self._download(url, checksum, final, size, deadline))
        return final

    def fetch_bytes(self, url: str, *, limit: Limit = DOCUMENT_BYTES) -> bytes:
        """The bytes at `url`, uncached (a key; repomd.xml goes through fetch_revalidated),
        at most `limit` of them."""
        most = limit.count()
        if not is_remote(url):
            try:
                with open(regular_file(local_path(url), url), "rb") as f:
                    data = f.read(most + 1)
            except OSError as err:
                raise PackageError(f"cannot read {url}: {err.strerror}") from None
            if len(data) > most:
                raise limit.error(url)
            return data
        self._check_online(url)
        out: list[bytes] = []
        deadline = deadline_from_now()
        self._retrying(url, deadline, lambda: out.append(self._get(url, most, limit, deadline)))
        return out[-1]

    def fetch_revalidated(self, url: str) -> bytes:
        """The current bytes at `url`, like fetch_bytes, but asked for conditionally when a
        copy from an earlier fetch is kept: a 304 answer means that copy, not a download."""
        if not is_remote(url):
            return self.fetch_bytes(url)
        self._check_online(url)
        kept = self.kept(url)
        out: list[tuple[bytes, dict[str, str]]] = []
        deadline = deadline_from_now()
        self._retrying(
            url, deadline, lambda: out.append(self._get_conditional(url, kept, deadline))
        )
        body, validators = out[-1]
        if kept is None or body is not kept[0]:
            self._keep(url, body, validators)
        return body

    def kept(self, url: str) -> tuple[bytes, dict[str, str]] | None:
        """The kept copy of `url` and its validators (smith/resolve/revalidate.py)."""
        return read_kept(self.cache_dir, url)

    def _keep(self, url: str, body: bytes, validators: dict[str, str]) -> None:
        body_path, meta_path = kept_paths(self.cache_dir, url)
        if not validators:
            return  # a server without ETag or Last-Modified cannot be asked conditionally
        meta = {"url": url, "sha256": hashlib.sha256(body).hexdigest(), "validators": validators}
        try:
            body_path.parent.mkdir(parents=True, exist_ok=True)
            for path, data in ((body_path, body), (meta_path, json.dumps(meta).encode())):
                with cache_temp(path) as tmp:
                    tmp.write_bytes(data)
                    os.replace(tmp, path)  # the record last: it vouches for the body
        except (OSError, SmithError):
            pass  # a cache that cannot be written only costs a download next time

    def _get_conditional(
        self, url: str, kept: tuple[bytes, dict[str, str]] | None, deadline: float
    ) -> tuple[bytes, dict[str, str]]:
        headers = {}
        if kept is not None:
            if "etag" in kept[1]:
                headers["If-None-Match"] = kept[1]["etag"]
            if "last-modified" in kept[1]:
                headers["If-Modified-Since"] = kept[1]["last-modified"]
        resp = self._response(url, headers, not_modified=kept is not None)
        if resp.status == 304 and kept is not None:
            resp.close()
            return kept
        with resp:
            reader = self._body(resp, url, DOCUMENT_BYTES.count(), DOCUMENT_BYTES, deadline)
            body = b"".join(iter(lambda: read_network(reader), b""))
        validators = {
            name: resp.headers[name] for name in ("etag", "last-modified") if name in resp.headers
        }
        return body, validators

    def _check_online(self, url: str) -> None:
        if self.offline:
            raise PackageError(f"offline mode: refusing to download {url}")

    def _retrying(self, url: str, deadline: float, attempt: Callable[[], object]) -> None:
        for n in range(self.retries + 1):
            try:
                attempt()
                return
            except _Retry as why:
                delay = self.backoff * (2**n)
                if n == self.retries or time.monotonic() + delay > deadline:
                    raise PackageError(
                        f"download of {url} failed after {n + 1} attempt{'s' if n else ''}: {why}"
                    ) from None
                log.info("retrying %s in %.1fs: %s", url, delay, why)
                time.sleep(delay)

    def _response(
        self, url: str, headers: dict[str, str] | None = None, *, not_modified: bool = False
    ) -> urllib3.BaseHTTPResponse:
        """A 200 response (or with `not_modified`, also a 304) to GET `url`."""
        import urllib3

        from smith.resolve.transport import describe

        try:
            resp = self._transport().get(url, headers or {})
        except urllib3.exceptions.SSLError as err:
            # A certificate that does not verify will not verify on the next attempt either.
            raise PackageError(f"TLS error fetching {url}: {err.__context__ or err}") from None
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise _Retry(describe(err)) from None
        if resp.status >= 500 or resp.status == 429:
            resp.close()
            raise _Retry(f"HTTP {resp.status}")
        if resp.status == 304 and not_modified:
            return resp
        if resp.status != 200:
            resp.close()
            # 404 and friends will not change by asking again.
            raise PackageError(f"download of {url} failed: HTTP {resp.status}")
        return resp

    def _body(
        self,
        resp: urllib3.BaseHTTPResponse,
        url: str,
        most: int,
        limit: Limit | None,
        deadline: float,
    ) -> Readable:
        # The wire's bytes may be a compressed (Content-Encoding) form of the file: both the
        # wire and the file are bounded, the file by what the metadata says it is.
        wire = BoundedBody(resp, url, deadline=deadline, most=most, limit=limit)
        return decoded(resp, wire, most=most, limit=limit)

    def _get(self, url: str, most: int, limit: Limit, deadline: float) -> bytes:
        resp = self._response(url)
        with resp:
            body = self._body(resp, url, most, limit, deadline)
            return b"".join(iter(lambda: read_network(body), b""))

    def _download(
        self, url: str, checksum: Checksum, final: Path, size: int, deadline: float
    ) -> None:
        resp = self._response(url)
        h = hashlib.new(checksum.algo)
        # More than the metadata declares is refused (limit None), not downloaded to the end.
        most, limit = (size, None) if size > 0 else (DOWNLOAD_BYTES.count(), DOWNLOAD_BYTES)
        check_space(final.parent, size, url, hint=CACHE)
        with cache_temp(final) as tmp:
            with open(tmp, "wb") as out, resp:
                body = self._body(resp, url, most, limit, deadline)
                while chunk := read_network(body):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if h.hexdigest() != checksum.hexdigest:
                raise _Retry(
                    f"checksum mismatch: {checksum.algo} {h.hexdigest()}, expected "
                    f"{checksum.hexdigest}"
                )
            os.replace(tmp, final)

    def copy_into_cache(self, path: Path, checksum: Checksum) -> Path:
        """Put a verified local file into the cache (for callers that want one place)."""
        final = self.cached_path(checksum)
        if not final.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            with cache_temp(final) as tmp:
                shutil.copyfile(path, tmp)
                os.replace(tmp, final)
        return final

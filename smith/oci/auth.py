"""Registry credentials and challenges.

Where credentials come from, first match wins: `--creds`, the reference's `user:pass@`,
then the Docker configuration (`credHelpers` for the host, `credsStore`, then `auths`).
Secrets live only in `Credentials.password`, which no repr, log line or message shows.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from smith.errors import RegistryError, UsageError

log = logging.getLogger("smith.registry")

DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def parse_creds(value: str) -> Credentials:
    """`--creds USER:PASSWORD`; the message on error never repeats the value."""
    user, colon, password = value.partition(":")
    if not user or not colon:
        raise UsageError("--creds must be USER:PASSWORD (the value given is not shown)")
    return Credentials(user, password)


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lower-case
    params: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str:
        return dict(self.params).get(key, "")


CHALLENGE_RE = re.compile(r'([A-Za-z]+)\s+((?:[A-Za-z_]+=(?:"(?:[^"\\]|\\.)*"|[^\s,"]*)\s*,?\s*)+)')
PARAM_RE = re.compile(r'([A-Za-z_]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))')


def parse_challenges(header: str) -> tuple[Challenge, ...]:
    """The challenges of a `WWW-Authenticate` header (several may be joined by commas)."""
    found = []
    for match in CHALLENGE_RE.finditer(header):
        params = tuple(
            (key.lower(), re.sub(r"\\(.)", r"\1", quoted) if quoted else bare)
            for key, quoted, bare in PARAM_RE.findall(match.group(2))
        )
        found.append(Challenge(match.group(1).lower(), params))
    if not found and header.strip().lower() in ("basic", "bearer"):
        found.append(Challenge(header.strip().lower(), ()))
    return tuple(found)


# -- the Docker configuration ---------------------------------------------------------------


def docker_config_path(authfile: str = "") -> str:
    if authfile:
        return authfile
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def config_key_host(key: str) -> str:
    """`https://host:5000/v1/` → `host:5000`: docker writes keys in several forms."""
    host = re.sub(r"^[a-z]+://", "", key).split("/", 1)[0]
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


def find_credentials(registry: str, authfile: str = "") -> Credentials | None:
    """Credentials for `registry` from the Docker configuration, or None."""
    path = docker_config_path(authfile)
    try:
        with open(path, "rb") as f:
            config = json.loads(f.read())
    except FileNotFoundError:
        if authfile:
            raise UsageError(f"the auth file {authfile!r} does not exist") from None
        return None
    except (ValueError, UnicodeDecodeError) as err:
        # The parser's message may quote the file's content: name only the position.
        where = getattr(err, "pos", "?")
        raise UsageError(f"{path} is not valid JSON (at character {where})") from None
    if not isinstance(config, Mapping):
        raise UsageError(f"{path} is not a JSON object")
    helpers = config.get("credHelpers") or {}
    for key, helper in helpers.items():
        if config_key_host(key) == registry and isinstance(helper, str):
            return helper_credentials(helper, key)
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        found = helper_credentials(store, registry_server_url(registry), missing_ok=True)
        if found is not None:
            return found
    for key, entry in (config.get("auths") or {}).items():
        if config_key_host(key) == registry and isinstance(entry, Mapping):
            return auths_entry(entry, path, key)
    return None


def registry_server_url(registry: str) -> str:
    # Docker stores Docker Hub under its historical index URL.
    return DOCKER_HUB_KEYS[0] if registry == "docker.io" else registry


def auths_entry(entry: Mapping[str, Any], path: str, key: str) -> Credentials | None:
    if entry.get("auth"):
        try:
            raw = base64.b64decode(str(entry["auth"]), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise UsageError(
                f"{path}: the auth of {key!r} is not base64 of USER:PASSWORD"
            ) from None
        user, colon, password = raw.partition(":")
        if not colon:
            raise UsageError(f"{path}: the auth of {key!r} is not base64 of USER:PASSWORD")
        return Credentials(user, password)
    if entry.get("username"):
        return Credentials(str(entry["username"]), str(entry.get("password", "")))
    return None


def helper_credentials(helper: str, server: str, *, missing_ok: bool = False) -> Credentials | None:
    """Ask `docker-credential-<helper> get`, as docker does (server URL on stdin)."""
    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.run(
            [program, "get"], input=server.encode(), capture_output=True, timeout=60, check=False
        )
    except FileNotFoundError:
        if missing_ok:  # a default store (credsStore) that is absent means: no credentials
            log.warning("the credential helper %r is not installed", program)
            return None
        raise RegistryError(f"the credential helper {program!r} is not installed") from None
    except subprocess.TimeoutExpired:
        raise RegistryError(f"the credential helper {program!r} did not answer in 60 s") from None
    if proc.returncode != 0:
        # Helpers say "credentials not found in native keychain" on stdout; nothing secret.
        if missing_ok or b"not found" in proc.stdout.lower():
            return None
        raise RegistryError(f"the credential helper {program!r} failed (exit {proc.returncode})")
    try:
        doc = json.loads(proc.stdout)
        user, secret = str(doc["Username"]), str(doc["Secret"])
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"the credential helper {program!r} answered no valid JSON") from None
    if user == "<token>":
        # An identity (refresh) token: smith does not speak the OAuth2 refresh flow.
        log.warning("%s holds an identity token for %s, which smith cannot use", program, server)
        return None
    return Credentials(user, secret)

"""Registry references, parsed once: `docker://host[:port]/repo[:tag][@digest]`, the
original smith's `https://[user:pass@]host[:port]/repo[:tag]` (and `http://` for a plain
HTTP registry), and the bare `host[:port]/repo[:tag]` that `-r` accepts.

A reference may carry credentials (the URL form). They live in a field that is never part
of `repr` or `str`: every message that names a reference shows it without them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from smith.errors import UsageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
# The grammar of github.com/distribution/reference, restricted to what smith supports
# (sha256 digests only).
COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"^{COMPONENT}(?:/{COMPONENT})*$")
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
DOMAIN_COMPONENT = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"  # not "..", not "-x"
HOST_RE = re.compile(
    rf"^(?:{DOMAIN_COMPONENT}(?:\.{DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?$"
)
SCHEMES = ("docker://", "https://", "http://")


def is_registry_reference(text: str) -> bool:
    """Whether an image argument names a registry rather than a file or directory."""
    return text.startswith(SCHEMES)


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port] as written; "docker.io" for Docker Hub
    repository: str
    tag: str = ""
    digest: str = ""
    scheme: str = ""  # "http" or "https" when the reference says so; "" = https (or --insecure)
    username: str = field(default="", repr=False, compare=False)
    password: str = field(default="", repr=False, compare=False)

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What goes after `/manifests/`: the digest if there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        return Reference(
            self.registry, self.repository, "", digest, self.scheme, self.username, self.password
        )

    def with_repository(self, repository: str) -> Reference:
        return Reference(
            self.registry, repository, "", "", self.scheme, self.username, self.password
        )

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def redact(text: str) -> str:
    """`text` with any `user:password@` of a URL replaced, for messages about bad input."""
    return re.sub(r"(://)[^/@]*@", r"\1***@", text)


def parse_reference(text: str, *, default_tag: str = "latest") -> Reference:
    """Parse a registry reference; a UsageError names the (redacted) text when it is bad."""
    shown = redact(text)
    scheme = ""
    rest = text
    for prefix in SCHEMES:
        if text.startswith(prefix):
            scheme = "" if prefix == "docker://" else prefix[:-3]
            rest = text[len(prefix) :]
            break
    username = password = ""
    host_part, slash, path = rest.partition("/")
    if "@" in host_part:
        if text.startswith("docker://"):
            raise UsageError(
                f"credentials belong in --creds, not in a docker:// reference: {shown}"
            )
        userinfo, _, host_part = host_part.rpartition("@")
        username, _, password = userinfo.partition(":")
        username, password = unquote(username), unquote(password)
        if not username:
            raise UsageError(f"the reference {shown!r} has credentials without a user name")
    if (not slash or not path) and (scheme or not host_part):
        raise UsageError(f"the reference {shown!r} names no repository")
    # A first component without '.' or ':' (and not localhost) is a Docker Hub repository,
    # as docker itself reads it; with a scheme the first component is always the host.
    if not scheme and (not slash or not looks_like_host(host_part)):
        registry, path = DOCKER_HUB, rest
    else:
        registry = host_part
    if not HOST_RE.match(registry):
        raise UsageError(f"the reference {shown!r} has an invalid registry host {registry!r}")
    port = registry.rpartition("]")[2].partition(":")[2]
    if port and not 0 < int(port) < 65536:
        raise UsageError(f"the reference {shown!r} has an invalid port {port!r}")
    digest = ""
    if "@" in path:
        path, _, digest = path.partition("@")
        if not DIGEST_RE.match(digest):
            raise UsageError(f"the reference {shown!r} has an invalid digest {digest!r}")
    tag = ""
    name, colon, maybe_tag = path.rpartition(":")
    if colon and "/" not in maybe_tag:
        path, tag = name, maybe_tag
        if not TAG_RE.match(tag):
            raise UsageError(f"the reference {shown!r} has an invalid tag {tag!r}")
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if not REPOSITORY_RE.match(path):
        raise UsageError(
            f"the reference {shown!r} has an invalid repository name {path!r} "
            "(lower-case letters, digits and separators)"
        )
    if not tag and not digest:
        tag = default_tag
    return Reference(registry, path, tag, digest, scheme, username, password)


def check_tag(tag: str) -> str:
    """An output's name (`--tag`, a recipe's `tag:`), recorded as the OCI ref.name and a
    docker-archive's RepoTags: it must be an image name `docker load` accepts, checked
    before any work rather than found out at load time."""
    if tag:
        try:
            parse_reference(tag)
        except UsageError:
            raise UsageError(
                f"the tag {tag!r} is not an image name [HOST/]NAME[:TAG] "
                "(lower-case letters, digits and separators)"
            ) from None
    return tag


def looks_like_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"

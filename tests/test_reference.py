"""Registry references and WWW-Authenticate challenges: tables of inputs and outcomes."""

from __future__ import annotations

import pytest

from smith.errors import UsageError
from smith.oci.auth import Credentials, parse_challenges, parse_creds
from smith.oci.reference import (
    Reference,
    check_tag,
    is_registry_reference,
    parse_reference,
    redact,
)

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("docker://127.0.0.1:5000/a/b:v1", Reference("127.0.0.1:5000", "a/b", "v1")),
        ("docker://localhost/a", Reference("localhost", "a", "latest")),
        (f"docker://reg.example/a@{DIGEST}", Reference("reg.example", "a", "", DIGEST)),
        (f"reg.example:443/a:t@{DIGEST}", Reference("reg.example:443", "a", "t", DIGEST)),
        ("busybox", Reference("docker.io", "library/busybox", "latest")),
        ("docker://busybox:1.36", Reference("docker.io", "library/busybox", "1.36")),
        ("user/app:2", Reference("docker.io", "user/app", "2")),
        ("https://h.example/a/b:c", Reference("h.example", "a/b", "c", "", "https")),
        ("http://127.0.0.1:5000/x", Reference("127.0.0.1:5000", "x", "latest", "", "http")),
    ],
)
def test_parse_reference(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


def test_url_credentials_are_kept_but_never_shown() -> None:
    ref = parse_reference("https://al%40ice:s3cr%3At@h.example:5000/a:b")
    assert (ref.username, ref.password) == ("al@ice", "s3cr:t")
    assert "s3cr" not in repr(ref) and "s3cr" not in str(ref)
    assert str(ref) == "h.example:5000/a:b"
    assert redact("https://u:pw@h/a") == "https://***@h/a"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("docker://h.example/Upper", "invalid repository name"),
        ("docker://h.example/a:b@sha256:12", "invalid digest"),
        ("docker://h.example/a:-bad", "invalid tag"),
        ("https://h.example", "names no repository"),
        ("docker://u:pw@h.example/a", "belong in --creds"),
        ("https://:pw@h.example/a", "without a user name"),
        ("docker://h_x.example:99999999/a", "invalid registry host"),
        ("docker://../a", "invalid registry host '..'"),
        ("docker://-h.example/a", "invalid registry host"),
        ("docker://localhost:99999/a", "invalid port '99999'"),
        ("localhost:0/a", "invalid port '0'"),
    ],
)
def test_bad_references(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_reference(text)
    assert "pw" not in str(info.value)


@pytest.mark.parametrize("tag", ["app", "1.0", "team/app:v1", "localhost:5000/a/b:c"])
def test_output_tags_docker_load_accepts(tag: str) -> None:
    assert check_tag(tag) == tag


@pytest.mark.parametrize("tag", ["a b", "App:1", "x\ny", ":", "../x", "a:", "a:-1"])
def test_output_tags_docker_load_refuses(tag: str) -> None:
    """--tag (and a recipe's tag:) becomes RepoTags and ref.name: refused before the work,
    not found out at `docker load` ("invalid reference format")."""
    with pytest.raises(UsageError, match="is not an image name"):
        check_tag(tag)


def test_registry_reference_detection() -> None:
    assert is_registry_reference("docker://a/b")
    assert is_registry_reference("https://a/b")
    assert not is_registry_reference("./image.tar")
    assert not is_registry_reference("/tmp/layout")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Basic realm="registry"', [("basic", {"realm": "registry"})]),
        (
            'Bearer realm="https://auth.example/token",service="reg",'
            'scope="repository:a/b:pull,push"',
            [
                (
                    "bearer",
                    {
                        "realm": "https://auth.example/token",
                        "service": "reg",
                        "scope": "repository:a/b:pull,push",
                    },
                )
            ],
        ),
        (
            'Bearer realm="r", error="insufficient_scope", Basic realm="x"',
            [("bearer", {"realm": "r", "error": "insufficient_scope"}), ("basic", {"realm": "x"})],
        ),
    ],
)
def test_parse_challenges(header: str, expected: list[tuple[str, dict[str, str]]]) -> None:
    got = [(c.scheme, dict(c.params)) for c in parse_challenges(header)]
    assert got == expected


def test_creds_flag() -> None:
    assert parse_creds("me:pa:ss") == Credentials("me", "pa:ss")
    assert "pa:ss" not in repr(parse_creds("me:pa:ss"))
    with pytest.raises(UsageError) as info:
        parse_creds("justauser")
    assert "justauser" not in str(info.value)

"""Authentication against real registries: htpasswd basic auth over TLS (CA and certificate
made here with cryptography), and bearer tokens from a token server in the test. Every
smith output of this module is collected, and the last test greps it for the secrets."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from smith.oci.auth import Credentials
from smith.oci.pull import pull_image
from smith.oci.push import push_image
from smith.oci.registry import RegistryOptions
from tests.registry_fixtures import make_image, run_skopeo, run_smith
from tests.registry_servers import (
    FaultProxy,
    Registry,
    TokenServer,
    make_tls,
    start_registry,
    write_htpasswd,
)
from tests.tools import require_tool

USER = "smith-user"
PASSWORD = "Pw-7f3c9e1b-never-shown"
OUTPUTS: list[str] = []  # everything smith printed in this module, for the secrets grep


BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def smith(*args: str, home: Path, check: bool = True, **kw: dict[str, str]) -> str:
    """smith with --debug; its output is checked for the password here, and kept for the
    token check at the end (the tokens are known only once issued)."""
    proc = run_smith("--debug", *args, home=home, check=check, **kw)
    output = proc.stdout + proc.stderr
    assert PASSWORD not in output and BASIC not in output
    OUTPUTS.append(output)
    return output


@pytest.fixture(scope="module")
def skopeo() -> str:
    return require_tool("skopeo")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return make_image(tmp_path_factory.mktemp("auth-images"), "authapp", big=1 << 20, seed=5)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("auth-home")


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    binary = require_tool("docker-registry")
    directory = tmp_path_factory.mktemp("tls-registry")
    ca_dir, cert, key = make_tls(directory)
    write_htpasswd(directory / "htpasswd", USER, PASSWORD)
    auth = {"htpasswd": {"realm": "smith-test", "path": str(directory / "htpasswd")}}
    reg = start_registry(directory / "run", binary, auth=auth, tls=(cert, key), ca_dir=ca_dir)
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    server = TokenServer(USER, PASSWORD, tmp_path_factory.mktemp("token-server"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, tokens: TokenServer
) -> Iterator[Registry]:
    binary = require_tool("docker-registry")
    reg = start_registry(
        tmp_path_factory.mktemp("token-registry"), binary, auth=tokens.auth_config()
    )
    yield reg
    reg.stop()


# -- basic auth over TLS --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_pushed(tls_registry: Registry, image: tuple[Path, str]) -> str:
    """The test image on the TLS registry as basic/app:v1, whatever test runs first."""
    options = RegistryOptions(creds=Credentials(USER, PASSWORD), cert_dir=str(tls_registry.ca_dir))
    push_image(str(image[0]), f"docker://{tls_registry.host}/basic/app:v1", options=options)
    return f"docker://{tls_registry.host}/basic/app:v1"


def test_basic_auth_over_tls_with_a_ca_directory(
    tls_registry: Registry, image: tuple[Path, str], skopeo: str, home: Path, tmp_path: Path
) -> None:
    layout, digest = image
    ca = str(tls_registry.ca_dir)
    ref = f"docker://{tls_registry.host}/basic/app:v1"
    out = smith(
        "upload", "-i", str(layout), "-r", ref, "--cert-dir", ca, "--creds", f"{USER}:{PASSWORD}",
        home=home,
    )  # fmt: skip
    assert f"@{digest}" in out
    raw = run_skopeo(
        skopeo, "inspect", "--raw", "--cert-dir", ca, "--creds", f"{USER}:{PASSWORD}", ref,
        home=home,
    ).stdout  # fmt: skip
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    # The original smith's form: credentials in an https:// URL.
    url = f"https://{USER}:{PASSWORD}@{tls_registry.host}/basic/app:v1"
    out = smith("download", "-r", url, "-i", str(tmp_path / "o"), "--cert-dir", ca, home=home)
    assert digest in out


def test_tls_needs_the_ca_or_insecure(
    tls_registry: Registry, image: tuple[Path, str], home: Path, tmp_path: Path, tls_pushed: str
) -> None:
    ref = f"docker://{tls_registry.host}/basic/app:v1"
    creds = ("--creds", f"{USER}:{PASSWORD}")
    out = smith("download", "-r", ref, "-i", str(tmp_path / "a"), *creds, home=home, check=False)
    assert "TLS failed" in out and "CERTIFICATE_VERIFY_FAILED" in out
    assert not (tmp_path / "a").exists()
    out = smith("download", "-r", ref, "-i", str(tmp_path / "b"), *creds, "--insecure", home=home)
    assert image[1] in out
    # The system's CA store is used: OpenSSL's SSL_CERT_FILE stands in for it here.
    out = smith(
        "download", "-r", ref, "-i", str(tmp_path / "c"), *creds, home=home,
        env={"SSL_CERT_FILE": str(tls_registry.ca_dir / "ca.crt")},
    )  # fmt: skip
    assert image[1] in out


def test_wrong_or_missing_credentials(
    tls_registry: Registry, home: Path, tmp_path: Path, tls_pushed: str
) -> None:
    ref = f"docker://{tls_registry.host}/basic/app:v1"
    ca = ("--cert-dir", str(tls_registry.ca_dir))
    proc = run_smith(
        "download", "-r", ref, "-i", str(tmp_path / "a"), *ca, "--creds", f"{USER}:wrong-pw",
        home=home, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"smith: error: {tls_registry.host} refused the credentials (HTTP 401)"
    )
    proc = run_smith("download", "-r", ref, "-i", str(tmp_path / "b"), *ca, home=home, check=False)
    assert proc.returncode == 1 and "requires credentials" in proc.stderr
    assert os.listdir(tmp_path) == []


def test_credentials_from_docker_config_and_helpers(
    tls_registry: Registry, image: tuple[Path, str], tmp_path: Path, tls_pushed: str
) -> None:
    ref = f"docker://{tls_registry.host}/basic/app:v1"
    ca = ("--cert-dir", str(tls_registry.ca_dir))
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    config = home / ".docker" / "config.json"
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    config.write_text(json.dumps({"auths": {f"https://{tls_registry.host}": {"auth": auth}}}))
    assert image[1] in smith("download", "-r", ref, "-i", str(tmp_path / "a"), *ca, home=home)
    # credHelpers: a docker-credential-* program on PATH, asked with the host on stdin.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-smithtest"
    answer = json.dumps({"ServerURL": tls_registry.host, "Username": USER, "Secret": PASSWORD})
    helper.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 1\n'
        f'read host; [ "$host" = "{tls_registry.host}" ] || exit 1\n'
        f"echo '{answer}'\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    path_env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for doc in (
        {"credHelpers": {tls_registry.host: "smithtest"}},
        {"credsStore": "smithtest"},
    ):
        config.write_text(json.dumps(doc))
        out = smith(
            "download", "-r", ref, "-i", str(tmp_path / f"o-{len(doc)}-{next(iter(doc))}"), *ca,
            home=home, env=path_env,
        )  # fmt: skip
        assert image[1] in out
    # --authfile names another config file.
    other = tmp_path / "auth.json"
    other.write_text(json.dumps({"auths": {tls_registry.host: {"auth": auth}}}))
    config.unlink()
    out = smith(
        "download", "-r", ref, "-i", str(tmp_path / "f"), *ca, "--authfile", str(other), home=home
    )
    assert image[1] in out


# -- bearer tokens ---------------------------------------------------------------------------


def test_bearer_tokens_push_and_pull(
    token_registry: Registry,
    tokens: TokenServer,
    image: tuple[Path, str],
    skopeo: str,
    home: Path,
    tmp_path: Path,
) -> None:
    layout, digest = image
    ref = f"docker://{token_registry.host}/bearer/app:v1"
    creds = ("--creds", f"{USER}:{PASSWORD}")
    out = smith("upload", "-i", str(layout), "-r", ref, "--insecure", *creds, home=home)
    assert f"@{digest}" in out
    assert any("scope=repository%3Abearer%2Fapp%3Apull%2Cpush" in r for r in tokens.requests)
    # Anonymous pull gets a pull-only token; anonymous push is refused by the registry.
    out = smith("download", "-r", ref, "-i", str(tmp_path / "anon"), "--insecure", home=home)
    assert digest in out
    proc = run_smith(
        "upload", "-i", str(layout), "-r", f"docker://{token_registry.host}/bearer/anon:v1",
        "--insecure", home=home, check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "HTTP 401" in proc.stderr
    # skopeo pushes with a token, smith pulls with one that came as `access_token`.
    other = f"docker://{token_registry.host}/bearer/skopeo:v1"
    run_skopeo(
        skopeo, "copy", "--dest-tls-verify=false", "--dest-creds", f"{USER}:{PASSWORD}",
        f"oci:{layout}", other, home=home,
    )  # fmt: skip
    tokens.answer_field = "access_token"
    try:
        out = smith(
            "download", "-r", other, "-i", str(tmp_path / "s"), "--insecure", *creds, home=home
        )
    finally:
        tokens.answer_field = "token"
    assert digest in out


def test_bearer_with_the_api_and_mount(
    token_registry: Registry, tokens: TokenServer, image: tuple[Path, str], tmp_path: Path
) -> None:
    layout, digest = image
    options = RegistryOptions(creds=Credentials(USER, PASSWORD), insecure=True)
    push_image(str(layout), f"http://{token_registry.host}/bearer/one:v1", options=options)
    result = push_image(
        str(layout), f"http://{token_registry.host}/bearer/two:v1", options=options,
        mount_from=["bearer/one"],
    )  # fmt: skip
    assert result.uploaded == 0 and len(result.mounted) == 3
    pulled = pull_image(
        f"http://{token_registry.host}/bearer/two:v1", str(tmp_path / "o"), options=options
    )
    assert pulled.digest == digest


def test_no_secret_in_any_output(
    token_registry: Registry,
    tls_registry: Registry,
    tokens: TokenServer,
    image: tuple[Path, str],
    home: Path,
    tmp_path: Path,
) -> None:
    """Runs last in this module: every smith output above, --debug included, plus a push,
    a pull and failures of its own here, against both registries."""
    layout, _ = image
    creds = ("--creds", f"{USER}:{PASSWORD}")
    smith(
        "upload", "-i", str(layout), "-r", f"docker://{token_registry.host}/secret/app:v1",
        "--insecure", *creds, home=home,
    )  # fmt: skip
    smith(
        "download", "-r", f"http://{USER}:{PASSWORD}@{token_registry.host}/secret/app:v1",
        "-i", str(tmp_path / "a"), home=home,
    )  # fmt: skip
    for registry in (token_registry, tls_registry):
        smith(
            "download", "-r", f"https://{USER}:{PASSWORD}x@{registry.host}/secret/app:v1",
            "-i", str(tmp_path / "b"), "--insecure", home=home, check=False,
        )  # fmt: skip
        smith(
            "upload", "-i", str(layout), "-r", f"docker://{registry.host}/secret/app:v2",
            "--creds", f"{USER}:{PASSWORD}-wrong", "--insecure", home=home, check=False,
        )  # fmt: skip
    assert tokens.issued
    secrets = [PASSWORD, BASIC, *tokens.issued]
    secrets += [t.rsplit(".", 1)[1] for t in tokens.issued]  # the signatures alone
    for output in OUTPUTS:
        for secret in secrets:
            assert secret not in output
        assert "Authorization" not in output


def test_authorization_is_not_sent_to_a_redirect_host(
    token_registry: Registry, image: tuple[Path, str], tmp_path: Path
) -> None:
    layout, digest = image
    options = RegistryOptions(creds=Credentials(USER, PASSWORD), insecure=True)
    push_image(str(layout), f"http://{token_registry.host}/redirect/app:v1", options=options)
    proxy = FaultProxy(token_registry.host)
    try:
        proxy.add("GET", "/blobs/sha256:", "redirect", times=3)
        pulled = pull_image(
            f"http://{proxy.host}/redirect/app:v1", str(tmp_path / "o"), options=options
        )
    finally:
        proxy.stop()
    assert pulled.digest == digest
    assert proxy.redirected_auth == ["", "", ""]

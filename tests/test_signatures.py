"""OpenPGP signatures: rpmsign-signed packages verify (RSA, EdDSA) with `cryptography`;
wrong keys, unsigned packages and tampered signatures are errors naming the package."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from smith.errors import PackageError
from smith.resolve.fetch import Fetcher
from smith.resolve.packages import fetch_package
from smith.resolve.pgp import parse_signature
from smith.resolve.repo import RepoConfig, load_repos
from smith.resolve.rpm import read_rpm
from smith.resolve.rpmsig import load_keys, signature_blobs, verify_signature
from smith.resolve.solver import resolve
from tests.rpm_universe import Universe
from tests.tools import SHARED, require_shared, require_tool


@pytest.mark.parametrize("key", ["rsa", "ed"])
def test_signed_repository_verifies(rpm_universe: Universe, tmp_path: Path, key: str) -> None:
    fetcher = Fetcher(tmp_path / "cache")
    signed = RepoConfig(
        "signed",
        rpm_universe.repo_url(f"signed-{key}"),
        gpgcheck=True,
        gpgkey=(str(rpm_universe.key(key)),),
    )
    main = RepoConfig("main", rpm_universe.repo_url(), priority=200)
    repos = load_repos([signed, main], fetcher)
    pkgs = resolve(["hello"], repos)
    assert {p.repo_id for p in pkgs} == {"signed"}
    for p in pkgs:
        assert read_rpm(fetch_package(p, fetcher, repos)).name == p.name


def test_wrong_key_is_refused(rpm_universe: Universe, tmp_path: Path) -> None:
    fetcher = Fetcher(tmp_path / "cache")
    repo = RepoConfig(
        "signed",
        rpm_universe.repo_url("signed-rsa"),
        gpgcheck=True,
        gpgkey=(rpm_universe.repo_url().replace("repos/main/", "keys/ed.asc"),),
    )
    repos = load_repos([repo], fetcher)
    (hello,) = [p for p in resolve(["hello"], repos) if p.name == "hello"]
    unknown = r"package hello-1\.0-1\.x86_64: signed by unknown key .*hello-1\.0-1\.x86_64\.rpm\)"
    with pytest.raises(PackageError, match=unknown):
        fetch_package(hello, fetcher, repos)


def test_unsigned_package_is_refused(rpm_universe: Universe, tmp_path: Path) -> None:
    fetcher = Fetcher(tmp_path / "cache")
    repo = RepoConfig(
        "main", rpm_universe.repo_url(), gpgcheck=True, gpgkey=(str(rpm_universe.key("rsa")),)
    )
    repos = load_repos([repo], fetcher)
    (hello,) = [p for p in resolve(["hello"], repos) if p.name == "hello"]
    with pytest.raises(PackageError, match=r"package hello-1\.0-1\.x86_64 is not signed"):
        fetch_package(hello, fetcher, repos)


def test_gpgcheck_without_key_is_refused(rpm_universe: Universe, tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="'main' has gpgcheck on but no gpgkey"):
        load_repos([RepoConfig("main", rpm_universe.repo_url(), gpgcheck=True)], Fetcher(tmp_path))


@pytest.mark.parametrize("key", ["rsa", "ed"])
def test_tampered_signature_and_header(rpm_universe: Universe, tmp_path: Path, key: str) -> None:
    keys = load_keys([rpm_universe.key(key).read_bytes()])
    src = rpm_universe.repo_dir(f"signed-{key}") / "hello-1.0-1.x86_64.rpm"
    pkg = read_rpm(src)
    blob = pkg.signature.binary(268) or pkg.signature.binary(267)
    assert blob is not None
    data = src.read_bytes()
    # Flip the last byte of the signature value: parses, does not verify.
    at = data.index(blob) + len(blob) - 1
    bad_sig = tmp_path / "bad-sig.rpm"
    bad_sig.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :])
    bad = r"package hello-1\.0-1\.x86_64: bad signature by [0-9a-f]{16}"
    with pytest.raises(PackageError, match=bad):
        verify_signature(read_rpm(bad_sig), keys)
    # Change the header (the summary): the header digest no longer matches.
    at = data.index(b"The hello program")
    bad_hdr = tmp_path / "bad-hdr.rpm"
    bad_hdr.write_bytes(data[:at] + b"THE" + data[at + 3 :])
    with pytest.raises(PackageError, match=r"bad-hdr\.rpm: header sha256 digest mismatch"):
        verify_signature(read_rpm(bad_hdr), keys)


CORPUS_SIGNED = sorted(
    p.name for p in (SHARED / "rpm-corpus").glob("*.rpm") if "signed" in p.name or "fc14" in p.name
)


@pytest.mark.parametrize("name", CORPUS_SIGNED or ["(corpus missing)"])
def test_corpus_signatures_parse(name: str) -> None:
    """Every corpus signature parses and names the key id that rpm itself reports."""
    path = require_shared("rpm-corpus", name)
    out = subprocess.run(
        [require_tool("rpm"), "-qp", "--qf", "%{RSAHEADER:pgpsig}|%{DSAHEADER:pgpsig}", str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LC_ALL": "C"},
    ).stdout
    want = set(re.findall(r"Key ID ([0-9a-f]{16})", out))
    pkg = read_rpm(path)
    got = set()
    for tag in (267, 268, 1002, 1005):
        blob = pkg.signature.binary(tag)
        if blob:
            got.add(parse_signature(blob, name).issuer.hex())
    assert want and got == want
    # rpm 6's OPENPGP tag (which this rpm cannot show) holds more: all of them parse.
    every = {parse_signature(b, name).issuer.hex() for _, b in signature_blobs(pkg)}
    assert want <= every
    assert shutil.which("rpm")

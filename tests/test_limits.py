"""The bounds of smith/limits.py and the checks beside them, as tables."""

from __future__ import annotations

import re

import pytest

from smith import limits
from smith.cli.reporting import shorten
from smith.errors import LimitError, PackageError, UsageError
from smith.limits import (
    DOCUMENT_BYTES,
    EXPANSION_RATIO,
    JSON_DEPTH,
    UNPACKED_BYTES,
    expansion_bound,
    json_document,
    set_limit,
)
from smith.resolve.fetch import contained_url


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "Infinity", "1e400", "ten"])
def test_a_limit_that_is_no_number_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("SMITH_LIMIT_DOCUMENT_BYTES", raw)
    with pytest.raises(UsageError, match="SMITH_LIMIT_DOCUMENT_BYTES"):
        DOCUMENT_BYTES.value()


def test_a_limit_names_itself_and_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMITH_LIMIT_DOCUMENT_BYTES", "1024")
    err = DOCUMENT_BYTES.error("repomd.xml")
    assert str(err) == (
        "repomd.xml: over the limit of 1024 bytes "
        "(raise it with --set-limit DOCUMENT_BYTES=N or SMITH_LIMIT_DOCUMENT_BYTES)"
    )


def test_a_limit_flag_wins_over_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "FLAGS", {})
    monkeypatch.setenv("SMITH_LIMIT_DOCUMENT_BYTES", "1024")
    set_limit("document_bytes=2048")
    assert DOCUMENT_BYTES.value() == 2048
    assert "over the limit of 2048 bytes" in str(DOCUMENT_BYTES.error("x"))


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("DOCUMENT_BYTES", "is not NAME=VALUE"),
        ("NO_SUCH_LIMIT=1", "is not NAME=VALUE with NAME one of CONNECT_TIMEOUT"),
        ("SMITH_LIMIT_DOCUMENT_BYTES=1", "is not NAME=VALUE"),
        ("DOCUMENT_BYTES=inf", "--set-limit DOCUMENT_BYTES='inf' is not a positive number"),
        ("DOCUMENT_BYTES=-1", "--set-limit DOCUMENT_BYTES='-1' is not a positive number"),
    ],
)
def test_a_bad_limit_flag_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, setting: str, message: str
) -> None:
    monkeypatch.setattr(limits, "FLAGS", {})
    with pytest.raises(UsageError, match=re.escape(message)):
        set_limit(setting)


def test_expansion_bound_is_the_ratio_above_the_floor_below_the_maximum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMITH_LIMIT_EXPANSION_RATIO", "10")
    monkeypatch.setenv("SMITH_LIMIT_EXPANSION_FLOOR", "100")
    monkeypatch.setenv("SMITH_LIMIT_UNPACKED_BYTES", "1000")
    assert expansion_bound(1) == (100, EXPANSION_RATIO)
    assert expansion_bound(50) == (500, EXPANSION_RATIO)
    assert expansion_bound(500) == (1000, UNPACKED_BYTES)


@pytest.mark.parametrize("depth", [201, 100_000])
def test_json_nested_too_deep_is_a_limit(depth: int) -> None:
    with pytest.raises(LimitError, match="JSON nesting"):
        json_document("[" * depth + "]" * depth, "doc")


def test_json_within_the_depth_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    assert json_document('{"a": [[1]]}', "doc") == {"a": [[1]]}
    monkeypatch.setenv("SMITH_LIMIT_JSON_DEPTH", "2")
    with pytest.raises(LimitError):
        json_document('{"a": [[1]]}', "doc")
    assert JSON_DEPTH.count() == 2


BASE = "http://127.0.0.1:8080/repo/"


@pytest.mark.parametrize(
    ("base", "href", "inside"),
    [
        (BASE, "repodata/primary.xml.gz", True),
        (BASE, "Packages/a/x.rpm", True),
        (BASE, "../other/x.rpm", False),
        (BASE, "Packages/../../x.rpm", False),
        (BASE, "%2e%2e/x.rpm", False),
        (BASE, "/etc/passwd", False),
        (BASE, "file:///etc/passwd", False),
        (BASE, "http://127.0.0.2:8080/repo/x.rpm", False),
        (BASE, "//evil/repo/x.rpm", False),
        (BASE, "https://127.0.0.1:8080/repo/x.rpm", False),
        ("/srv/repo", "Packages/x.rpm", True),
        ("/srv/repo", "../x.rpm", False),
        ("/srv/repo", "/etc/passwd", False),
        ("/srv/repo", "file:///srv/repo/Packages/x.rpm", True),
        ("/srv/repo", "file:///etc/passwd", False),
        ("/srv/repo", "http://127.0.0.1/x.rpm", False),
    ],
)
def test_repository_hrefs_stay_under_their_base(base: str, href: str, inside: bool) -> None:
    if inside:
        contained_url(base, href, "repo")
    else:
        with pytest.raises(PackageError, match="outside the repository"):
            contained_url(base, href, "repo")


def test_long_quoted_values_are_cut_in_error_lines() -> None:
    line = shorten("smith: error: no package provides " + repr("n" * 100_000) + " in x")
    assert len(line) < 200 and line.endswith("' in x") and "…" in line
    assert "\n" not in shorten("a\nb " + "c" * 5000)

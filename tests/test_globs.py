"""smith/globs.py: one meaning of `paths`/`excludes` patterns for build and minimize."""

from __future__ import annotations

import pytest

from smith.errors import SmithError
from smith.globs import Excludes, glob_match


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("usr/bin/hello", "usr/bin/*", True),
        ("usr/bin/hello", "usr/*", False),  # `*` stays within one component
        ("usr/lib/x86_64-linux-gnu/libz.so.1", "usr/lib/*/libz.so*", True),
        ("usr/lib/x86_64-linux-gnu/libz.so.1", "usr/**/libz.so.1", True),
        ("usr/libz.so.1", "usr/**/libz.so.1", True),  # `**` may be no component at all
        ("usr/share/a.png", "usr/share/?.png", True),
        ("usr/share/ab.png", "usr/share/[a]?.png", True),
        ("etc/passwd", "etc/pass", False),
    ],
)
def test_glob_match(path: str, pattern: str, expected: bool) -> None:
    assert glob_match(path, pattern) is expected


def test_an_exclude_leaves_out_what_is_below_a_match() -> None:
    excludes = Excludes.parse(["/usr/share/doc", "/usr/lib/*/libGeoIP.so*", "/opt/*"])
    assert excludes.matching("usr/share/doc/x/copyright") == "/usr/share/doc"
    assert excludes.matching("usr/lib/x86_64-linux-gnu/libGeoIP.so.1") == "/usr/lib/*/libGeoIP.so*"
    assert excludes.matching("opt/app/bin/app") == "/opt/*"  # below the matched /opt/app
    assert excludes.matching("usr/share/docs") == ""
    assert excludes.matching("usr/lib/libGeoIP.so.1") == ""  # `*` needs one component


def test_an_exclude_that_climbs_out_is_refused() -> None:
    with pytest.raises(SmithError, match="climbs out"):
        Excludes.parse(["../etc"])

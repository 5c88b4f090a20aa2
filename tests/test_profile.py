"""The profile format (smith/profile.py) and a recipe's `profile:` key in `smith build`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from smith.profile import Profile, ProfileEntry, ProfileError, dump_profile, read_profile
from tests.rpm_universe import Universe
from tests.test_build import recipe_copy, smith
from tests.tools import require_root, require_tool

HEADER = '{"command":["app"],"format":"smith.profile","version":1}\n'


def test_one_entry_per_path_sorted_bytewise_with_a_fixed_tie_break(tmp_path: Path) -> None:
    accesses = [
        ProfileEntry("/usr/lib/b", "open", "worker"),
        ProfileEntry("/usr/lib/b", "open", "master"),
        ProfileEntry("/usr/bin/app", "open", "app"),
        ProfileEntry("/usr/bin/app", "exec", "sh"),
        ProfileEntry("/usr/lib/B", "open", "app"),
        ProfileEntry("/etc/t\u00e9\tab\n", "open", "app"),
    ]
    profile = Profile.of(["app", "-x"], accesses)
    again = Profile.of(["app", "-x"], list(reversed(accesses)))
    assert dump_profile(profile) == dump_profile(again)
    assert profile.paths() == ["/etc/t\u00e9\tab\n", "/usr/bin/app", "/usr/lib/B", "/usr/lib/b"]
    assert profile.entries[1] == ProfileEntry("/usr/bin/app", "exec", "sh")
    assert profile.entries[3].process == "master"
    dest = tmp_path / "p.profile"
    dest.write_bytes(dump_profile(profile))
    assert read_profile(str(dest)) == profile
    lines = dest.read_text().splitlines()
    assert json.loads(lines[1]) == ["/etc/t\u00e9\tab\n", "open", "app"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is not a smith profile"),
        ('["/a","open","x"]\n', "is not a smith profile"),
        ('{"format":"smith.profile","version":2}\n', "profile version 2 is not 1"),
        (HEADER + '["/a","read","x"]\n', 'line 2 is not \\["/path", "exec\\|open", "process"\\]'),
        (HEADER + '["a","open","x"]\n', "line 2 is not"),
        (HEADER + "not json\n", "line 2 is not"),
        (HEADER + '["/a/../../etc","open","x"]\n', "line 2: profile path climbs out"),
        ('{"command":"app","format":"smith.profile","version":1}\n', "line 1: `command`"),
    ],
)
def test_bad_profiles_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    dest = tmp_path / "bad.profile"
    dest.write_text(text)
    with pytest.raises(ProfileError, match=message) as info:
        read_profile(str(dest))
    assert "\n" not in str(info.value)


def test_a_missing_profile_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"cannot read the profile .*nope"):
        read_profile(str(tmp_path / "nope"))


def test_build_keeps_the_profile_paths_with_the_same_bytes(
    tmp_path: Path, rpm_universe: Universe
) -> None:
    recipe = recipe_copy("cat", tmp_path, rpm_universe)
    profile = Profile.of(
        ["/usr/bin/cat", "/read/data"],
        [ProfileEntry("/usr/bin/ls", "exec", "sh"), ProfileEntry("/usr/bin/cat", "exec", "sh")],
    )
    (recipe / "seen.profile").write_bytes(dump_profile(profile))
    doc = yaml.safe_load((recipe / "smith.yaml").read_text())
    doc["profile"] = "seen.profile"
    (recipe / "smith.yaml").write_text(yaml.safe_dump(doc))
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.tar"
        proc = smith(
            "build", str(recipe), "-o", str(out), "--explain", "--cache-dir", str(tmp_path / name)
        )
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert "/usr/bin/ls\t[coreutils-1.0-1.x86_64]\tprofile exec by sh" in proc.stdout

    doc["profile"] = "missing.profile"
    (recipe / "smith.yaml").write_text(yaml.safe_dump(doc))
    proc = smith("build", str(recipe), "-o", str(tmp_path / "c.tar"), check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith("missing.profile: No such file or directory")
    assert proc.stderr.count("\n") == 1


def test_probe_a_build_recipe_writes_smith_profile_beside_it(
    tmp_path: Path, rpm_universe: Universe
) -> None:
    require_root()
    require_tool("runc")
    recipe = recipe_copy("hello", tmp_path, rpm_universe)
    cache = str(tmp_path / "cache")
    proc = smith("probe", str(recipe / "smith.yaml"), "--cache-dir", cache, check=False)
    assert proc.returncode == 0, proc.stderr
    profile = read_profile(str(recipe / "smith.profile"))
    assert profile.command == ("/usr/bin/hello",)
    assert ProfileEntry("/usr/bin/hello", "exec", "runc:[2:INIT]") in profile.entries
    assert "/usr/lib/x86_64-linux-gnu/libc.so.6" in profile.paths()

"""crashcart/statefile.py reads two integers from a runtime's state file without `json`:
whatever the document, it must agree with `json` or step aside."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crashcart.statefile import member_int, read_ints

# Names that collide with "pid" in every way the text search could be fooled by.
NAMES = st.sampled_from(["pid", "Pid", "pids", "xpid", 'x"pid', 'pid"', "pid\\", "\\", "a"])
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | NAMES
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES | st.text(), inner),
    max_leaves=12,
)
DOCUMENTS = st.dictionaries(NAMES | st.text(max_size=5), VALUES, max_size=6)
LAYOUTS = st.sampled_from([{}, {"indent": 1}, {"separators": (",", ":")}, {"indent": "\t"}])


def members_named(value: Any, name: str) -> list[Any]:
    """The values of every member called `name`, at any depth."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == name:
                found.append(item)
            found.extend(members_named(item, name))
    elif isinstance(value, list):
        for item in value:
            found.extend(members_named(item, name))
    return found


@given(DOCUMENTS, LAYOUTS, st.booleans())
def test_member_int_agrees_with_json_or_steps_aside(
    document: dict[str, Any], layout: dict[str, Any], ascii_only: bool
) -> None:
    text = json.dumps(document, ensure_ascii=ascii_only, **layout)
    quick = member_int(text, "pid")
    if quick is not None:
        assert members_named(document, "pid") == [quick]
        assert type(members_named(document, "pid")[0]) is int


@given(DOCUMENTS, st.integers(min_value=0, max_value=2**64), LAYOUTS)
def test_read_ints_gives_the_top_level_member(
    document: dict[str, Any], pid: int, layout: dict[str, Any]
) -> None:
    document = {**document, "pid": pid}
    assert read_ints(json.dumps(document, **layout), ("pid",)) == {"pid": pid}


def test_runc_state_file_is_read_without_json() -> None:
    state = {
        "id": "web",
        "init_process_pid": 4242,
        "init_process_start": 859992,
        "config": {"labels": ["bundle=/x", 'note="init_process_pid":1']},
    }
    text = json.dumps(state, separators=(",", ":"))
    assert member_int(text, "init_process_pid") == 4242
    assert read_ints(text, ("init_process_pid", "init_process_start")) == {
        "init_process_pid": 4242,
        "init_process_start": 859992,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"pid": 7}', {"pid": 7}),
        ('{"other": 1}', {}),  # missing: left out, the caller decides
        ('{"pid": 7, "x": {"pid": 8}}', {"pid": 7}),  # ambiguous text: json decides
        ('{"pid": -1}', {"pid": -1}),
    ],
)
def test_read_ints(text: str, expected: dict[str, int]) -> None:
    assert read_ints(text, ("pid",)) == expected


@pytest.mark.parametrize("text", ['{"pid": "7"}', '{"pid": 7.5}', '{"pid": true}', "[1]", "{"])
def test_read_ints_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        read_ints(text, ("pid",))

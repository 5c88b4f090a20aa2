"""Reading a container runtime's state file without importing `json`.

runc's state.json and crun's status are JSON documents of a few kilobytes, of which an
attach needs two integers. Importing `json` imports and compiles `re` (and `enum`), about
ten milliseconds of a CPython start-up: a third of the `runc exec` that `crashcart attach`
is measured against. So the integers are read straight from the text when that is
unambiguous, and the document is parsed with `json` only when it is not.
"""

from __future__ import annotations

_DIGITS = "0123456789"


def member_int(text: str, key: str) -> int | None:
    """The integer value of the only member named `key` in a JSON document, or None if the
    name occurs as a member more than once or not at all, or its value is not an integer.

    In valid JSON a quote inside a string is escaped, so `"key"` followed by a colon is a
    member name, unless the quote is escaped, which makes it the tail of a longer name.
    """
    needle = f'"{key}"'
    value: int | None = None
    found = False
    start = 0
    while (at := text.find(needle, start)) >= 0:
        start = at + len(needle)
        if at > 0 and text[at - 1] == "\\":
            continue  # the end of a longer string: "x\"key"
        rest = text[start:].lstrip(" \t\r\n")
        if not rest.startswith(":"):
            continue  # a string value, not a member name
        if found:
            return None
        found = True
        number = rest[1:].lstrip(" \t\r\n")
        digits = len(number) - len(number.lstrip(_DIGITS))
        after = number[digits : digits + 1]
        if digits == 0 or after not in ("", ",", "}", " ", "\t", "\r", "\n"):
            return None  # negative, fractional, a string: leave it to the JSON parser
        value = int(number[:digits])
    return value


def read_ints(text: str, keys: tuple[str, ...]) -> dict[str, int]:
    """The integer members `keys` of a runtime's state file, a JSON object (missing ones are
    left out). Raises ValueError for a document that is not a JSON object or a value that
    is not an integer.

    A name found exactly once is taken wherever it is: runc and crun write these members at
    the top level, and their nested objects (the container's config) do not use the names.
    Anything else is decided by parsing the document."""
    quick = {key: member_int(text, key) for key in keys}
    if all(value is not None for value in quick.values()):
        return {key: value for key, value in quick.items() if value is not None}
    import json  # an unusual document: parse it properly

    document = json.loads(text)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    found = {}
    for key in keys:
        if key in document:
            value = document[key]
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{key} is not an integer: {value!r}")
            found[key] = value
    return found

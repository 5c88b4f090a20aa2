"""Recipe YAML read as Oracle smith read it: go-yaml v2's scalars, ghodss/yaml's strings.

The original unmarshalled smith.yaml with ghodss/yaml: go-yaml v2 (YAML 1.1) decodes it into
Go values, which become JSON, which is decoded into the recipe's Go struct. Two things
follow, and recipes of the original must mean the same here:

- Which plain scalars are booleans, numbers or null is go-yaml v2's rule, not PyYAML's:
  `y`/`n` are booleans too; `0o17`, `0b101` and `010` (octal) are integers; `1e3` is a
  float; `1:30` (a YAML 1.1 sexagesimal to PyYAML) and dates stay text.
- A scalar decoded into a string field is ghodss/yaml's string of the Go value: an integer
  in decimal (`0x10` gives "16"), a boolean as `true`/`false`, a float by Go's
  `strconv.FormatFloat(v, 'g', -1, 32)` (`1.50` gives "1.5", `1e6` "1e+06", `.inf`
  "+Inf"), a null inside a list or map "" (JSON null leaves a Go string empty).
  Quoted scalars are text as written.
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any

import yaml

BOOL, INT, FLOAT, NULL, STR = (
    f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "null", "str")
)

# go-yaml v2 resolve.go: the words it maps to a value before looking at numbers.
_WORDS: dict[str, tuple[str, Any]] = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE"), (BOOL, True)),
    **dict.fromkeys(("on", "On", "ON"), (BOOL, True)),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE"), (BOOL, False)),
    **dict.fromkeys(("off", "Off", "OFF"), (BOOL, False)),
    **{w: (NULL, None) for w in ("", "~", "null", "Null", "NULL")},
    **{w: (FLOAT, math.nan) for w in (".nan", ".NaN", ".NAN")},
    **{w: (FLOAT, math.inf) for w in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")},
    **{w: (FLOAT, -math.inf) for w in ("-.inf", "-.Inf", "-.INF")},
}
# go-yaml v2's yamlStyleFloat: the floats it accepts from strconv.ParseFloat.
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INT_BASES = {"0x": 16, "0X": 16, "0o": 8, "0O": 8, "0b": 2, "0B": 2}
INT64 = 1 << 63


def parse_go_int(text: str) -> int | None:
    """strconv.ParseInt(s, 0, 64), else ParseUint, after go-yaml drops the underscores."""
    plain = text.replace("_", "")
    sign = -1 if plain[:1] == "-" else 1
    digits = plain[1:] if plain[:1] in ("+", "-") else plain
    base = _INT_BASES.get(digits[:2], 0)
    if base:
        digits = digits[2:]
    elif len(digits) > 1 and digits[0] == "0":
        base, digits = 8, digits[1:]  # a leading 0 is octal to Go
    else:
        base = 10
    if not digits.isalnum():  # int() would take a second sign or spaces; Go does not
        return None
    try:
        value = sign * int(digits, base)
    except ValueError:
        return None
    if -INT64 <= value < INT64 or (sign > 0 and plain[:1] != "+" and value < 2 * INT64):
        return value
    return None


def resolve_plain(text: str) -> tuple[str, Any]:
    """(tag, value) of a plain scalar, by go-yaml v2's resolve()."""
    if text in _WORDS:
        return _WORDS[text]
    if text[:1] == "." or (text[:1] in "+-" and text[1:2] == "."):
        if _FLOAT.fullmatch(text):
            return FLOAT, float(text)
        return STR, text
    if text[:1] in "+-0123456789":
        value = parse_go_int(text)
        if value is not None:
            return INT, value
        if _FLOAT.fullmatch(text.replace("_", "")):
            return FLOAT, float(text.replace("_", ""))
    return STR, text


def format_go_float(value: float) -> str:
    """strconv.FormatFloat(value, 'g', -1, 32): the shortest digits that give back the same
    float32, as %e when the exponent is below -4 or at least 6 (Go's rule for 'g', -1)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    single = struct.unpack("f", struct.pack("f", value))[0]
    if single == 0:
        return "-0" if math.copysign(1, single) < 0 else "0"
    for digits in range(1, 10):
        text = f"{single:.{digits - 1}e}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == single:
            break
    mantissa, exp_text = text.split("e")
    exponent = int(exp_text)
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    if exponent < -4 or exponent >= 6:
        return f"{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    negative, figures = mantissa.startswith("-"), mantissa.lstrip("-").replace(".", "")
    if exponent >= 0:
        whole, frac = figures[: exponent + 1].ljust(exponent + 1, "0"), figures[exponent + 1 :]
        body = whole + (f".{frac}" if frac else "")
    else:
        body = "0." + "0" * (-exponent - 1) + figures
    return ("-" if negative else "") + body


def go_text(value: Any) -> Any:
    """What ghodss/yaml puts in a Go string field for a decoded scalar; other values (lists,
    maps, text) pass unchanged, so that a wrong type is still refused by name."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_go_float(value)
    if value is None:
        return ""
    return value


class GoScalarLoader(yaml.SafeLoader):
    """A SafeLoader whose plain scalars resolve as go-yaml v2 resolves them."""

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> str:
        # `<<` (merge) and `=` (value) keep PyYAML's meaning; go-yaml v2 merges `<<` too.
        if kind is yaml.ScalarNode and implicit[0] and value not in ("<<", "="):
            return resolve_plain(value)[0]
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call,no-any-return]

    def construct_go_scalar(self, node: yaml.Node) -> Any:
        text = self.construct_scalar(node)  # type: ignore[arg-type]
        tag, value = resolve_plain(str(text))
        if tag != node.tag:  # an explicit tag (`!!int "10"`) on text go-yaml reads otherwise
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"{text!r} is not a valid !!{node.tag.rsplit(':', 1)[-1]}",
                node.start_mark,
            )
        return value


for _tag in (BOOL, INT, FLOAT, NULL):
    GoScalarLoader.add_constructor(_tag, GoScalarLoader.construct_go_scalar)

"""`@record`: frozen dataclasses for the attach path, without importing dataclasses.

`crashcart attach` is benchmarked against `runc exec`, a Go binary that starts in a few
milliseconds. Importing dataclasses (and through it inspect, typing, copy, weakref, ast,
dis) costs a CPython process more than the whole attach itself, so at run time `@record`
is this small implementation; for mypy it *is* dataclasses.dataclass, so construction and
fields are type-checked the same way. Supports what crashcart uses: annotated fields,
defaults, keyword or positional construction, equality, hashing, repr, immutability.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from dataclasses import dataclass as record

    __all__ = ["record"]
else:

    def record(cls):
        names = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063 - no inspect
        defaults = {n: cls.__dict__[n] for n in names if n in cls.__dict__}

        def __init__(self, *args, **kwargs):
            if len(args) > len(names):
                raise TypeError(f"{cls.__name__} takes {len(names)} arguments")
            values = dict(zip(names, args, strict=False))
            for key, value in kwargs.items():
                if key not in names or key in values:
                    raise TypeError(f"{cls.__name__}: unexpected or repeated {key!r}")
                values[key] = value
            for name in names:
                if name not in values:
                    if name not in defaults:
                        raise TypeError(f"{cls.__name__}: missing {name!r}")
                    values[name] = defaults[name]
                object.__setattr__(self, name, values[name])

        def __setattr__(self, name, value):
            raise AttributeError(f"{cls.__name__} is frozen: cannot set {name!r}")

        def __eq__(self, other):
            if type(other) is not type(self):
                return NotImplemented
            return all(getattr(self, n) == getattr(other, n) for n in names)

        def __hash__(self):
            return hash(tuple(getattr(self, n) for n in names))

        def __repr__(self):
            fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
            return f"{cls.__name__}({fields})"

        cls.__init__ = __init__
        cls.__setattr__ = __setattr__
        cls.__eq__ = __eq__
        cls.__hash__ = __hash__
        cls.__repr__ = __repr__
        return cls

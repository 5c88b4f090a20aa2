"""Progress of long transfers: the library reports bytes, the command line shows them.

The command line says whether it wants a bar and how to draw it (`showing`, with a
`Display` it provides: smith/cli/progress.py draws click's bar on a terminal); the code that
moves the bytes, which knows the total, opens a `meter` and reports each block with
`advance`. Without a display nothing is reported, so the library knows no terminal and no
command line. Blobs move on several threads at once: the one bar is shared under a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Bar(Protocol):
    def update(self, count: int) -> None: ...


class Display(Protocol):
    def bar(self, label: str, total: int) -> AbstractContextManager[Bar]: ...


_lock = threading.Lock()
_wanted: list[tuple[str, Display]] = []  # the bar the command line asked for, if any
_bar: list[Bar] = []


@contextmanager
def showing(label: str, display: Display) -> Iterator[None]:
    """Let the meters opened below report to `display`, as a bar labelled `label`."""
    _wanted.append((label, display))
    try:
        yield
    finally:
        _wanted.pop()


@contextmanager
def meter(total: int) -> Iterator[None]:
    """A bar for `total` bytes, if the command line wants one and none is open already."""
    if not _wanted or _bar or total <= 0:
        yield
        return
    label, display = _wanted[-1]
    with display.bar(label, total) as bar:
        _bar.append(bar)
        try:
            yield
        finally:
            _bar.clear()


def advance(count: int) -> None:
    """`count` more bytes moved (a no-op without a bar)."""
    if _bar:
        with _lock:
            if _bar:
                _bar[0].update(count)

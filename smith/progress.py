"""Progress of long transfers on a terminal: bytes done of the total, and the rate.

The command line says whether it wants a bar (`showing`: stderr is a terminal and no -q);
the code that moves the bytes, which knows the total, opens a `meter` and reports each
block with `advance`. Without a terminal nothing is printed, so logs and pipes stay clean.
Blobs move on several threads at once: the one meter is shared under a lock.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

_lock = threading.Lock()
_wanted: list[str] = []  # the label of the bar the command line asked for, if any
_bar: list[_Meter] = []


class _Meter:
    def __init__(self, bar: ProgressBar[int], total: int) -> None:
        self.bar, self.total, self.done, self.start = bar, total, 0, time.monotonic()

    def add(self, count: int) -> None:
        self.done += count
        self.bar.update(count)

    def status(self, _item: object = None) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-3)
        rate = human_bytes(self.done / elapsed)
        return f"{human_bytes(self.done)} / {human_bytes(self.total)} at {rate}/s"


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


@contextmanager
def showing(label: str, *, quiet: bool = False) -> Iterator[None]:
    """Let the meters opened below show a bar labelled `label` (a terminal only)."""
    if quiet or not sys.stderr.isatty():
        yield
        return
    _wanted.append(label)
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
    holder: list[_Meter] = []
    bar: ProgressBar[int]
    with click.progressbar(
        length=total,
        label=_wanted[-1],
        file=sys.stderr,
        show_eta=False,
        item_show_func=lambda item: holder[0].status(item) if holder else None,
    ) as bar:
        holder.append(_Meter(bar, total))
        _bar.append(holder[0])
        try:
            yield
        finally:
            _bar.clear()


def advance(count: int) -> None:
    """`count` more bytes moved (a no-op without a bar)."""
    if _bar:
        with _lock:
            if _bar:
                _bar[0].add(count)

"""The progress bar of the command line: click's, with bytes done of the total and the
rate, on stderr when it is a terminal and no -q (smith/progress.py reports to it)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

import click

from smith import progress

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar


class _Meter:
    def __init__(self, bar: ProgressBar[int], total: int) -> None:
        self.bar, self.total, self.done, self.start = bar, total, 0, time.monotonic()

    def update(self, count: int) -> None:
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


class ClickDisplay:
    def bar(self, label: str, total: int) -> AbstractContextManager[progress.Bar]:
        return _click_bar(label, total)


@contextmanager
def _click_bar(label: str, total: int) -> Iterator[progress.Bar]:
    holder: list[_Meter] = []
    bar: ProgressBar[int]
    with click.progressbar(
        length=total,
        label=label,
        file=sys.stderr,
        show_eta=False,
        item_show_func=lambda item: holder[0].status(item) if holder else None,
    ) as bar:
        holder.append(_Meter(bar, total))
        yield holder[0]


@contextmanager
def showing(label: str, *, quiet: bool = False) -> Iterator[None]:
    """Show a bar labelled `label` for the transfers below (a terminal only)."""
    if quiet or not sys.stderr.isatty():
        yield
        return
    with progress.showing(label, ClickDisplay()):
        yield

"""What push and pull share: references given as text or parsed, and blob transfers on a
few threads that stop together."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from smith.oci.reference import Reference, parse_reference
from smith.stopsignals import stop_signals_held

T = TypeVar("T")
STOP_GRACE = 2.0  # seconds the workers get to finish their block once told to stop
R = TypeVar("R")


class Stopped(Exception):
    """Another transfer failed (or Ctrl-C): this one stops between two blocks."""


def as_reference(ref: str | Reference) -> Reference:
    return parse_reference(ref) if isinstance(ref, str) else ref


def run_parallel(work: Callable[[T, threading.Event], R], items: Sequence[T], jobs: int) -> list[R]:
    """`work(item, stop)` for every item on `jobs` threads; the first error stops the rest
    (they check `stop` between blocks) and is raised.

    The workers are daemon threads, unlike ThreadPoolExecutor's, which the interpreter joins
    at exit: Ctrl-C must end smith at once even while a worker waits on a stalled socket.
    The caller's cleanup (the staging directory) then also defeats any late write."""
    stop = threading.Event()
    lock = threading.Lock()
    pending = list(enumerate(items))
    results: dict[int, R] = {}
    errors: list[BaseException] = []

    def worker() -> None:
        while not stop.is_set():
            with lock:
                if not pending:
                    return
                index, item = pending.pop(0)
            try:
                results[index] = work(item, stop)
            except BaseException as err:
                with lock:
                    errors.append(err)
                stop.set()
                return

    threads = [
        threading.Thread(target=worker, name=f"smith-xfer-{n}", daemon=True)
        for n in range(max(1, min(jobs, len(items))))
    ]
    try:
        with stop_signals_held():  # the threads inherit the mask: see smith/stopsignals.py
            for thread in threads:
                thread.start()
        for thread in threads:
            thread.join()
    finally:
        stop.set()
        # On an error or a stop signal the caller's cleanup removes the directory the
        # workers write in: a worker still inside its block could create a file there while
        # rmtree runs, and that directory would survive it (seen: a Ctrl-C in a download
        # left its staging layout behind). So the workers get a moment to see `stop`; one
        # stalled on a socket is not waited for past it.
        deadline = time.monotonic() + STOP_GRACE
        for thread in threads:
            if thread.ident is not None:  # started
                thread.join(max(0.0, deadline - time.monotonic()))
    if errors:
        raise errors[0]
    return [results[i] for i in range(len(items))]


def open_read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()

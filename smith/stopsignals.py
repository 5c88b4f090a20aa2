"""Ctrl-C and SIGTERM go to the main thread only, and can be held off for a few lines.

A process-directed signal is delivered to any thread that does not block it. Python runs
its handler in the main thread, but if a worker thread took the signal, the main thread's
mask did not matter: the handler ran even inside `stop_signals_held()`, e.g. between
mkstemp returning and its name being recorded (a temporary file left beside an output).
So every thread smith starts blocks the stop signals for its whole life: started from
inside `stop_signals_held()` (a new thread inherits its creator's mask), or, for an
executor's threads, with `block_stop_signals` as their initializer.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

# SIGALRM too: it is how a stop that Python swallowed (raised in a __del__ or a weakref
# callback) is raised again 5 ms later (smith/cli/reporting.py stop_again_later). Not
# held, it raised that stop inside the very lines held here (a rmtree of a temporary
# directory, a name not yet recorded), and the temporary file stayed behind.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGALRM}


@contextmanager
def stop_signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait (pending, not lost) until the block is done, then are
    raised where the caller's cleanup catches them."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def block_stop_signals() -> None:
    """An executor's thread initializer: the stop signals are for the main thread."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

"""How a command line reports a failure: one line on stderr and an exit code.

Shared by `smith` and crashcart's fast attach path, and free of click so that path stays
quick to start. A traceback appears only with --debug.
"""

from __future__ import annotations

import sys

from smith.errors import SmithError, Terminated

TYPE_CHECKING = False  # typing.TYPE_CHECKING: importing typing costs crashcart attach 5 ms
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
    from typing import NoReturn
else:
    # The same functions on plain integers: `signal` builds IntEnums (imports enum), which
    # crashcart's attach path must not pay for (see crashcart/signals.py).
    import _signal as signal


# A value quoted in a message (a path, an interpreter, a NEEDED name) may come from a
# hostile input and be megabytes long; the line keeps its start and end, not all of it.
QUOTED = r"'[^'\n]{160,}'|\"[^\"\n]{160,}\""
LINE_MAX = 1000  # characters: a few terminal lines, whatever the input said


def shorten(line: str) -> str:
    """`line` with long quoted values cut in their middle, then cut to LINE_MAX."""
    import re  # only on an error: crashcart's attach path must not pay for it

    def cut(found: re.Match[str]) -> str:
        text = found.group(0)
        return f"{text[:60]}…{text[-20:]}"

    line = " ".join(re.sub(QUOTED, cut, line).split())  # one line, whatever the input held
    return line if len(line) <= LINE_MAX else f"{line[: LINE_MAX - 1]}…"


def stop_on_signal(signum: int, _frame: object) -> None:
    """SIGINT and SIGTERM (`timeout`, `docker stop`, systemd, CI runners) unwind the command
    like an error, so that every cleanup runs: the temporary output beside the destination,
    the unpacked image in TMPDIR, the half-written cache entry. A second signal while that
    cleanup runs is ignored: cut short, the cleanup would leave the very files it removes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def handle_stop_signals() -> None:
    signal.signal(signal.SIGINT, stop_on_signal)
    signal.signal(signal.SIGTERM, stop_on_signal)
    sys.unraisablehook = stop_again_later


def stop_again_later(unraisable: sys.UnraisableHookArgs) -> None:
    """The stop raised where Python can only print it and go on: in a weakref callback or
    a __del__ (importlib's module-lock callback, seen with SIGTERM 20 ms into a start).
    Swallowed there, it would leave the command running with the signals ignored. Instead
    it is raised again a moment later, in the command's own code, and said nothing of."""
    stop = unraisable.exc_value
    if not isinstance(stop, KeyboardInterrupt | Terminated):
        sys.__unraisablehook__(unraisable)
        return
    signum = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
    signal.signal(signal.SIGALRM, lambda _signum, frame: stop_on_signal(signum, frame))
    signal.setitimer(signal.ITIMER_REAL, 0.005)


def hold_stop_signals() -> None:
    """From here on the outcome is decided: a late SIGINT or SIGTERM stays pending until
    the process is gone. The interpreter's shutdown restores the default actions, under
    which a signal would still turn a finished run's exit status into -15."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGALRM})


def report_stop(prog: str, stop: KeyboardInterrupt) -> NoReturn:
    terminated = isinstance(stop, Terminated)
    print(f"{prog}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
    sys.exit(143 if terminated else 130)  # 128 + SIGTERM or SIGINT, as a shell reports


def exit_reporting(prog: str, debug: bool, body: Callable[[], int | None]) -> NoReturn:
    """Run `body`; exit with its status, or with one line on stderr for what it raised."""
    try:
        status = body()
    except SmithError as err:
        hold_stop_signals()
        if debug:
            raise
        print(shorten(f"{prog}: error: {err}"), file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt as stop:
        hold_stop_signals()
        if debug:
            raise
        report_stop(prog, stop)
    except BrokenPipeError:
        hold_stop_signals()
        sys.exit(141)
    except RuntimeError as err:
        # Python 3.11 wraps what a class's __set_name__ raises in a RuntimeError: a stop
        # that lands in a class statement of an import (ipaddress's cached_property, seen
        # with SIGTERM during a download's start) arrives dressed as one.
        cause = err.__cause__
        if not isinstance(cause, KeyboardInterrupt):
            raise
        hold_stop_signals()
        if debug:
            raise
        report_stop(prog, cause)
    except OSError as err:
        # An OS error smith did not anticipate still names its file, on one line.
        hold_stop_signals()
        if debug:
            raise
        # Quoted, so that shorten() cuts a path thousands of characters long (ENAMETOOLONG).
        where = f": {err.filename!r}" if err.filename else ""
        line = f"{prog}: error: {err.strerror or err}{where}"
        from smith.diskspace import FULL, full_disk_line  # only on an error

        if err.errno in FULL:  # a write no step wrapped: still which disk, and what to do
            line = f"{prog}: error: {full_disk_line(err)}"
        print(shorten(line), file=sys.stderr)
        sys.exit(1)
    hold_stop_signals()
    sys.exit(status if isinstance(status, int) else 0)

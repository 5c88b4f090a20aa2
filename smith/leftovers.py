"""Temporary names that say which run made them, so that the next run can remove a dead
run's leftovers.

An interrupted run cleans up after itself (SIGINT and SIGTERM unwind like an error); a
SIGKILLed one, or one whose machine lost power, cannot. So every temporary name smith makes
in a directory that outlives the run (the cache, beside an output, TMPDIR) carries a tag
`smithrun<pid>.<start>-`, the run's pid and its start time in clock ticks since boot. A
run that uses the directory later removes the names whose run is gone. A pid alone would
not do: pids are reused, and another smith working in the same cache right now must find
its files where it left them.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager, suppress

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (startup time)
if TYPE_CHECKING:
    from collections.abc import Iterator

TAG = re.compile(r"smithrun(\d+)\.(\d+)-")


def remove_path(path: str) -> None:
    """Remove a temporary file or directory, with the stop signals held: a Ctrl-C that
    cut rmtree short would leave the rest behind (seen: a run's last cleanup, interrupted)."""
    from smith.stopsignals import stop_signals_held  # imports `signal`: not at start-up

    with stop_signals_held():
        if os.path.isdir(path) and not os.path.islink(path):
            import shutil  # here: importing it costs every command's start (bz2, lzma)

            # Again if something wrote into it while it went (a transfer thread that was
            # still finishing a block): rmtree then leaves that directory behind.
            for _attempt in range(3):
                shutil.rmtree(path, ignore_errors=True)
                if not os.path.lexists(path):
                    break
        else:
            with suppress(FileNotFoundError):
                os.unlink(path)


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), None when no such process lives."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses:
    # the fields after its last ")" are 3, 4, ...; starttime is field 22.
    fields = stat.rsplit(b")", 1)[-1].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def run_tag() -> str:
    """This run's tag. Not cached: a forked child is a run of its own."""
    pid = os.getpid()
    return f"smithrun{pid}.{start_time(pid) or 0}-"


def tagged(prefix: str) -> str:
    """A prefix for tempfile's mkstemp/mkdtemp that names this run."""
    return f"{prefix}{run_tag()}"


def is_stale(name: str) -> bool:
    found = TAG.search(name)
    if found is None:
        return False
    pid, start = int(found.group(1)), int(found.group(2))
    return start_time(pid) != start


_swept: set[tuple[int, str]] = set()


def sweep(directory: str | os.PathLike[str]) -> None:
    """Remove what dead runs left in `directory` (not below it), once per run and directory
    (a cache of thousands of packages is not listed again for each). Best effort: a name
    that cannot be removed costs only its space."""
    key = (os.getpid(), os.fspath(directory))
    if key in _swept:
        return
    _swept.add(key)
    with suppress(OSError):
        for name in os.listdir(directory):
            if is_stale(name):
                remove_path(os.path.join(directory, name))


@contextmanager
def temp_dir(prefix: str) -> Iterator[str]:
    """A temporary directory in TMPDIR named by this run (after removing what dead runs
    left there), removed when the block ends. Made and removed with the stop signals held,
    which tempfile.TemporaryDirectory does not do: a signal between mkdtemp and its
    finalizer, or during its rmtree, left the directory behind."""
    import tempfile

    from smith.stopsignals import stop_signals_held

    sweep(tempfile.gettempdir())
    path = ""
    try:
        with stop_signals_held():
            path = tempfile.mkdtemp(prefix=tagged(prefix))
        yield path
    finally:
        if path:
            remove_path(path)

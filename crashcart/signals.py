"""The signal functions crashcart uses, on plain integers.

The `signal` module wraps these same functions from the interpreter's built-in `_signal`
and, when imported, builds IntEnum classes for every signal and handler: that imports
`enum` and costs a CPython process several milliseconds, a sixth of the `runc exec` that
`crashcart attach` is measured against. `_signal` is already loaded at start-up (it installs
the SIGINT handler), so taking the functions from it is free. For mypy they are the
`signal` module's own, so every call is type-checked the same way.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import signal as _impl

    Handler = _impl._HANDLER  # what signal() takes and returns, for annotations
else:
    import _signal as _impl

SIG_BLOCK = _impl.SIG_BLOCK
SIG_UNBLOCK = _impl.SIG_UNBLOCK
SIG_DFL = _impl.SIG_DFL
SIG_IGN = _impl.SIG_IGN
SIGCONT = _impl.SIGCONT
SIGHUP = _impl.SIGHUP
SIGINT = _impl.SIGINT
SIGKILL = _impl.SIGKILL
SIGPWR = _impl.SIGPWR
SIGQUIT = _impl.SIGQUIT
SIGTERM = _impl.SIGTERM
SIGUSR1 = _impl.SIGUSR1
SIGUSR2 = _impl.SIGUSR2
SIGWINCH = _impl.SIGWINCH
pthread_sigmask = _impl.pthread_sigmask
signal = _impl.signal

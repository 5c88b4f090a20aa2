"""An interactive session's terminal: a pseudo-terminal in the target, raw mode, relaying.

The command gets a pty from the target's own /dev/ptmx when it has one (so `tty` and `ps`
inside name a terminal that exists there), else one from the host. The session puts the
user's terminal in raw mode and copies bytes both ways, passing window size changes on.
Imported only for interactive sessions: `socket` alone costs more start-up time than a
one-shot `crashcart attach ID -- CMD` may spend.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import struct
import sys
import termios
import tty

from crashcart import signals
from crashcart.enter import FORWARDED_SIGNALS
from crashcart.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType

    from crashcart.transcript import Transcript

TIOCSPTLCK = 0x40045431  # unlock a pty master's slave
TIOCGPTPEER = 0x5441  # open a master's slave without a path (Linux 4.13)


@record
class PtyPlan:
    """An interactive session's terminal: the host pty pair, and a socket on which the child
    sends back the master of a pty it allocated in the target's own /dev/pts instead."""

    master: int
    slave: int
    session_end: socket.socket
    child_end: socket.socket


def open_target_pty(channel: socket.socket) -> int | None:
    """In the child, in the target's mount namespace: a pty from the target's /dev/ptmx, so
    that `tty` and `ps` inside name a terminal that exists there. Its master goes back to the
    session over `channel`; the slave is returned. None when the target has no usable ptmx."""
    try:
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
        _copy_window_size(0, slave)
        rights = struct.pack("i", master)
        channel.sendmsg([b"m"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
    except OSError:
        return None
    finally:
        os.close(master)
    return int(slave)


def child_pty(plan: PtyPlan) -> int:
    """In the child, in the target's namespaces: the pty slave the command will use (the
    target's own if it has a usable /dev/ptmx, else the host's); every other end closed."""
    os.close(plan.master)
    plan.session_end.close()
    slave = open_target_pty(plan.child_end)
    if slave is None:
        slave = plan.slave
    else:
        os.close(plan.slave)
    plan.child_end.close()
    return slave


def become_controlling_terminal(slave: int) -> None:
    """In the child: a new session whose controlling terminal and stdio are the pty slave."""
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)


def receive_target_pty(plan: PtyPlan) -> int:
    """In the session (after the fork): the target's pty master if the child sent one, else
    the host's. The host slave is closed either way: only the child uses a slave."""
    os.close(plan.slave)
    plan.child_end.close()
    _, ancillary, _, _ = plan.session_end.recvmsg(1, socket.CMSG_LEN(4))
    plan.session_end.close()
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS and len(data) >= 4:
            os.close(plan.master)
            return int(struct.unpack("i", data[:4])[0])
    return plan.master


def _copy_window_size(from_fd: int, to_fd: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(from_fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(to_fd, termios.TIOCSWINSZ, size)


def open_pty() -> PtyPlan:
    """A host pseudo-terminal pair whose size is the user's terminal's, and the channel on
    which the child may send a better one from the target."""
    master, slave = os.openpty()
    _copy_window_size(sys.stdin.fileno(), slave)
    session_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return PtyPlan(master, slave, session_end, child_end)


class _HangUp(Exception):
    """The user's side of the session is gone: closed terminal, SIGHUP or SIGTERM."""


def relay_pty(pid: int, master: int, transcript: Transcript | None = None) -> int:
    # the wait status of pid
    """Copy the user's terminal (in raw mode) to and from the pty until the command exits.

    When the user's side goes away (the terminal closed, SIGHUP, or SIGTERM, which an
    interactive shell ignores) the session hangs up the command's terminal, as a terminal
    emulator or sshd does: the command gets SIGHUP, and its pty master is closed."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()

    def on_winch(_signum: int, _frame: FrameType | None) -> None:
        _copy_window_size(stdin, master)

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    def hang_up(_signum: int, _frame: FrameType | None) -> None:
        raise _HangUp

    previous: dict[int, signals.Handler] = {
        signals.SIGWINCH: signals.signal(signals.SIGWINCH, on_winch)
    }
    for sig in (signals.SIGUSR1, signals.SIGUSR2):
        previous[sig] = signals.signal(sig, forward)
    for sig in (signals.SIGHUP, signals.SIGTERM):
        previous[sig] = signals.signal(sig, hang_up)
    saved = termios.tcgetattr(stdin)
    tty.setraw(stdin)
    try:
        signals.pthread_sigmask(signals.SIG_UNBLOCK, FORWARDED_SIGNALS)
        while True:
            try:
                ready, _, _ = select.select([stdin, master], [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave descriptor is closed, the shell is gone
                    break
                if not data:
                    break
                os.write(stdout, data)
                if transcript is not None:
                    transcript.output(data)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if not data:  # raw mode has no end-of-file character: the terminal closed
                    raise _HangUp
                os.write(master, data)
    except (_HangUp, OSError):  # OSError: EIO from the user's terminal, which has closed
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signals.SIGHUP)
    finally:
        for signum, handler in previous.items():
            signals.signal(signum, handler)
        with contextlib.suppress(termios.error, OSError):  # a closed terminal: EIO
            termios.tcsetattr(stdin, termios.TCSAFLUSH, saved)
    os.close(master)
    _, status = os.waitpid(pid, 0)
    return status

"""How a command line reports a failure: one line on stderr and an exit code.

Shared by `smith` and crashcart's fast attach path, and free of click so that path stays
quick to start. A traceback appears only with --debug.
"""

from __future__ import annotations

import sys

from smith.errors import SmithError, Terminated

TYPE_CHECKING = False  # typing.TYPE_CHECKING: importing typing costs crashcart attach 5 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn


def exit_reporting(prog: str, debug: bool, body: Callable[[], int | None]) -> NoReturn:
    """Run `body`; exit with its status, or with one line on stderr for what it raised."""
    try:
        status = body()
    except SmithError as err:
        if debug:
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except KeyboardInterrupt as stop:
        if debug:
            raise
        terminated = isinstance(stop, Terminated)
        print(f"{prog}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        sys.exit(143 if terminated else 130)  # 128 + SIGTERM or SIGINT, as a shell reports
    except BrokenPipeError:
        sys.exit(141)
    except OSError as err:
        # An OS error smith did not anticipate still names its file, on one line.
        if debug:
            raise
        where = f": {err.filename}" if err.filename else ""
        print(f"{prog}: error: {err.strerror or err}{where}", file=sys.stderr)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)

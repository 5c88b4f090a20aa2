"""The `smith` command's first lines: the stop signals are handled before anything else
is imported.

Importing the command line (click, pydantic, the OCI stack) takes a good part of a second;
a SIGTERM in that time would kill the process with the default action (exit -15, not 143)
and a Ctrl-C would print an import's traceback. The installed `smith` (bin/smith) covers
the import of this module too, with handlers of its own from its first line; only the
interpreter's own start, before that, is left to the default actions.
"""

from __future__ import annotations

import sys

from smith.cli.reporting import exit_reporting, handle_stop_signals

TYPE_CHECKING = False  # typing.TYPE_CHECKING: importing typing takes 40 ms of that window
if TYPE_CHECKING:
    from typing import NoReturn


def start() -> None:
    # Inside exit_reporting: a Ctrl-C that comes while the handlers are being installed is
    # reported as one, not as a traceback.
    handle_stop_signals()
    from smith.cli.main import main as cli_main

    cli_main()


def main() -> NoReturn:
    exit_reporting("smith", "--debug" in sys.argv, start)

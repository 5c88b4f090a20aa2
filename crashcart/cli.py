"""The `crashcart` command line."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from smith.cli import run_cli


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def cli(debug: bool) -> None:
    """Bring a toolbox into a running container's namespaces, and take it away again."""


def main(argv: list[str] | None = None) -> NoReturn:
    run_cli(cli, "crashcart", sys.argv[1:] if argv is None else argv)

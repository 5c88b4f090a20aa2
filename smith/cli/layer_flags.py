"""`--layers` and `--layer-budget`, shared by `smith build` and `smith minimize`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from smith.layering import DEFAULT_BUDGET, MAX_LAYERS, LayerStrategy, check_budget

F = TypeVar("F", bound=Callable[..., Any])


def layer_flags(command: F) -> F:
    command = click.option(
        "--layer-budget",
        type=int,
        metavar="N",
        help=f"At most N layers in all with --layers packages (default {DEFAULT_BUDGET}, "
        f"1 to {MAX_LAYERS}: containerd's limit); past it the highest packages share one.",
    )(command)
    return click.option(
        "--layers",
        type=click.Choice([s.value for s in LayerStrategy]),
        help="single: one layer (the default); packages: a layer per package, bottom of the "
        "dependency graph first, the application's own files (rootfs/, the program's "
        "package) on top. Over the recipe's `layers:`.",
    )(command)


def layer_values(flags: dict[str, Any]) -> tuple[str | None, int | None]:
    """(--layers, --layer-budget) taken out of `flags`, the budget checked (one line)."""
    budget = flags.pop("layer_budget", None)
    return flags.pop("layers", None), check_budget(budget) if budget is not None else None

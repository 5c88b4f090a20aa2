"""The names of the rule-based run-time sets (smith/resolve/runtime_sets.py), apart from
the rules themselves: the settings table and the recipe schema name them, and loading the
closure walker and the ELF reader for a list of names cost every command ~0.1 s."""

from __future__ import annotations

from enum import StrEnum


class RuntimeRule(StrEnum):
    """The rule-based run-time sets, applied by default; each can be switched off."""

    INTERPRETER = "interpreter"
    OPENSSL = "openssl"
    LIBGCC_S = "libgcc_s"

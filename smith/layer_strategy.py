"""The layer strategies and their limits, apart from the planner (smith/layering.py): the
settings table names them, and loading the planner for them was part of the start of every
command that takes a setting, `smith closure` among them."""

from __future__ import annotations

from enum import StrEnum

# containerd refuses an image of more than 127 layers (its overlay mount options).
MAX_LAYERS = 127
DEFAULT_BUDGET = 8


class LayerStrategy(StrEnum):
    SINGLE = "single"
    PACKAGES = "packages"

"""smith: build and shrink container images to the bare minimum, bit for bit reproducibly."""

__version__ = "0.1.0"

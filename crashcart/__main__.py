"""`python -m crashcart`."""

from crashcart.cli import main

main()

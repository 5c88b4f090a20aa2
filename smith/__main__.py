# `python -m smith`: smith.entry first, so that the stop signals are handled as early as
# they can be (see there).
from smith.entry import main

main()

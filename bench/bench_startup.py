"""Start-up of the smith command: `--version`, `--help` and a command's `--help`, against
`python -c pass` (the interpreter's own start, and the load reference), interleaved.

    .venv/bin/python -m bench.bench_startup [--rounds 10]

Targets: `smith --help` and `smith --version` under 0.3 s. Where the rest goes:
`.venv/bin/python -X importtime -m smith --help`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.timing import command_case, interleave, load_reference, ratio, report

SMITH = str(Path(sys.executable).with_name("smith"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    cases = [
        load_reference(),
        command_case("smith --version", [SMITH, "--version"]),
        command_case("smith --help", [SMITH, "--help"]),
        command_case("smith closure --help", [SMITH, "closure", "--help"]),
        command_case("smith build --help", [SMITH, "build", "--help"]),
    ]
    times = interleave(cases, args.rounds)
    print(f"{args.rounds} rounds, interleaved:")
    report(times)
    print()
    for name in ("smith --version", "smith --help"):
        ratio(times, name, "python -c pass")
        verdict = "under" if times.median(name) < 0.3 else "NOT under"
        print(f"{name}: median {times.median(name):.3f} s, {verdict} 0.3 s")


if __name__ == "__main__":
    main()

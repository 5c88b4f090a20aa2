"""How many signals sent in a command's first milliseconds miss smith's handlers: the
checkout's launcher (.venv/bin/smith, bin/launcher.c) against the Python script alone
(.venv/bin/smith-script, what `pip install` gives), interleaved, a round at a time.

    .venv/bin/python -m bench.bench_early_signals [ROUNDS] [STEP_MS]

Each round sends SIGINT and SIGTERM alternately at 0, STEP, 2*STEP… ms after Popen returns
(48 signals, 0 to 46 ms by default) to `smith build` of a missing recipe, and counts: handled
(one line, 130/143), done (the run ended first), missed (the default action: killed, or
Python's KeyboardInterrupt of its own start-up).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BIN = Path(__file__).resolve().parent.parent / ".venv" / "bin"
RUNS = 48
HANDLED = {"smith: interrupted\n", "smith: terminated\n"}


def one_round(argv: list[str], step: float, work: str) -> Counter[str]:
    seen: Counter[str] = Counter()
    for n in range(RUNS):
        sig = (signal.SIGINT, signal.SIGTERM)[n % 2]
        proc = subprocess.Popen(
            [*argv, "build", f"{work}/none.yaml", "-o", f"{work}/x.tar"],
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(n // 2 * step)
        proc.send_signal(sig)
        _, err = proc.communicate()
        text = err.decode()
        seen["handled" if text in HANDLED else "done" if "no recipe" in text else "missed"] += 1
    return seen


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    step = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.002
    cases = {
        "launcher": [str(BIN / "smith")],
        "script": [str(BIN / "python3"), str(BIN / "smith-script")],
    }
    with tempfile.TemporaryDirectory() as work:
        for r in range(rounds):
            for name, argv in cases.items():
                print(f"round {r + 1} {name:8}: {dict(one_round(argv, step, work))}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

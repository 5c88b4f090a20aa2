"""Interleaved timing for the benchmarks: every case once per round, rounds repeated, so a
load spike from the other users of the machine hits all cases alike; min and median.

Each benchmark also times `python -c pass` in the same rounds, as a reference for how loaded
the machine was while it ran.
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[], object]
    command: str = ""  # the command line, for a case that runs one (printed with the times)
    # An in-process case is also timed in CPU seconds of this process: with 6 engineers on
    # 2 cores, wall times move with the load, CPU time much less.
    cpu: bool = False


@dataclass
class Times:
    cases: dict[str, list[float]] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def min(self, name: str) -> float:
        return min(self.cases[name])

    def median(self, name: str) -> float:
        return statistics.median(self.cases[name])


@dataclass(frozen=True)
class ChildCpu:
    """What a command case returns: the child's user+sys seconds (from os.wait4), the figure
    that moves least with the other users' load (perf's instruction counter is not
    available on these machines)."""

    seconds: float


def command_case(name: str, argv: Sequence[str], **kwargs: object) -> Case:
    """A case that runs a command (output discarded; a failure stops the benchmark)."""

    def run() -> ChildCpu:
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, **kwargs)  # type: ignore[call-overload]
            # Reaped here, not by Popen.wait, to get the child's resource usage.
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                err.seek(0)
                tail = err.read()[-2000:]
                sys.exit(f"{shlex.join(argv)} failed ({proc.returncode}): {tail!r}")
        return ChildCpu(usage.ru_utime + usage.ru_stime)

    return Case(name, run, shlex.join(argv))


def byte_compile(project: str | os.PathLike[str]) -> None:
    """Byte-compile smith and crashcart, as an installed package is (scripts/setup.sh does
    it too): with PYTHONDONTWRITEBYTECODE=1 (set on these machines) every command would
    otherwise compile the modules changed since from source on each start."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "crashcart", "smith"],
        cwd=project,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def load_reference() -> Case:
    return command_case("python -c pass", [sys.executable, "-c", "pass"])


def interleave(
    cases: Sequence[Case],
    rounds: int,
    before: Callable[[], None] | None = None,
    *,
    timer: bool = False,
) -> Times:
    """Run every case once per round; `before` (untimed) runs before each timed case. With
    `timer`, a case that returns a float has timed itself (a child's own figure)."""
    times = Times()
    for case in cases:
        times.cases[case.name] = []
        if case.command:
            times.commands[case.name] = case.command
    for _ in range(rounds):
        for case in cases:
            if before is not None:
                before()
            start, cpu = time.perf_counter(), time.process_time()
            value = case.run()
            elapsed = time.perf_counter() - start
            if case.cpu:
                times.cpu.setdefault(case.name, []).append(time.process_time() - cpu)
            elif isinstance(value, ChildCpu):
                times.cpu.setdefault(case.name, []).append(value.seconds)
            own = timer
            times.cases[case.name].append(value if own and isinstance(value, float) else elapsed)
    return times


def report(times: Times) -> None:
    """Every case's min and median, with its command line when it runs one."""
    width = max(len(name) for name in times.cases)
    for name in times.cases:
        line = (
            f"{name.ljust(width)}  min {times.min(name):8.3f} s  median {times.median(name):8.3f} s"
        )
        print(line)
        if name in times.commands:
            print(f"{''.ljust(width)}  $ {shorten(times.commands[name])}")
        if name in times.cpu:
            cpu = times.cpu[name]
            print(
                f"{''.ljust(width)}  CPU min {min(cpu):.3f} s  median {statistics.median(cpu):.3f} s"
            )


def ratio(times: Times, slow: str, fast: str, target: str = "") -> None:
    """`slow` / `fast` at the min and at the median (so > 1 means `fast` is faster)."""
    by_min = times.min(slow) / times.min(fast)
    by_median = times.median(slow) / times.median(fast)
    goal = f"   (target: {target})" if target else ""
    print(f"{slow} / {fast}: {by_min:.2f}x at the min, {by_median:.2f}x at the median{goal}")


def cpu_ratio(times: Times, slow: str, fast: str, target: str = "") -> None:
    """Like ratio, in CPU seconds (in process, or a command's user+sys)."""
    by_min = min(times.cpu[slow]) / min(times.cpu[fast])
    by_median = statistics.median(times.cpu[slow]) / statistics.median(times.cpu[fast])
    goal = f"   (target: {target})" if target else ""
    print(f"CPU {slow} / {fast}: {by_min:.2f}x at the min, {by_median:.2f}x at the median{goal}")


def shorten(command: str, limit: int = 300) -> str:
    return command if len(command) <= limit else command[:limit] + f" ... ({len(command)} chars)"

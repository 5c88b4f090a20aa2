"""The `smith closure` debugging command, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys


def smith(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from smith.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_closure_of_a_host_program_explains() -> None:
    proc = smith("closure", "/", "/usr/bin/ls", "--explain")
    assert proc.returncode == 0, proc.stderr
    assert "/usr/bin/ls\tstart" in proc.stdout.splitlines()
    assert "DT_NEEDED libc.so.6 of /usr/bin/ls" in proc.stdout


def test_missing_start_is_one_line_error() -> None:
    proc = smith("closure", "/", "/no/such/file")
    assert proc.returncode == 1
    assert proc.stderr == "smith: error: start path /no/such/file does not exist in the root\n"


def test_the_run_time_rules_apply_and_switch_off() -> None:
    proc = smith("closure", "/", "/usr/bin/python3", "--explain")
    assert proc.returncode == 0, proc.stderr
    stdlib = [line for line in proc.stdout.splitlines() if "for import: its standard" in line]
    assert any(line.startswith("/usr/lib/python3.11/json/__init__.py\t") for line in stdlib)
    off = smith("closure", "/", "/usr/bin/python3", "--no-runtime", "interpreter")
    assert off.returncode == 0, off.stderr
    assert not any(p.startswith("/usr/lib/python3.11/") for p in off.stdout.splitlines())

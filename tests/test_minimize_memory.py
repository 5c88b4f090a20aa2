"""A 1 GiB image streams through `smith minimize`: peak memory stays under 256 MiB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bigimage import BIG_KEPT, MIB, write_big_image


@pytest.mark.slow
def test_one_gib_image_in_bounded_memory(tmp_path: Path) -> None:
    image = tmp_path / "big"
    write_big_image(image)
    out = tmp_path / "out"
    hwm = tmp_path / "hwm"
    # The child reports its own VmHWM at exit. Not wait4's ru_maxrss: that counts the
    # parent's pages copied at fork, before exec — a large pytest process inflated it.
    launcher = (
        "import atexit, sys\n"
        "def report():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        f"            open({str(hwm)!r}, 'w').write(line.split()[1])\n"
        "atexit.register(report)\n"
        "from smith.cli.main import main\n"
        "main(sys.argv[1:])\n"
    )
    argv = [sys.executable, "-c", launcher, "minimize", str(image), "-o", str(out), "--json"]
    for path in BIG_KEPT:
        argv += ["--path", path]
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _pid, status, _usage = os.wait4(proc.pid, 0)
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, stderr.decode()
    summary = json.loads(stdout)
    assert summary["before"]["bytes"] >= 1024 * MIB
    assert summary["after"]["bytes"] >= 512 * MIB
    peak_mib = int(hwm.read_text()) / 1024
    print(f"peak memory for a {summary['before']['bytes'] / MIB:.0f} MiB image: {peak_mib:.0f} MiB")
    assert peak_mib < 256, f"peak memory {peak_mib:.0f} MiB"

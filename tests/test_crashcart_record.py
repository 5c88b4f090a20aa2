"""`crashcart attach --record FILE`: an asciicast v2 transcript of a terminal session."""

from __future__ import annotations

import fcntl
import json
import os
import struct
import subprocess
import termios
from pathlib import Path

from tests import test_crashcart_attach as attach_tests
from tests.crashcart_containers import Container

# The attach tests' fixtures and helpers.
busybox = attach_tests.busybox
micro = attach_tests.micro
state_dir = attach_tests.state_dir
toolbox = attach_tests.toolbox


def test_a_session_is_recorded(
    micro: Container, toolbox: Path, state_dir: Path, tmp_path: Path
) -> None:
    record = tmp_path / "session.cast"
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    proc = subprocess.Popen(
        attach_tests.crashcart_cmd(
            "attach", "--record", str(record), "--toolbox", str(toolbox), micro.id
        ),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**attach_tests.env_for(state_dir), "TERM": "dumb"},
        start_new_session=True,
    )
    os.close(slave)
    try:
        attach_tests.read_until(master, f"[crashcart {micro.id}]".encode())
        os.write(master, b"echo $((6 * 7))x\r")
        attach_tests.read_until(master, b"42x")
        assert not record.exists(), "the transcript appears whole, when the session ends"
        os.write(master, b"exit 0\r")
        attach_tests.read_until(master, b"transcript is in")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    header, *events = [json.loads(line) for line in record.read_text().splitlines()]
    assert header["version"] == 2
    assert (header["width"], header["height"]) == (111, 33)
    assert (
        header["crashcart"]["target"] == f"{micro.runtime} container {micro.id} (pid {micro.pid})"
    )
    manifest = json.loads((toolbox / "crashcart-toolbox.json").read_text())
    assert header["crashcart"]["digest"] == manifest["digest"]
    assert isinstance(header["timestamp"], int)
    text = "".join(data for _, kind, data in events if kind == "o")
    assert "42x" in text
    times = [t for t, _, _ in events]
    assert times == sorted(times)
    assert list(tmp_path.iterdir()) == [record]


def test_record_needs_a_terminal(
    micro: Container, toolbox: Path, state_dir: Path, tmp_path: Path
) -> None:
    done = attach_tests.crashcart(
        state_dir,
        "attach",
        "--record",
        str(tmp_path / "x.cast"),
        "--toolbox",
        str(toolbox),
        micro.id,
    )
    assert done.returncode == 2
    assert "--record records a terminal session: stdin is not a terminal" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.cast").exists()

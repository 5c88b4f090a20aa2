"""`attach --record FILE`: the session's terminal output as an asciicast v2 transcript.

asciicast v2 (what `asciinema play` plays): a JSON header line, then one JSON line per
chunk of output, `[seconds since the start, "o", text]`. The header names the target, the
toolbox's digest (from its marker) and the time, so the file stands as the evidence of what
was done where. Written under a temporary name and renamed when the session ends: a
transcript is never seen half written. Imported only by recorded sessions.
"""

from __future__ import annotations

import codecs
import json
import os
import struct
import time
from typing import TextIO

from crashcart.prefix import MANIFEST

MARKER_BYTES = 64 << 10  # crashcart writes a few hundred bytes


def toolbox_digest(toolbox: str) -> str:
    """The digest the toolbox's marker records. The marker may come from an image anyone
    built: a huge, deep or non-object one is "unknown", never a crash of the session."""
    from smith.errors import SmithError
    from smith.limits import json_document

    try:
        with open(os.path.join(toolbox, MANIFEST), "rb") as f:
            data = f.read(MARKER_BYTES + 1)
        doc = json_document(data, MANIFEST) if len(data) <= MARKER_BYTES else None
    except (OSError, ValueError, SmithError):
        return "unknown"
    digest = doc.get("digest") if isinstance(doc, dict) else None
    return digest[:100] if isinstance(digest, str) else "unknown"


def terminal_size(fd: int) -> tuple[int, int]:
    import fcntl
    import termios

    try:
        packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        rows, cols = struct.unpack("HHHH", packed)[:2]
    except OSError:
        return 80, 24
    return (cols or 80), (rows or 24)


class Transcript:
    def __init__(self, path: str, target: str, toolbox: str, size: tuple[int, int]) -> None:
        self.path = path
        self.partial = f"{path}.crashcart-{os.getpid()}"
        self.file: TextIO = open(self.partial, "w", encoding="utf-8")  # noqa: SIM115
        self.start = time.monotonic()
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        header = {
            "version": 2,
            "width": size[0],
            "height": size[1],
            "timestamp": int(time.time()),
            "title": f"crashcart session in {target}",
            "env": {"TERM": os.environ.get("TERM", "")},
            "crashcart": {"target": target, "toolbox": toolbox, "digest": toolbox_digest(toolbox)},
        }
        self.file.write(json.dumps(header) + "\n")

    def output(self, data: bytes) -> None:
        text = self.decoder.decode(data)
        if text:
            when = round(time.monotonic() - self.start, 6)
            self.file.write(json.dumps([when, "o", text]) + "\n")

    def close(self) -> None:
        self.file.close()
        os.replace(self.partial, self.path)

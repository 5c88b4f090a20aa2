"""Small ELF objects compiled by the tests themselves with the real gcc."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.tools import require_tool


def compile_c(out: Path, source: str, *args: str, shared: bool = False, m32: bool = False) -> Path:
    gcc = require_tool("gcc")
    src = out.with_suffix(".c") if out.suffix != ".c" else out.with_name(out.name + ".c")
    src.write_text(source)
    cmd = [gcc, "-o", str(out), str(src), *args]
    if shared:
        cmd[1:1] = ["-shared", "-fPIC"]
    if m32:
        # No 32-bit libc on this host: link without it. ld.so only cares about the headers.
        cmd[1:1] = ["-m32", "-nostdlib"]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def lib32(out: Path, soname: str, *needed: str) -> Path:
    """An i386 shared object with this SONAME (and NEEDED entries, as -l of a stub)."""
    args = [f"-Wl,-soname,{soname}"]
    obj = compile_c(
        out, "int smith_stub_symbol(void) { return 32; }\n", *args, shared=True, m32=True
    )
    patchelf = require_tool("patchelf")
    for name in needed:
        subprocess.run([patchelf, "--add-needed", name, str(obj)], check=True)
    return obj

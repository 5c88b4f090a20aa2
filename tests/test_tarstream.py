"""The tar reader's header checksum: summed by adler32 halves, exactly as sum() would, and
a header with one byte changed is refused."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smith.oci.tarstream import TarFormatError, TarStream, byte_sum


@given(st.binary(min_size=512, max_size=512))
def test_the_byte_sum_of_a_block_is_exact(block: bytes) -> None:
    assert byte_sum(block) == sum(block)


@pytest.mark.parametrize("fill", [0x00, 0x7F, 0xFF])
def test_the_byte_sum_holds_at_the_extremes(fill: int) -> None:
    assert byte_sum(bytes([fill]) * 512) == fill * 512


def a_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("usr/lib/libx.so.1")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    return out.getvalue()


def names(data: bytes) -> list[str]:
    stream = io.BytesIO(data)
    return [member.name for member in TarStream(stream.read)]


def test_a_header_with_a_changed_byte_is_refused() -> None:
    good = a_tar()
    assert names(good) == ["usr/lib/libx.so.1"]
    bad = bytearray(good)
    bad[300] ^= 0x01  # in the header's second half (uname)
    with pytest.raises(TarFormatError, match="header checksum mismatch"):
        names(bytes(bad))

"""Cheap checks of pixel data at upload: what can be told from lengths, markers and headers
without decoding a pixel, so a truncated or mis-sized file is refused before it is stored.

The pixels themselves are decoded later by the render worker (`renditions`); damage that
only decoding reveals (a corrupt entropy-coded stream) fails the image there, with its reason.
Every read here is a seek and a few bytes, whatever the size of the file.
"""

from __future__ import annotations

import math
import struct
from typing import IO

from pydicom.uid import UID, RLELossless

from screening.errors import PortalError

_PIXEL_DATA = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian
_ITEM = b"\xfe\xff\x00\xe0"  # (FFFE,E000)
_SEQUENCE_END = b"\xfe\xff\xdd\xe0"  # (FFFE,E0DD)
_MAX_FRAGMENTS = 10_000  # one frame: a few fragments at most; a runaway walk means damage
_CODESTREAM_HEAD = 64 * 1024  # how far into a JPEG stream its frame header (SOF) is looked for


def _truncated_encapsulated() -> PortalError:
    # The message decoding gave before, so a client sees the same words for the same damage.
    return PortalError("the pixel data is truncated or damaged: the file ends inside it", code="invalid_pixel_data")


def _damaged(tsyntax: UID) -> PortalError:
    return PortalError(
        f"the compressed pixel data ({tsyntax.name}) is damaged or truncated and cannot be decoded",
        code="invalid_pixel_data",
    )


def check_dicom_pixel_data(fobj: IO[bytes], *, size: int, tsyntax: UID, rows: int, columns: int, bits_allocated: int):
    """Called with `fobj` where a header-only read stopped (at the Pixel Data element, or at the end).

    Native data: the element must hold the bytes Rows x Columns x BitsAllocated describe, and the
    file must hold the element. Encapsulated data: the fragments must end inside the file with a
    sequence delimiter, the codestream must end with its end marker, and its own frame size (JPEG
    SOF, JPEG 2000 SIZ, the RLE segment count) must match the header. Raises PortalError.
    """
    start = fobj.tell()
    head = fobj.read(12)
    if len(head) < 8 or head[:4] != _PIXEL_DATA:
        raise PortalError("the DICOM has no pixel data", code="no_pixel_data")
    if tsyntax.is_implicit_VR:
        length, data_start = struct.unpack("<I", head[4:8])[0], start + 8
    else:
        if len(head) < 12:
            raise (
                _truncated_encapsulated()
                if tsyntax.is_encapsulated
                else _native_truncated(0, rows, columns, bits_allocated)
            )
        length, data_start = struct.unpack("<I", head[8:12])[0], start + 12
    if not tsyntax.is_encapsulated:
        expected = rows * columns * math.ceil(bits_allocated / 8)
        held = 0 if length == 0xFFFFFFFF else min(length, max(0, size - data_start))
        if held < expected:
            raise _native_truncated(held, rows, columns, bits_allocated)
        return
    if length != 0xFFFFFFFF:
        raise _damaged(tsyntax)
    fragments = _fragments(fobj, data_start, size)
    if len(fragments) < 2:  # the basic offset table, then at least one fragment
        raise _damaged(tsyntax)
    _check_codestream(fobj, tsyntax, fragments[1:], rows=rows, columns=columns, bits_allocated=bits_allocated)


def _native_truncated(held: int, rows: int, columns: int, bits_allocated: int) -> PortalError:
    expected = rows * columns * math.ceil(bits_allocated / 8)
    return PortalError(
        f"the pixel data is truncated: the file holds {held:,} of the {expected:,} bytes its header describes",
        code="invalid_pixel_data",
    )


def _fragments(fobj: IO[bytes], position: int, size: int) -> list[tuple[int, int]]:
    """(offset, length) of each item of encapsulated pixel data, by seeking from item to item."""
    items: list[tuple[int, int]] = []
    while len(items) <= _MAX_FRAGMENTS:
        fobj.seek(position)
        head = fobj.read(8)
        if len(head) < 8:
            raise _truncated_encapsulated()
        length = struct.unpack("<I", head[4:8])[0]
        if head[:4] == _SEQUENCE_END:
            return items
        if head[:4] != _ITEM or length == 0xFFFFFFFF or position + 8 + length > size:
            raise _truncated_encapsulated()
        items.append((position + 8, length))
        position += 8 + length
    raise _truncated_encapsulated()


def _check_codestream(
    fobj: IO[bytes], tsyntax: UID, fragments: list[tuple[int, int]], *, rows: int, columns: int, bits_allocated: int
) -> None:
    first_offset, first_length = fragments[0]
    fobj.seek(first_offset)
    head = fobj.read(min(first_length, _CODESTREAM_HEAD))
    if tsyntax == RLELossless:
        if len(head) < 64:
            raise _damaged(tsyntax)
        segments = struct.unpack("<I", head[:4])[0]
        if segments != math.ceil(bits_allocated / 8):
            raise _damaged(tsyntax)
        return
    last_offset, last_length = fragments[-1]
    fobj.seek(last_offset + max(0, last_length - 3))
    tail = fobj.read(3).rstrip(b"\x00")  # fragments have even lengths: one pad byte may follow
    if not tail.endswith(b"\xff\xd9"):  # EOI (JPEG, JPEG-LS) and EOC (JPEG 2000) are the same marker
        raise _damaged(tsyntax)
    size = _codestream_size(head)
    if size is not None and size != (rows, columns):
        raise PortalError(
            f"the pixel data is {size[0]}x{size[1]}, not the {rows}x{columns} the header says",
            code="invalid_pixel_data",
        )


def _codestream_size(head: bytes) -> tuple[int, int] | None:
    """(rows, columns) from a JPEG 2000 SIZ or a JPEG / JPEG-LS SOF marker; None when not found."""
    if head[:4] == b"\xff\x4f\xff\x51" and len(head) >= 22:  # SOC, SIZ: Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz
        xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", head[8:24])
        return ysiz - yosiz, xsiz - xosiz
    if head[:2] != b"\xff\xd8":
        return None
    position = 2
    while position + 4 <= len(head):
        if head[position] != 0xFF:
            return None
        marker = head[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = struct.unpack(">H", head[position + 2 : position + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xF7) and position + 9 <= len(head):  # SOFn, SOF55 (JPEG-LS)
            height, width = struct.unpack(">HH", head[position + 5 : position + 9])
            return height, width
        position += 2 + length
    return None


def check_image_file_ends(fobj: IO[bytes], *, size: int, file_format: str) -> None:
    """A PNG must end with its IEND chunk and a JPEG with its EOI marker: a cut upload is refused now."""
    marker = {"PNG": b"IEND", "JPEG": b"\xff\xd9"}.get(file_format)
    if marker is None:
        return
    fobj.seek(max(0, size - 1024))
    if marker not in fobj.read(1024):
        raise PortalError(
            f"the {file_format} file is truncated: it ends before its end marker", code="invalid_pixel_data"
        )

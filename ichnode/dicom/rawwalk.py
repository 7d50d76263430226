"""A minimal walk over a dataset's top-level elements, raw: the C-STORE header check's reader.

pydicom's reader builds every element it passes (0.3 ms for a CT header); this walk only reads
tags and lengths, keeps the few elements asked for as pydicom RawDataElements (converted, with
the character set, only when read) and stops at Pixel Data: 0.05 ms. Sequences of undefined
length are skipped by their delimiters. Malformed input raises ValueError or struct.error.
"""
from __future__ import annotations

import struct

from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UN", b"UC", b"UR", b"UT"}
MAX_DEPTH = 16  # nested sequences of undefined length a header may have


class _Reader:
    def __init__(self, data: bytes, implicit: bool, little: bool):
        self.data, self.implicit = memoryview(data), implicit
        endian = "<" if little else ">"
        self.tag = struct.Struct(endian + "HH")
        self.u16, self.u32 = struct.Struct(endian + "H"), struct.Struct(endian + "L")

    def header(self, pos: int) -> tuple[int, bytes | None, int, int]:
        """(tag, VR or None, value length, header size) of the element at pos."""
        group, element = self.tag.unpack_from(self.data, pos)
        tag = group << 16 | element
        if self.implicit or group == 0xFFFE:  # items and delimiters have no VR in any syntax
            return tag, None, self.u32.unpack_from(self.data, pos + 4)[0], 8
        vr = bytes(self.data[pos + 4:pos + 6])
        if vr in _LONG_VRS:
            return tag, vr, self.u32.unpack_from(self.data, pos + 8)[0], 12
        if not vr.isalpha():
            raise ValueError(f"no VR at byte {pos}")
        return tag, vr, self.u16.unpack_from(self.data, pos + 6)[0], 8

    def skip_undefined(self, pos: int, end_tag: int, depth: int) -> int:
        """The position after the delimiter end_tag that closes what starts at pos."""
        if depth > MAX_DEPTH:
            raise ValueError("sequences nested too deep")
        while True:
            tag, _, length, size = self.header(pos)
            pos += size
            if tag == end_tag:
                return pos
            if length == UNDEFINED:
                pos = self.skip_undefined(pos, ITEM_END if tag == ITEM else SEQUENCE_END, depth + 1)
            else:
                pos += length
            if pos > len(self.data):
                raise ValueError("element runs past the end of the dataset")


def read_top_level(data: bytes, implicit: bool, little: bool, wanted: set[int],
                   stop_tag: int) -> tuple[dict[int, RawDataElement], tuple[int, int] | None]:
    """(the wanted top-level elements, (position, header size) of stop_tag or None if absent).

    Reading stops at stop_tag or at the first tag beyond it."""
    reader, found, pos = _Reader(data, implicit, little), {}, 0
    while pos + 8 <= len(data):
        tag, vr, length, size = reader.header(pos)
        if tag >= stop_tag:
            return found, ((pos, size) if tag == stop_tag else None)
        if length == UNDEFINED:
            end = reader.skip_undefined(pos + size, SEQUENCE_END, 1)
        else:
            end = pos + size + length
            if end > len(data):
                raise ValueError(f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) runs past the end")
            if tag in wanted:
                found[tag] = RawDataElement(Tag(tag), vr.decode() if vr else None, length,
                                            bytes(reader.data[pos + size:end]), pos + size,
                                            implicit, little)
        pos = end
    return found, None

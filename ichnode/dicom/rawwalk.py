"""A minimal walk over a dataset's top-level elements, raw: the C-STORE header check's reader.

pydicom's reader builds every element it passes (0.3 ms for a CT header); this walk only reads
tags and lengths, keeps the few elements asked for as pydicom RawDataElements (converted, with
the character set, only when read) and stops at Pixel Data: 0.05 ms. Sequences of undefined
length are skipped by their delimiters. Malformed input raises ValueError or struct.error.

What it reads agrees with pydicom's reader (tests/dicom/test_rawwalk_conformance.py compares
them), except that it is stricter where pydicom guesses: an explicit VR that is not one of the
PS3.5 6.2 VRs, a top-level dataset not in the transfer syntax's VR encoding, or undefined-length
sequences nested deeper than MAX_DEPTH raise ValueError instead of being read somehow. Like
pydicom, it reads items in implicit VR inside explicit VR datasets (a UN of undefined length).
"""
from __future__ import annotations

import struct

from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag

UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
# Explicit VR: these have 2 reserved bytes and a 32-bit length (PS3.5 7.1.2), the others 16-bit.
LENGTH_32_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
LENGTH_16_VRS = frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split())
MAX_DEPTH = 16  # nested sequences of undefined length a header may have


class _Reader:
    def __init__(self, data: bytes, little: bool):
        self.data = memoryview(data)
        endian = "<" if little else ">"
        self.implicit_header = struct.Struct(endian + "HHL")  # tag, 32-bit length
        self.explicit_header = struct.Struct(endian + "HH2sH")  # tag, VR, 16-bit length
        self.u32 = struct.Struct(endian + "L")

    def header(self, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
        """(tag, VR or None, value length, header size) of the element at pos."""
        if implicit:
            group, element, length = self.implicit_header.unpack_from(self.data, pos)
            return group << 16 | element, None, length, 8
        group, element, vr, length = self.explicit_header.unpack_from(self.data, pos)
        if group == 0xFFFE:  # items and delimiters have no VR in any syntax
            return group << 16 | element, None, self.u32.unpack_from(self.data, pos + 4)[0], 8
        if vr in LENGTH_16_VRS:
            return group << 16 | element, vr, length, 8
        if vr in LENGTH_32_VRS:
            return group << 16 | element, vr, self.u32.unpack_from(self.data, pos + 8)[0], 12
        raise ValueError(f"no known VR at byte {pos}")

    def item_is_implicit(self, pos: int) -> bool:
        """Whether the item whose first element is at pos is encoded in implicit VR: allowed in
        explicit VR syntaxes for the items of a UN of undefined length (PS3.5 6.2.2), and written
        by some writers for any sequence. Decided, as pydicom does, on its first element's VR."""
        vr = self.data[pos + 4:pos + 6]
        return len(vr) == 2 and not (0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B)

    def skip_undefined(self, pos: int, end_tag: int, depth: int, implicit: bool) -> int:
        """The position after the delimiter end_tag that closes what starts at pos; depth counts
        the sequences and items of undefined length it is in, itself included."""
        if depth > 2 * MAX_DEPTH:
            raise ValueError("sequences nested too deep")
        while True:
            tag, _, length, size = self.header(pos, implicit)
            pos += size
            if tag == end_tag:
                return pos
            if length != UNDEFINED:
                pos += length
                if pos > len(self.data):
                    raise ValueError("element runs past the end of the dataset")
            elif tag == ITEM:
                pos = self.skip_undefined(pos, ITEM_END, depth + 1,
                                          implicit or self.item_is_implicit(pos))
            else:
                pos = self.skip_undefined(pos, SEQUENCE_END, depth + 1, implicit)


def read_top_level(data: bytes, implicit: bool, little: bool, wanted: set[int],
                   stop_tag: int) -> tuple[dict[int, RawDataElement], tuple[int, int] | None]:
    """(the wanted top-level elements, (position, header size) of stop_tag or None if absent).

    Reading stops at stop_tag or at the first tag beyond it. Elements of undefined length
    (sequences) are skipped, never returned."""
    reader, found, pos = _Reader(data, little), {}, 0
    while pos + 8 <= len(data):
        tag, vr, length, size = reader.header(pos, implicit)
        if tag >= stop_tag:
            return found, ((pos, size) if tag == stop_tag else None)
        if length == UNDEFINED:
            end = reader.skip_undefined(pos + size, SEQUENCE_END, 1, implicit)
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

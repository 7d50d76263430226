"""The DICOM file preamble and File Meta Information group, encoded directly.

The C-STORE handler writes the received dataset bytes behind a file meta header. Building it
through pydicom (create_file_meta + write_file_meta_info) costs about a millisecond per instance,
as much as reading the header; this encodes the same six elements (PS3.10 7.1, explicit VR little
endian, with the group length) with struct in a few microseconds.
"""
from __future__ import annotations

import struct

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

PREAMBLE = b"\x00" * 128 + b"DICM"


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB",):
        return struct.pack("<HH2sHI", 0x0002, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _ui(uid: str) -> bytes:
    value = uid.encode("ascii")
    return value + b"\x00" if len(value) % 2 else value


def _sh(text: str) -> bytes:
    value = text.encode("ascii")
    return value + b" " if len(value) % 2 else value


def file_meta_bytes(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str,
                    implementation_uid: str = PYNETDICOM_IMPLEMENTATION_UID,
                    implementation_version: str = PYNETDICOM_IMPLEMENTATION_VERSION) -> bytes:
    """Preamble, 'DICM' and the File Meta Information group for one instance.

    Raises ValueError for a value that cannot be encoded (a UID over 64 characters or not ASCII).
    """
    for uid in (sop_class_uid, sop_instance_uid, transfer_syntax_uid, implementation_uid):
        if not uid or len(uid) > 64:
            raise ValueError(f"not a UID of 1 to 64 characters: {uid[:80]!r}")
    body = b"".join((
        _element(0x0001, b"OB", b"\x00\x01"),
        _element(0x0002, b"UI", _ui(sop_class_uid)),
        _element(0x0003, b"UI", _ui(sop_instance_uid)),
        _element(0x0010, b"UI", _ui(transfer_syntax_uid)),
        _element(0x0012, b"UI", _ui(implementation_uid)),
        _element(0x0013, b"SH", _sh(implementation_version[:16])),
    ))
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    return PREAMBLE + group_length + body

"""DIMSE command sets (PS3.7 section 9 and annex E) for the receiver: decode a request, encode a response.

Command sets are always Implicit VR Little Endian group 0000 elements. The receiver only needs a
handful of them, so they are read and written with struct (microseconds) instead of building
pydicom datasets per instance; the encoding is tested against pynetdicom's.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

C_STORE_RQ, C_ECHO_RQ = 0x0001, 0x0030
NO_DATASET = 0x0101  # CommandDataSetType: no dataset follows

_AFFECTED_SOP_CLASS, _COMMAND_FIELD, _MESSAGE_ID = 0x0002, 0x0100, 0x0110
_MESSAGE_ID_RESPONDED, _DATASET_TYPE, _STATUS = 0x0120, 0x0800, 0x0900
_ERROR_COMMENT, _AFFECTED_SOP_INSTANCE = 0x0902, 0x1000


class BadCommand(ValueError):
    """A command set that cannot be read: the association is aborted."""


@dataclass(frozen=True)
class Command:
    field: int  # CommandField
    message_id: int
    has_dataset: bool
    sop_class: str  # AffectedSOPClassUID ("" when absent)
    sop_instance: str  # AffectedSOPInstanceUID ("" when absent)


def decode_command(data: bytes) -> Command:
    """The elements of a request command set that the receiver acts on."""
    values: dict[int, bytes] = {}
    offset, end = 0, len(data)
    while offset < end:
        if end - offset < 8:
            raise BadCommand("command set ends inside an element header")
        group, element, length = struct.unpack_from("<HHI", data, offset)
        offset += 8
        if group != 0x0000 or length > end - offset:
            raise BadCommand(f"element ({group:04X},{element:04X}) of length {length} in a command set")
        values[element] = bytes(data[offset:offset + length])
        offset += length
    try:
        field = _us(values[_COMMAND_FIELD])
        message_id = _us(values[_MESSAGE_ID])
        dataset_type = _us(values[_DATASET_TYPE])
    except KeyError as exc:
        raise BadCommand(f"command set without element (0000,{exc.args[0]:04X})") from None
    return Command(field, message_id, dataset_type != NO_DATASET,
                   _text(values.get(_AFFECTED_SOP_CLASS, b"")),
                   _text(values.get(_AFFECTED_SOP_INSTANCE, b"")))


def response(request: Command, status: int, comment: str | None = None) -> bytes:
    """The response to request (CommandField with the response bit); a failure may carry an Error
    Comment (LO, 64 characters) that the sender shows in its log."""
    elements = []
    if request.sop_class:
        elements.append((_AFFECTED_SOP_CLASS, _uid(request.sop_class)))
    elements += [(_COMMAND_FIELD, _us_bytes(request.field | 0x8000)),
                 (_MESSAGE_ID_RESPONDED, _us_bytes(request.message_id)),
                 (_DATASET_TYPE, _us_bytes(NO_DATASET)),
                 (_STATUS, _us_bytes(status))]
    if comment:
        elements.append((_ERROR_COMMENT, _lo(comment)))
    if request.sop_instance:
        elements.append((_AFFECTED_SOP_INSTANCE, _uid(request.sop_instance)))
    return _command_set(elements)


def _command_set(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(struct.pack("<HHI", 0x0000, tag, len(value)) + value for tag, value in elements)
    return struct.pack("<HHII", 0x0000, 0x0000, 4, len(body)) + body


def _us(value: bytes) -> int:
    if len(value) != 2:
        raise BadCommand(f"US value of {len(value)} bytes")
    return struct.unpack("<H", value)[0]


def _us_bytes(value: int) -> bytes:
    return struct.pack("<H", value)


def _text(value: bytes) -> str:
    return value.decode("ascii", "replace").rstrip("\x00 ")


def _uid(uid: str) -> bytes:
    value = uid.encode("ascii", "replace")
    return value + b"\x00" if len(value) % 2 else value


def _lo(text: str) -> bytes:
    value = text[:64].encode("ascii", "replace").replace(b"\\", b"/")
    return value + b" " if len(value) % 2 else value

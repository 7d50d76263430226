"""DICOM Upper Layer PDUs (PS3.8 section 9.3) as the receiver reads and writes them.

Framing, P-DATA-TF items and the short fixed-size PDUs are done here with struct; the
A-ASSOCIATE-RQ/AC, whose variable items are many and intricate, go through pynetdicom's PDU
classes (acceptor.py).
"""
from __future__ import annotations

import socket
import struct
from typing import Iterator

ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA, RELEASE_RQ, RELEASE_RP, ABORT = 0x04, 0x05, 0x06, 0x07

# A-ABORT source and reasons (PS3.8 9.3.8)
ABORT_BY_USER, ABORT_BY_PROVIDER = 0x00, 0x02
REASON_NOT_SPECIFIED, REASON_UNRECOGNISED_PDU, REASON_UNEXPECTED_PDU = 0x00, 0x01, 0x02
REASON_INVALID_PARAMETER = 0x06


class PeerClosed(ConnectionError):
    """The peer closed the TCP connection."""


class BadPDU(ValueError):
    """Bytes that are not a valid PDU here: answered with an A-ABORT."""

    def __init__(self, message: str, reason: int = REASON_INVALID_PARAMETER):
        super().__init__(message)
        self.reason = reason


def recv_exact(sock: socket.socket, size: int) -> bytearray:
    """Exactly size bytes, read straight into one buffer (no per-chunk concatenation)."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise PeerClosed("connection closed by the peer")
        got += n
    return buf


def read_header(sock: socket.socket) -> tuple[int, int]:
    """(PDU type, length of the body that follows)."""
    pdu_type, _, length = struct.unpack(">BBL", recv_exact(sock, 6))
    if pdu_type not in (ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA, RELEASE_RQ, RELEASE_RP,
                        ABORT):
        raise BadPDU(f"unknown PDU type 0x{pdu_type:02X}", REASON_UNRECOGNISED_PDU)
    return pdu_type, length


def read_pdu(sock: socket.socket, limit: int) -> tuple[int, bytearray]:
    """(PDU type, PDU body without the 6-byte header). A declared length over `limit` is refused
    before anything is allocated, so a peer cannot make the node reserve gigabytes it never sends."""
    pdu_type, length = read_header(sock)
    if length > limit:
        raise BadPDU(f"PDU of {length} bytes is over the limit of {limit}")
    return pdu_type, recv_exact(sock, length)


def discard(sock: socket.socket, size: int, chunk: int = 1 << 20) -> None:
    """Read and drop size bytes, a chunk at a time."""
    buf = bytearray(min(size, chunk))
    while size > 0:
        n = sock.recv_into(buf, min(size, len(buf)))
        if n == 0:
            raise PeerClosed("connection closed by the peer")
        size -= n


def pdv_items(body: bytearray) -> Iterator[tuple[int, bool, bool, memoryview]]:
    """(presentation context ID, is command, is last fragment, fragment) of each PDV item of a
    P-DATA-TF body; the fragments are views into body, not copies."""
    view = memoryview(body)
    offset, end = 0, len(body)
    while offset < end:
        if end - offset < 6:
            raise BadPDU("P-DATA-TF ends inside a PDV item header")
        (length,) = struct.unpack_from(">L", body, offset)
        if length < 2 or length > end - offset - 4:
            raise BadPDU(f"PDV item length {length} does not fit the P-DATA-TF")
        context_id, header = body[offset + 4], body[offset + 5]
        yield context_id, bool(header & 0x01), bool(header & 0x02), view[offset + 6:offset + 4 + length]
        offset += 4 + length


def p_data(context_id: int, payload: bytes, peer_max_pdu: int, command: bool = True) -> bytes:
    """P-DATA-TF PDUs carrying payload, fragmented to the peer's maximum PDU length (0: none)."""
    room = len(payload) if not peer_max_pdu else max(1, peer_max_pdu - 6)
    pdus = []
    for start in range(0, max(len(payload), 1), room):
        fragment = payload[start:start + room]
        last = start + room >= len(payload)
        header = (0x01 if command else 0x00) | (0x02 if last else 0x00)
        item = struct.pack(">LBB", len(fragment) + 2, context_id, header) + fragment
        pdus.append(struct.pack(">BBL", P_DATA, 0, len(item)) + item)
    return b"".join(pdus)


def release_rp() -> bytes:
    return struct.pack(">BBLL", RELEASE_RP, 0, 4, 0)


def abort(source: int = ABORT_BY_PROVIDER, reason: int = REASON_NOT_SPECIFIED) -> bytes:
    return struct.pack(">BBLBBBB", ABORT, 0, 4, 0, 0, source, reason)


def associate_rj(result: int, source: int, reason: int) -> bytes:
    return struct.pack(">BBLBBBB", ASSOCIATE_RJ, 0, 4, 0, result, source, reason)

"""DICOM Upper Layer PDUs (PS3.8 section 9.3) as the receiver reads and writes them.

Framing, P-DATA-TF items and the short fixed-size PDUs are done here with struct; the
A-ASSOCIATE-RQ/AC, whose variable items are many and intricate, go through pynetdicom's PDU
classes (acceptor.py).
"""
from __future__ import annotations

import socket
import struct
import time
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


class DeadlinePassed(TimeoutError):
    """A PDU or the association took longer than the node allows (a slow-drip peer)."""


GROW_STEP = 1 << 20  # a PDU body's first buffer; it doubles as the bytes arrive


class PduReader:
    """Reads PDUs from one connection against two monotonic deadlines: each PDU must arrive whole
    within `pdu_timeout_s` of when the node started waiting for it, and the association must end
    by `association_deadline`. A per-recv timeout alone lets a peer drip one byte every few seconds
    and hold its association for ever.

    Memory follows the bytes received, never a declared length: a body's buffer starts at
    GROW_STEP at most and doubles only once full, so a header that declares gigabytes costs
    nothing until the gigabytes are actually sent.
    """

    def __init__(self, sock: socket.socket, association_deadline: float):
        self.sock, self.association_deadline = sock, association_deadline
        self.pdu_deadline = association_deadline

    def header(self, pdu_timeout_s: float) -> tuple[int, int]:
        """Start a PDU: (PDU type, length of the body that follows)."""
        self.pdu_deadline = min(time.monotonic() + pdu_timeout_s, self.association_deadline)
        pdu_type, _, length = struct.unpack(">BBL", self.exact(6))
        if pdu_type not in (ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA, RELEASE_RQ, RELEASE_RP,
                            ABORT):
            raise BadPDU(f"unknown PDU type 0x{pdu_type:02X}", REASON_UNRECOGNISED_PDU)
        return pdu_type, length

    def exact(self, size: int) -> bytearray:
        """Exactly size bytes of the current PDU."""
        buf = bytearray(min(size, GROW_STEP))
        got = 0
        while got < size:
            if got == len(buf):
                buf.extend(bytes(min(size - got, len(buf))))
            with memoryview(buf) as whole, whole[got:] as free:
                got += self._recv_into(free)
        return buf

    def discard(self, size: int) -> None:
        """Read and drop size bytes of the current PDU, a chunk at a time."""
        buf = bytearray(min(size, GROW_STEP))
        while size > 0:
            with memoryview(buf) as whole, whole[:min(size, len(buf))] as part:
                size -= self._recv_into(part)

    def _recv_into(self, view: memoryview) -> int:
        remaining = self.pdu_deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlinePassed("a PDU or the association took longer than the node allows")
        self.sock.settimeout(remaining)
        try:
            n = self.sock.recv_into(view)
        except TimeoutError:
            raise DeadlinePassed("a PDU or the association took longer than the node allows") from None
        if n == 0:
            raise PeerClosed("connection closed by the peer")
        return n


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

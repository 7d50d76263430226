"""A DICOM peer written byte by byte, for what real SCUs never send: hostile and broken PDUs.

A real SCU (pynetdicom, DCMTK) is used wherever the test is about a real peer; this one writes
A-ASSOCIATE-RQ through pynetdicom's PDU classes and everything after it with struct.
"""
from __future__ import annotations

import socket
import struct

from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import build_context
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification

from ichnode.dicom import ul

CT_CONTEXT = 1


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the node closed the connection"
        data += chunk
    return data


def read_pdu(sock: socket.socket, timeout: float = 10) -> tuple[int, bytes]:
    sock.settimeout(timeout)
    pdu_type, _, length = struct.unpack(">BBL", recv_exact(sock, 6))
    return pdu_type, recv_exact(sock, length)


def associate_rq(transfer_syntax: str = ExplicitVRLittleEndian, called: str = "ICHNODE") -> bytes:
    """An A-ASSOCIATE-RQ proposing CT Image Storage in transfer_syntax as context 1."""
    request = A_ASSOCIATE()
    request.application_context_name = "1.2.840.10008.3.1.1.1"
    request.calling_ae_title, request.called_ae_title = "RAWPEER", called
    context = build_context(CTImageStorage, [transfer_syntax])
    context.context_id = CT_CONTEXT
    request.presentation_context_definition_list = [context]
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    request.user_information = [length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(request)
    return pdu.encode()


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A TCP connection from a chosen loopback source address (127.0.0.0/8 is all local)."""
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def associate(port: int, transfer_syntax: str = ExplicitVRLittleEndian,
              source: str = "127.0.0.1") -> socket.socket:
    """An association with context 1 accepted in transfer_syntax."""
    sock = connect(port, source)
    sock.sendall(associate_rq(transfer_syntax))
    pdu_type, body = read_pdu(sock)
    assert pdu_type == ul.ASSOCIATE_AC, f"association not accepted (PDU type {pdu_type})"
    ac = A_ASSOCIATE_AC()
    ac.decode(bytes([pdu_type, 0]) + len(body).to_bytes(4, "big") + body)
    (accepted,) = ac.to_primitive().presentation_context_definition_results_list
    assert accepted.result == 0 and accepted.transfer_syntax[0] == transfer_syntax
    return sock


def command(field: int, message_id: int = 1, dataset: bool = True, sop_uid: str | None = None) -> bytes:
    """A DIMSE command set (implicit VR little endian) for CT Image Storage."""
    elements = [(0x0002, CTImageStorage.encode() + b"\x00"), (0x0100, struct.pack("<H", field)),
                (0x0110, struct.pack("<H", message_id)),
                (0x0800, struct.pack("<H", 0x0000 if dataset else 0x0101))]
    if sop_uid:
        uid = sop_uid.encode() + b"\x00" * (len(sop_uid) % 2)
        elements += [(0x0700, struct.pack("<H", 0)), (0x1000, uid)]
    body = b"".join(struct.pack("<HHI", 0, tag, len(v)) + v for tag, v in elements)
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def pdv_pdu(payload: bytes, command_part: bool, last: bool) -> bytes:
    """One P-DATA-TF with one PDV item on context 1, whatever its size."""
    header = (0x01 if command_part else 0x00) | (0x02 if last else 0x00)
    item = struct.pack(">LBB", len(payload) + 2, CT_CONTEXT, header) + payload
    return struct.pack(">BBL", ul.P_DATA, 0, len(item)) + item


def status_of(response_pdu: bytes) -> int:
    """The Status (0000,0900) of a DIMSE response PDU body."""
    (_, _, _, fragment), = ul.pdv_items(bytearray(response_pdu))
    data = bytes(fragment)
    offset = 0
    while offset < len(data):
        group, element, length = struct.unpack_from("<HHI", data, offset)
        if (group, element) == (0, 0x0900):
            return struct.unpack_from("<H", data, offset + 8)[0]
        offset += 8 + length
    raise AssertionError("no Status in the response")


def closed_by_node(sock: socket.socket, timeout: float) -> bool:
    """Read until the node closes the connection (True) or `timeout` passes in silence (False)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False

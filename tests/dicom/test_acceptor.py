"""The node's association acceptor over raw sockets: what a broken or hostile peer gets back.

A real SCU (pynetdicom, DCMTK) never sends these PDUs, so they are written byte by byte here;
every case ends with the node still serving (C-ECHO)."""
from __future__ import annotations

import io
import socket
import struct

import pydicom
import pytest
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import build_context
from pynetdicom.dsutils import decode
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification

from ichnode.dicom import dimse, ul
from ichnode.dicom.status import StoreStatus
from ichnode.synth import SynthSpec, write_series

from tests.reliability.peers import association, echo_ok, start_node

CT_CONTEXT = 1


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    node = start_node(tmp_path_factory.mktemp("acceptor"), **{"node.network_timeout_s": 5.0})
    yield node
    assert echo_ok(node.port), "the node stopped answering C-ECHO"
    node.stop()


def read_pdu(sock) -> tuple[int, bytes]:
    sock.settimeout(10)
    pdu_type, _, length = struct.unpack(">BBL", ul.recv_exact(sock, 6))
    return pdu_type, bytes(ul.recv_exact(sock, length))


def associate(port: int) -> socket.socket:
    """A raw association proposing CT Image Storage (Explicit VR Little Endian) as context 1."""
    request = A_ASSOCIATE()
    request.application_context_name = "1.2.840.10008.3.1.1.1"
    request.calling_ae_title, request.called_ae_title = "RAWPEER", "ICHNODE"
    context = build_context(CTImageStorage, [ExplicitVRLittleEndian])
    context.context_id = CT_CONTEXT
    request.presentation_context_definition_list = [context]
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    request.user_information = [length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(request)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(pdu.encode())
    pdu_type, body = read_pdu(sock)
    assert pdu_type == ul.ASSOCIATE_AC
    ac = A_ASSOCIATE_AC()
    ac.decode(bytes([pdu_type, 0]) + len(body).to_bytes(4, "big") + body)
    (accepted,) = ac.to_primitive().presentation_context_definition_results_list
    assert accepted.result == 0 and accepted.transfer_syntax[0] == ExplicitVRLittleEndian
    return sock


def command(field: int, message_id: int = 1, dataset: bool = True) -> bytes:
    elements = [(0x0002, CTImageStorage.encode() + b"\x00"), (0x0100, struct.pack("<H", field)),
                (0x0110, struct.pack("<H", message_id)),
                (0x0800, struct.pack("<H", 0x0000 if dataset else 0x0101))]
    body = b"".join(struct.pack("<HHI", 0, tag, len(v)) + v for tag, v in elements)
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def test_pdv_on_a_context_that_was_not_accepted_is_aborted(node):
    with associate(node.port) as sock:
        sock.sendall(ul.p_data(CT_CONTEXT + 2, command(dimse.C_ECHO_RQ, dataset=False), 0))
        assert read_pdu(sock) == (ul.ABORT, bytes([0, 0, ul.ABORT_BY_PROVIDER, 0x06]))


def test_unknown_pdu_type_is_aborted(node):
    with associate(node.port) as sock:
        sock.sendall(struct.pack(">BBL", 0x09, 0, 2) + b"\x00\x00")
        assert read_pdu(sock) == (ul.ABORT, bytes([0, 0, ul.ABORT_BY_PROVIDER, 0x01]))


def test_unreadable_command_set_is_aborted(node):
    with associate(node.port) as sock:
        sock.sendall(ul.p_data(CT_CONTEXT, b"\x00\x00\x00\x01garbage", 0))
        assert read_pdu(sock)[0] == ul.ABORT


def test_other_operations_get_unrecognised_operation_and_the_association_goes_on(node):
    with associate(node.port) as sock:
        c_find = 0x0020
        sock.sendall(ul.p_data(CT_CONTEXT, command(c_find, message_id=5), 0))
        sock.sendall(ul.p_data(CT_CONTEXT, b"\x08\x00\x52\x00\x00\x00\x00\x00", 0, command=False))
        pdu_type, body = read_pdu(sock)
        assert pdu_type == ul.P_DATA
        (_, is_command, last, fragment), = ul.pdv_items(bytearray(body))
        rsp = decode(io.BytesIO(bytes(fragment)), True, True)
        assert is_command and last
        assert (rsp.CommandField, rsp.MessageIDBeingRespondedTo, rsp.Status) == (0x8020, 5, 0x0211)
        sock.sendall(struct.pack(">BBLL", ul.RELEASE_RQ, 0, 4, 0))
        assert read_pdu(sock) == (ul.RELEASE_RP, b"\x00\x00\x00\x00")


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns on the bad UID we send
def test_a_refusal_tells_the_sender_why(node, tmp_path):
    truth = write_series(tmp_path, SynthSpec(subtype="none", matrix=32, seed=5))
    ds = pydicom.dcmread(tmp_path / truth["files"][0])
    ds.SOPInstanceUID = UID("1.2.3.abc")  # not a DICOM UID: refused, never used as a file name
    with association(node.port) as assoc:
        status = assoc.send_c_store(ds)
    assert status.Status == StoreStatus.CANNOT_UNDERSTAND
    assert "SOPInstanceUID is not a DICOM UID" in status.ErrorComment

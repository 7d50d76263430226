"""The node's association acceptor over raw sockets: what a broken or hostile peer gets back.

A real SCU (pynetdicom, DCMTK) never sends these PDUs, so they are written byte by byte here;
every case ends with the node still serving (C-ECHO)."""
from __future__ import annotations

import io
import struct

import pydicom
import pytest
from pydicom.uid import UID
from pynetdicom.dsutils import decode

from ichnode.dicom import dimse, ul
from ichnode.dicom.status import StoreStatus
from ichnode.synth import SynthSpec, write_series

from tests.rawpeer import CT_CONTEXT, associate, command, read_pdu
from tests.reliability.peers import association, echo_ok, start_node

@pytest.fixture(scope="module")
def node(tmp_path_factory):
    node = start_node(tmp_path_factory.mktemp("acceptor"), **{"node.network_timeout_s": 5.0})
    yield node
    assert echo_ok(node.port), "the node stopped answering C-ECHO"
    node.stop()


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

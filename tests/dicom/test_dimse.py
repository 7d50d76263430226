"""Command sets and PDUs the receiver encodes itself, checked against pynetdicom's encoders."""
import io
import struct

import pytest
from pydicom.uid import UID
from pynetdicom.dimse_messages import C_ECHO_RQ, C_ECHO_RSP, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dsutils import encode
from pynetdicom.dimse_primitives import C_ECHO, C_STORE

from ichnode.dicom import dimse, ul

CT = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"


def pynetdicom_command(message_class, primitive) -> bytes:
    message = message_class()
    message.primitive_to_message(primitive)
    return encode(message.command_set, True, True)


def store_request(sop_uid: str, message_id: int = 7) -> bytes:
    rq = C_STORE()
    rq.MessageID, rq.AffectedSOPClassUID, rq.AffectedSOPInstanceUID = message_id, UID(CT), UID(sop_uid)
    rq.Priority, rq.DataSet = 0, io.BytesIO(b"\x08\x00")  # a dataset follows
    return pynetdicom_command(C_STORE_RQ, rq)


@pytest.mark.parametrize("sop_uid", ["1.2.3.4", "1.2.826.0.1.3680043.8.498.123456789012345678901"])
def test_store_request_decodes(sop_uid):
    command = dimse.decode_command(store_request(sop_uid, 513))
    assert command == dimse.Command(dimse.C_STORE_RQ, 513, True, CT, sop_uid)


@pytest.mark.parametrize("status, comment", [(0x0000, None), (0xA700, "disk full"),
                                             (0xC000, "x" * 70)])
def test_store_response_same_bytes_as_pynetdicom(status, comment):
    request = dimse.decode_command(store_request("1.2.3.45", 9))
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo, rsp.Status = 9, status
    rsp.AffectedSOPClassUID, rsp.AffectedSOPInstanceUID = UID(CT), UID("1.2.3.45")
    if comment:
        rsp.ErrorComment = comment[:64]
    assert dimse.response(request, status, comment) == pynetdicom_command(C_STORE_RSP, rsp)


def test_echo_response_same_bytes_as_pynetdicom():
    rq = C_ECHO()
    rq.MessageID, rq.AffectedSOPClassUID = 3, UID(VERIFICATION)
    request = dimse.decode_command(pynetdicom_command(C_ECHO_RQ, rq))
    assert request.field == dimse.C_ECHO_RQ and not request.has_dataset
    rsp = C_ECHO()
    rsp.MessageIDBeingRespondedTo, rsp.Status, rsp.AffectedSOPClassUID = 3, 0, UID(VERIFICATION)
    assert dimse.response(request, 0x0000) == pynetdicom_command(C_ECHO_RSP, rsp)


@pytest.mark.parametrize("data", [b"\x00\x00\x00\x01", store_request("1.2.3")[:-5],
                                  struct.pack("<HHI", 0x0008, 0x0016, 2) + b"1.",
                                  struct.pack("<HHI", 0x0000, 0x0100, 2) + b"\x01\x00"])
def test_bad_command_sets_are_refused(data):
    with pytest.raises(dimse.BadCommand):
        dimse.decode_command(data)


@pytest.mark.parametrize("peer_max", [0, 16384, 64, 7])
def test_p_data_fragments_to_the_peer_maximum(peer_max):
    payload = bytes(range(256)) * 2
    data = ul.p_data(3, payload, peer_max)
    fragments, offset = [], 0
    while offset < len(data):
        pdu_type, _, length = struct.unpack_from(">BBL", data, offset)
        assert pdu_type == ul.P_DATA and (not peer_max or length <= max(peer_max, 7))
        fragments += list(ul.pdv_items(bytearray(data[offset + 6:offset + 6 + length])))
        offset += 6 + length
    assert b"".join(bytes(f[3]) for f in fragments) == payload
    assert all(ctx == 3 and is_command for ctx, is_command, _, _ in fragments)
    assert [last for *_, last, _ in fragments] == [False] * (len(fragments) - 1) + [True]


@pytest.mark.parametrize("body", [b"\x00\x00\x00\x09\x01\x03abc", b"\x00\x00\x00\x01\x01",
                                  b"\x00\x00"])
def test_bad_pdv_items_are_refused(body):
    with pytest.raises(ul.BadPDU):
        list(ul.pdv_items(bytearray(body)))

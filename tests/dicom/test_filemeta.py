"""The directly encoded file meta header equals pydicom's / pynetdicom's, byte for byte."""
import io

import pydicom
import pytest
from pydicom.uid import UID
from pynetdicom.dsutils import create_file_meta, encode_file_meta

from ichnode.dicom.filemeta import file_meta_bytes

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.parametrize("sop_uid", ["1.2.3.4", "1.2.826.0.1.3680043.8.498.12345678901234567890123456789"])
@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.70",
                                    "1.2.840.10008.1.2.4.201"])
def test_same_bytes_as_pynetdicom(sop_uid, syntax):
    expected = encode_file_meta(create_file_meta(sop_class_uid=UID(CT), sop_instance_uid=UID(sop_uid),
                                                 transfer_syntax=UID(syntax)))
    assert file_meta_bytes(CT, sop_uid, syntax) == b"\x00" * 128 + b"DICM" + expected


def test_reads_back_as_a_dicom_file():
    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CT, "1.2.3.45", "CT"
    body = io.BytesIO()
    pydicom.dcmwrite(body, ds, implicit_vr=False, little_endian=True)
    read = pydicom.dcmread(io.BytesIO(file_meta_bytes(CT, "1.2.3.45", "1.2.840.10008.1.2.1") +
                                      body.getvalue()))
    assert read.file_meta.MediaStorageSOPInstanceUID == "1.2.3.45"
    assert read.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert read.Modality == "CT"


@pytest.mark.parametrize("bad", ["", "1." * 40])
def test_rejects_values_it_cannot_encode(bad):
    with pytest.raises(ValueError):
        file_meta_bytes(CT, bad, "1.2.840.10008.1.2.1")

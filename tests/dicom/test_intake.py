"""The C-STORE header check reads the same identifiers in every transfer syntax a peer may use,
and finds a truncated Pixel Data without decoding pixels."""
import copy

import pydicom
import pytest
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian, RLELossless)
from pynetdicom.dsutils import encode

from ichnode.dicom.intake import Instance, Refused, inspect_instance
from ichnode.dicom.status import StoreStatus
from ichnode.synth import SynthSpec, write_series


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("intake")
    truth = write_series(folder, SynthSpec(subtype="none", matrix=64, seed=3))
    ds = pydicom.dcmread(folder / truth["files"][0])
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SeriesDescription = "Schädel nativ"
    return ds


def encoded(ds, syntax) -> bytes:
    ds = copy.deepcopy(ds)
    if syntax == RLELossless:
        ds.compress(RLELossless, generate_instance_uid=False)
    elif syntax == ExplicitVRBigEndian:
        ds.PixelData = ds.pixel_array.astype(">i2" if ds.PixelRepresentation else ">u2").tobytes()
    implicit, little = syntax == ImplicitVRLittleEndian, syntax != ExplicitVRBigEndian
    return encode(ds, implicit, little, syntax == DeflatedExplicitVRLittleEndian)


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                                    DeflatedExplicitVRLittleEndian, RLELossless])
def test_every_transfer_syntax_gives_the_same_instance(source, syntax):
    verdict = inspect_instance(encoded(source, syntax), syntax, source.SOPClassUID, 1 << 30)
    assert verdict == Instance(source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID,
                               source.SOPClassUID, "CT", "Schädel nativ", int(source.ImagesInAcquisition))


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_truncated_pixel_data_is_refused(source, syntax):
    data = encoded(source, syntax)
    verdict = inspect_instance(data[:-2], syntax, source.SOPClassUID, 1 << 30)
    assert isinstance(verdict, Refused) and verdict.status == StoreStatus.CANNOT_UNDERSTAND
    assert "truncated instance" in verdict.reason


def test_no_pixel_data_is_refused(source):
    ds = copy.deepcopy(source)
    del ds.PixelData
    verdict = inspect_instance(encoded(ds, ExplicitVRLittleEndian), ExplicitVRLittleEndian,
                               source.SOPClassUID, 1 << 30)
    assert verdict == Refused(StoreStatus.CANNOT_UNDERSTAND, "no Pixel Data")


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_sequences_of_undefined_length_are_walked_over(source, syntax):
    ds = copy.deepcopy(source)
    inner = pydicom.Dataset()
    inner.ReferencedSOPInstanceUID = "1.2.3"
    inner.PurposeOfReferenceCodeSequence = [pydicom.Dataset()]
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = "9.9.9"
    item.SourceImageSequence = [inner]
    ds.ReferencedImageSequence = [item, pydicom.Dataset()]
    for element in (ds["ReferencedImageSequence"], item["SourceImageSequence"]):
        element.is_undefined_length = True
        for child in element.value:
            child.is_undefined_length_sequence_item = True
    data = encoded(ds, syntax)
    assert b"\xfe\xff\xdd\xe0" in data or b"\xff\xfe\xe0\xdd" in data  # a sequence delimiter
    verdict = inspect_instance(data, syntax, source.SOPClassUID, 1 << 30)
    assert verdict == Instance(source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID,
                               source.SOPClassUID, "CT", "Schädel nativ", int(source.ImagesInAcquisition))
    cut = data.index(b"9.9.9")  # the walk must not run off an unterminated sequence
    refused = inspect_instance(data[:cut], syntax, source.SOPClassUID, 1 << 30)
    assert isinstance(refused, Refused) and refused.status == StoreStatus.CANNOT_UNDERSTAND

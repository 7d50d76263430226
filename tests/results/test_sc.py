import numpy as np
from pydicom.uid import SecondaryCaptureImageStorage

from ichnode.domain import ModelInfo
from ichnode.results.codes import NOTICE
from ichnode.results.render import key_slices
from ichnode.results.sc import SERIES_DESCRIPTION, build_sc

SW = "0.1.0-test"


def test_sc_key_images(analysis, roundtrip, dciodvfy):
    src = analysis.volume.datasets
    f = analysis.findings
    expected = key_slices(f.labels, f.heatmap, 3)
    scs = build_sc(analysis, software_version=SW)
    assert len(scs) == 3 == len(expected)
    for number, (z, sc) in enumerate(zip(expected, scs), start=1):
        path, ds = roundtrip(sc)
        assert ds.SOPClassUID == SecondaryCaptureImageStorage
        assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3 and ds.BitsAllocated == 8
        assert ds.BurnedInAnnotation == "YES" and ds.ImageComments == NOTICE
        assert ds.SeriesDescription == SERIES_DESCRIPTION and ds.Manufacturer == "ichnode"
        assert ds.SoftwareVersions == SW and ds.InstanceNumber == number
        assert ds.StudyInstanceUID == src[z].StudyInstanceUID and ds.PatientID == src[z].PatientID
        assert ds.SeriesInstanceUID == scs[0].SeriesInstanceUID != src[z].SeriesInstanceUID
        ref = ds.SourceImageSequence[0]
        assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (src[z].SOPClassUID, src[z].SOPInstanceUID)
        assert (ds.Rows, ds.Columns) == (src[z].Rows, src[z].Columns)

        pixels = ds.pixel_array
        assert pixels.shape == (src[z].Rows, src[z].Columns, 3)
        # The fixture puts air (black after windowing) in the top rows: the banner must show there.
        top = pixels[:6].astype(int)
        assert ((top[..., 0] > 100) & (top[..., 1] > 100) & (top[..., 2] < 80)).sum() >= 10
        # The lesion contour is drawn in the IPH colour somewhere on the image.
        assert (np.all(pixels == (255, 0, 0), axis=-1)).any()
        assert dciodvfy(path) == []


def test_sc_not_analysed_is_empty(analysis_not_analysed):
    assert build_sc(analysis_not_analysed) == []


def test_sc_nothing_found_shows_middle_slice(analysis_empty):
    scs = build_sc(analysis_empty)
    assert len(scs) == 1
    middle = analysis_empty.volume.datasets[len(analysis_empty.volume.datasets) // 2]
    assert scs[0].SourceImageSequence[0].ReferencedSOPInstanceUID == middle.SOPInstanceUID


def test_sc_uids_deterministic(volume, analysis, build_analysis):
    a = [s.SOPInstanceUID for s in build_sc(analysis)]
    b = [s.SOPInstanceUID for s in build_sc(analysis)]
    assert a == b and len(set(a)) == 3
    other = build_analysis(volume, model=ModelInfo("test-engine", "2.0.0"))
    assert not set(a) & {s.SOPInstanceUID for s in build_sc(other)}

import dataclasses

import highdicom as hd
import numpy as np
from pydicom.uid import SegmentationStorage

from ichnode.domain import Analysis, Findings, ModelInfo
from ichnode.results.seg import SERIES_DESCRIPTION, build_seg

SW = "0.1.0-test"


def test_seg_content(analysis, roundtrip, dciodvfy):
    src = analysis.volume.datasets
    assert all("PixelData" not in ds for ds in src)  # headers only: highdicom must not need pixels
    path, seg = roundtrip(build_seg(analysis, software_version=SW))

    assert seg.SOPClassUID == SegmentationStorage and seg.Modality == "SEG"
    assert seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == src[0].StudyInstanceUID
    assert seg.PatientID == src[0].PatientID and seg.PatientName == src[0].PatientName
    assert seg.SeriesInstanceUID != src[0].SeriesInstanceUID
    assert seg.FrameOfReferenceUID == src[0].FrameOfReferenceUID
    assert seg.SeriesDescription == SERIES_DESCRIPTION and "not for diagnostic use" in seg.SeriesDescription
    assert seg.Manufacturer == "ichnode" and seg.SoftwareVersions == SW

    segments = seg.SegmentSequence
    assert [s.SegmentLabel for s in segments] == ["IPH", "IVH", "SAH"]
    assert [s.SegmentNumber for s in segments] == [1, 2, 3]
    for s in segments:
        assert s.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
        assert s.SegmentedPropertyTypeCodeSequence[0].CodeValue == "50960005"
        assert s.SegmentAlgorithmType == "AUTOMATIC"
        alg = s.SegmentationAlgorithmIdentificationSequence[0]
        assert (alg.AlgorithmName, alg.AlgorithmVersion) == ("test-engine", "1.2.3")
    assert segments[0].AnatomicRegionSequence[0].CodeValue == "12738006"  # brain
    assert segments[1].AnatomicRegionSequence[0].CodeValue == "35764002"  # brain ventricle (IVH)

    referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    labels = analysis.findings.labels
    lesion_slices = {src[z].SOPInstanceUID for z in np.nonzero(labels.any(axis=(1, 2)))[0]}
    assert lesion_slices <= referenced <= {ds.SOPInstanceUID for ds in src}

    # Empty frames omitted; the empty SAH segment is described but has no frames.
    frame_segments = [f.SegmentIdentificationSequence[0].ReferencedSegmentNumber
                      for f in seg.PerFrameFunctionalGroupsSequence]
    assert 3 not in frame_segments and {1, 2} <= set(frame_segments)
    assert seg.NumberOfFrames == sum(int((labels[z] == k).any()) for z in range(len(src)) for k in (1, 2))

    pixels = hd.seg.Segmentation.from_dataset(seg).get_pixels_by_source_instance(
        [ds.SOPInstanceUID for ds in src], combine_segments=True, skip_overlap_checks=True
    )
    assert (pixels == labels).all()
    assert dciodvfy(path) == []


def test_seg_all_empty_keeps_frames(analysis_empty, roundtrip, dciodvfy):
    path, seg = roundtrip(build_seg(analysis_empty, software_version=SW))
    n_slices = len(analysis_empty.volume.datasets)
    assert len(seg.SegmentSequence) == 3
    assert seg.NumberOfFrames == 3 * n_slices  # "segmented, nothing found"
    assert not np.asarray(seg.pixel_array).any()
    assert dciodvfy(path) == []


def test_seg_none_when_not_eligible(analysis, analysis_not_analysed):
    assert build_seg(analysis_not_analysed, software_version=SW) is None
    no_classes = dataclasses.replace(
        analysis.findings, segment_classes=(), labels=np.zeros_like(analysis.findings.labels)
    )
    assert build_seg(dataclasses.replace(analysis, findings=no_classes), software_version=SW) is None


def test_seg_rejects_undescribed_labels(analysis):
    bad = dataclasses.replace(analysis.findings, segment_classes=("IPH",))
    try:
        build_seg(dataclasses.replace(analysis, findings=bad), software_version=SW)
    except ValueError as exc:
        assert "segment_classes" in str(exc)
    else:
        raise AssertionError("label 2 without a class must be refused")


def test_seg_uids_deterministic(volume, analysis, build_analysis):
    a = build_seg(analysis, software_version=SW)
    b = build_seg(analysis, software_version="another-node-version")
    assert (a.SOPInstanceUID, a.SeriesInstanceUID) == (b.SOPInstanceUID, b.SeriesInstanceUID)
    other: Analysis = build_analysis(volume, model=ModelInfo("test-engine", "2.0.0"))
    c = build_seg(other, software_version=SW)
    assert c.SOPInstanceUID != a.SOPInstanceUID and c.SeriesInstanceUID != a.SeriesInstanceUID


def test_seg_algorithm_is_the_engine_that_produced_the_labels(analysis, roundtrip):
    """Findings merged from several engines: the segments name the labels' engine (Findings.sources),
    not an engine recorded only for other values."""
    labeller = ModelInfo("labeller", "4.5")
    f = dataclasses.replace(analysis.findings, sources={Findings.LABELS: labeller,
                                                        Findings.probability_key("any"): ModelInfo("cls", "1")})
    _, seg = roundtrip(build_seg(dataclasses.replace(analysis, findings=f), software_version=SW))
    for s in seg.SegmentSequence:
        alg = s.SegmentationAlgorithmIdentificationSequence[0]
        assert (alg.AlgorithmName, alg.AlgorithmVersion) == ("labeller", "4.5")

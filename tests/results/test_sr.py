import copy
import dataclasses

import pytest
from pydicom.uid import Comprehensive3DSRStorage, SegmentationStorage, SecondaryCaptureImageStorage

from ichnode.config import ResultsConfig
from ichnode.domain import Analysis, Findings, ModelInfo
from ichnode.results import build_results
from ichnode.results.codes import NOTICE
from ichnode.results.seg import build_seg
from ichnode.results.sr import SERIES_DESCRIPTION, build_sr

SW = "0.1.0-test"


def _meaning(item, attr="ConceptNameCodeSequence"):
    return item[attr][0].CodeMeaning if attr in item else None


def _groups(sr) -> dict:
    """Measurement groups of a TID 1500 report, by tracking identifier."""
    imaging = next(i for i in sr.ContentSequence if _meaning(i) == "Imaging Measurements")
    out = {}
    for group in imaging.ContentSequence:
        tid = next(i.TextValue for i in group.ContentSequence if _meaning(i) == "Tracking Identifier")
        out[tid] = group
    return out


def _nums(group) -> dict:
    """(concept meaning, method meaning or None) -> numeric value of the NUM items of a group."""
    out = {}
    for item in group.ContentSequence:
        if item.ValueType != "NUM":
            continue
        method = next((_meaning(m, "ConceptCodeSequence") for m in item.get("ContentSequence", [])
                       if _meaning(m) == "Measurement Method"), None)
        key = (_meaning(item), method)
        assert key not in out, f"ambiguous measurement {key}"
        out[key] = float(item.MeasuredValueSequence[0].NumericValue)
    return out


def _algorithm(item) -> tuple[str, str] | None:
    """(Algorithm Name, Algorithm Version) of the TID 4019 items (DCM 111001 / 111003) directly in an item."""
    found = {i.ConceptNameCodeSequence[0].CodeValue: i.TextValue for i in item.get("ContentSequence", [])
             if i.ValueType == "TEXT" and i.ConceptNameCodeSequence[0].CodingSchemeDesignator == "DCM"}
    if "111001" not in found:
        return None
    return found["111001"], found["111003"]


def _codes(group) -> dict:
    return {_meaning(i): i.ConceptCodeSequence[0] for i in group.ContentSequence if i.ValueType == "CODE"}


def _texts(group) -> dict:
    return {_meaning(i): i.TextValue for i in group.ContentSequence if i.ValueType == "TEXT"}


def test_sr_measurements_match_quantities(analysis, roundtrip, dciodvfy):
    q, f = analysis.quantities, analysis.findings
    seg = build_seg(analysis, software_version=SW)
    path, sr = roundtrip(build_sr(analysis, seg, software_version=SW))
    src = analysis.datasets

    assert sr.SOPClassUID == Comprehensive3DSRStorage and sr.Modality == "SR"
    assert sr.StudyInstanceUID == src[0].StudyInstanceUID and sr.PatientID == src[0].PatientID
    assert sr.SeriesInstanceUID not in (src[0].SeriesInstanceUID, seg.SeriesInstanceUID)
    assert sr.SeriesDescription == SERIES_DESCRIPTION and sr.Manufacturer == "ichnode"
    assert sr.SoftwareVersions == SW
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"

    groups = _groups(sr)
    assert set(groups) == {"All hemorrhage", "IPH Intraparenchymal hemorrhage",
                           "IVH Intraventricular hemorrhage", "SAH Subarachnoid hemorrhage", "Largest lesion"}
    total = _nums(groups["All hemorrhage"])
    assert total[("Volume", "Voxel count of segmentation")] == pytest.approx(q.total_ml)
    assert total[("Probability", None)] == pytest.approx(f.probabilities["any"])
    assert total[("Volume", "Model regression estimate")] == pytest.approx(f.model_volume_ml)
    assert total[("Number of lesions", None)] == q.lesion_count
    assert total[("Prognosis probability (research only)", None)] == pytest.approx(f.prognosis_probability)

    seg_numbers = {}
    for name, label in (("IPH", "IPH Intraparenchymal hemorrhage"), ("IVH", "IVH Intraventricular hemorrhage"),
                        ("SAH", "SAH Subarachnoid hemorrhage")):
        nums = _nums(groups[label])
        assert nums[("Volume", "Voxel count of segmentation")] == pytest.approx(q.volume_ml_by_class[name])
        assert nums[("Probability", None)] == pytest.approx(f.probabilities[name])
        ref = next(i for i in groups[label].ContentSequence if _meaning(i) == "Referenced Segment")
        sop = ref.ReferencedSOPSequence[0]
        assert sop.ReferencedSOPInstanceUID == seg.SOPInstanceUID and sop.ReferencedSOPClassUID == SegmentationStorage
        seg_numbers[name] = int(sop.ReferencedSegmentNumber)
    assert seg_numbers == {"IPH": 1, "IVH": 2, "SAH": 3}
    assert _codes(groups["IPH Intraparenchymal hemorrhage"])["Intraparenchymal hemorrhage location"].CodeValue == "795002"

    largest = _nums(groups["Largest lesion"])
    a = q.abc2
    assert largest[("Volume", "Voxel count of segmentation")] == pytest.approx(q.largest_lesion_ml)
    assert largest[("Volume", "ABC/2 ellipsoid estimate (Kothari)")] == pytest.approx(a.volume_ml)
    assert largest[("Major Axis", "ABC/2 ellipsoid estimate (Kothari)")] == pytest.approx(a.a_mm)
    assert largest[("Perpendicular Axis", "ABC/2 ellipsoid estimate (Kothari)")] == pytest.approx(a.b_mm)
    assert largest[("Height", "ABC/2 ellipsoid estimate (Kothari)")] == pytest.approx(a.c_mm)
    assert largest[("ABC/2 volume to segmented volume ratio", None)] == pytest.approx(q.abc2_ratio)
    source = next(i for i in groups["Largest lesion"].ContentSequence if i.ValueType == "IMAGE")
    assert source.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src[a.slice_index].SOPInstanceUID

    for group in groups.values():  # algorithm and notice in every group, algorithm on every measurement
        texts, coded = _texts(group), _codes(group)
        assert (texts["Algorithm Name"], texts["Algorithm Version"]) == ("test-engine", "1.2.3")
        assert coded["Usage notice"].CodeMeaning == NOTICE
        measurements = [i for i in group.ContentSequence if i.ValueType == "NUM"]
        assert measurements and all(_algorithm(m) == ("test-engine", "1.2.3") for m in measurements)

    evidence = {i.ReferencedSOPInstanceUID
                for s in sr.CurrentRequestedProcedureEvidenceSequence
                for series in s.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}
    assert evidence == {ds.SOPInstanceUID for ds in src} | {seg.SOPInstanceUID}
    assert dciodvfy(path) == []


def test_sr_without_seg_has_no_segment_references(analysis, roundtrip):
    _, sr = roundtrip(build_sr(analysis, None, software_version=SW))
    for group in _groups(sr).values():
        assert all(_meaning(i) != "Referenced Segment" for i in group.ContentSequence)
    assert _nums(_groups(sr)["IVH Intraventricular hemorrhage"])[("Probability", None)] == pytest.approx(0.61)


def test_sr_not_analysed_says_why(analysis_not_analysed, roundtrip, dciodvfy):
    a: Analysis = dataclasses.replace(analysis_not_analysed, not_analysed="Gantry tilt 30\u00b0 too large")
    path, sr = roundtrip(build_sr(a, None, software_version=SW))
    groups = _groups(sr)
    assert list(groups) == ["Not analysed"]
    group = groups["Not analysed"]
    assert _codes(group)["Analysis status"].CodeMeaning == "Not analysed"
    assert _codes(group)["Usage notice"].CodeMeaning == NOTICE
    reason = _texts(group)["Reason not analysed"]
    assert reason.startswith("Not analysed: Gantry tilt 30") and reason.isascii()
    assert not _nums(group)
    assert sr.StudyInstanceUID == a.datasets[0].StudyInstanceUID
    evidence = {i.ReferencedSOPInstanceUID
                for s in sr.CurrentRequestedProcedureEvidenceSequence
                for series in s.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}
    assert evidence == {ds.SOPInstanceUID for ds in a.datasets}
    assert "not for diagnostic use" in sr.SeriesDescription
    assert dciodvfy(path) == []


def test_sr_needs_source_datasets():
    with pytest.raises(ValueError):
        build_sr(Analysis(volume=None, datasets=(), not_analysed="no images"), None, software_version=SW)


def test_sr_uids_deterministic(volume, analysis, analysis_not_analysed, build_analysis):
    a = build_sr(analysis, None, software_version=SW)
    b = build_sr(analysis, build_seg(analysis, software_version=SW), software_version=SW)
    assert (a.SOPInstanceUID, a.SeriesInstanceUID) == (b.SOPInstanceUID, b.SeriesInstanceUID)
    other = build_analysis(volume, model=ModelInfo("test-engine", "2.0.0"))
    c = build_sr(other, None, software_version=SW)
    assert c.SOPInstanceUID != a.SOPInstanceUID and c.SeriesInstanceUID != a.SeriesInstanceUID
    n1 = build_sr(analysis_not_analysed, None, software_version=SW)
    n2 = build_sr(analysis_not_analysed, None, software_version=SW)
    assert n1.SOPInstanceUID == n2.SOPInstanceUID != a.SOPInstanceUID


def test_build_results_order(analysis, analysis_not_analysed):
    objs = build_results(analysis, software_version=SW)
    assert [o.SOPClassUID for o in objs] == [
        SegmentationStorage, Comprehensive3DSRStorage, *[SecondaryCaptureImageStorage] * 3
    ]
    assert len({o.SeriesInstanceUID for o in objs}) == 3
    assert len({o.StudyInstanceUID for o in objs} | {analysis.datasets[0].StudyInstanceUID}) == 1
    only = build_results(analysis_not_analysed, software_version=SW)
    assert [o.SOPClassUID for o in only] == [Comprehensive3DSRStorage]


def test_results_config_sets_series_numbers_and_key_images(analysis):
    config = ResultsConfig(key_slices=1, seg_series_number=7001, sr_series_number=7002,
                           sc_series_number=7003)
    objs = build_results(analysis, software_version=SW, config=config)
    assert [int(o.SeriesNumber) for o in objs] == [7001, 7002, 7003]


def test_sources_missing_type2_attributes_still_work(volume, build_analysis, roundtrip, dciodvfy):
    headers = []
    for ds in volume.datasets:
        ds = copy.deepcopy(ds)
        for kw in ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyTime"):
            delattr(ds, kw)
        headers.append(ds)
    a = build_analysis(dataclasses.replace(volume, datasets=tuple(headers)))
    objs = build_results(a, software_version=SW)
    assert len(objs) == 5 and "PatientBirthDate" not in a.datasets[0]  # sources left untouched
    path, sr = roundtrip(objs[1])
    assert sr.PatientBirthDate == "" and sr.PatientID == headers[0].PatientID
    assert dciodvfy(path) == []


def test_each_value_names_its_algorithm_and_absent_heads_give_no_number(volume, build_analysis, roundtrip,
                                                                         dciodvfy):
    """A probability and a volume carry the producing algorithm's name and version in their own content;
    a head that produced nothing (an untrained prognosis head: None) leaves no measurement at all."""
    a = build_analysis(volume, model=ModelInfo("resnet3d_multitask", "1.0.0"))
    a = dataclasses.replace(a, findings=dataclasses.replace(a.findings, prognosis_probability=None))
    path, sr = roundtrip(build_sr(a, None, software_version=SW))
    total = _groups(sr)["All hemorrhage"]
    by_name = {(_meaning(i), next((_meaning(m, "ConceptCodeSequence") for m in i.get("ContentSequence", [])
                                   if _meaning(m) == "Measurement Method"), None)): i
               for i in total.ContentSequence if i.ValueType == "NUM"}
    for key in (("Probability", None), ("Volume", "Model regression estimate")):
        assert _algorithm(by_name[key]) == ("resnet3d_multitask", "1.0.0")
        names = {i.ConceptNameCodeSequence[0].CodeMeaning for i in by_name[key].ContentSequence}
        assert {"Algorithm Name", "Algorithm Version"} <= names
    all_nums = [i for g in _groups(sr).values() for i in g.ContentSequence if i.ValueType == "NUM"]
    assert not [i for i in all_nums if _meaning(i) == "Prognosis probability (research only)"]
    assert dciodvfy(path) == []


def test_merged_values_name_their_own_engines(volume, build_analysis, roundtrip, dciodvfy):
    """Findings merged from several engines: each measurement names the engine recorded for it in
    Findings.sources, the groups the engine that segmented; a class only a classifier names (SDH here,
    no segment) is that classifier's group."""
    seg_model, cls_model, reg_model = ModelInfo("seg-net", "1"), ModelInfo("cls-net", "2"), ModelInfo("reg-net", "3")
    a = build_analysis(volume, model=seg_model)
    f = a.findings
    probabilities = {**f.probabilities, "SDH": 0.3}
    sources = {Findings.LABELS: seg_model, Findings.MODEL_VOLUME: reg_model, Findings.PROGNOSIS: reg_model,
               **dict.fromkeys(map(Findings.probability_key, probabilities), cls_model)}
    a = dataclasses.replace(a, findings=dataclasses.replace(f, probabilities=probabilities, sources=sources))
    path, sr = roundtrip(build_sr(a, build_seg(a, software_version=SW), software_version=SW))

    def expected(concept, method):
        if concept == "Probability":
            return ("cls-net", "2")
        if method == "Model regression estimate" or concept.startswith("Prognosis"):
            return ("reg-net", "3")
        return ("seg-net", "1")  # measured on the label volume

    seen = set()
    for label, group in _groups(sr).items():
        texts = _texts(group)
        group_algorithm = ("cls-net", "2") if label.startswith("SDH") else ("seg-net", "1")
        assert (texts["Algorithm Name"], texts["Algorithm Version"]) == group_algorithm, label
        for item in group.ContentSequence:
            if item.ValueType == "NUM":
                method = next((_meaning(m, "ConceptCodeSequence") for m in item.ContentSequence
                               if _meaning(m) == "Measurement Method"), None)
                assert _algorithm(item) == expected(_meaning(item), method), (label, _meaning(item), method)
                seen.add(_algorithm(item))
    assert seen == {("seg-net", "1"), ("cls-net", "2"), ("reg-net", "3")}
    assert dciodvfy(path) == []

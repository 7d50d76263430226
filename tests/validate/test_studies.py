"""Matching studies to labels (no engine run): RSNA by SOP UID, CQ500 by PatientID, worst series."""
from ichnode.ids import digest
from ichnode.domain import Priority
from ichnode.validate.labels import LabelSet
from ichnode.validate.studies import SeriesOutcome, match_studies


def series(study, uid, sops, outcome="analysed", priority=Priority.ROUTINE, total=0.0, pid="P1"):
    return SeriesOutcome(study, uid, pid, frozenset(sops), len(sops), outcome,
                         reason="" if outcome == "analysed" else "only 1 slice(s)",
                         segment_classes=("ICH",), volumes={"ICH": total}, total_ml=total,
                         priority=priority if outcome == "analysed" else Priority.NOT_ANALYSED)


def test_rsna_matches_sop_uids_with_and_without_prefix():
    labels = LabelSet("x.csv", "rsna", "SOPInstanceUID", {
        "abc": {"any": False}, "def": {"any": True, "SDH": True}, "1.2.9": {"any": False},
        "gone": {"any": True}})
    found = [series("S1", "A", {"ID_abc", "ID_def", "ID_zzz"}), series("S2", "B", {"1.2.9"}, pid="P2"),
             series("S3", "C", {"9.9"}, pid="P3")]
    studies, missing = match_studies(found, labels)
    by_key = {s.key: s for s in studies}
    assert by_key["ID_abc"].label["any"] is True and by_key["ID_abc"].labelled_slices == 2
    assert by_key["ID_1.2.9"].label["any"] is False
    assert by_key[f"study-{digest('S3')}"].outcome == "unlabelled"
    assert missing == ["gone"]


def test_cq500_by_patient_and_worst_series():
    labels = LabelSet("r.csv", "cq500", "PatientID", {"CQ500-CT-0": {"any": False},
                                                       "CQ500-CT-1": {"any": True}})
    found = [series("S1", "A", {"1"}, total=2.0, priority=Priority.HIGH, pid="CQ500-CT-0"),
             series("S1", "B", {"2"}, total=50.0, priority=Priority.HIGH, pid="CQ500-CT-0"),
             series("S1", "C", {"3"}, total=0.0, pid="CQ500-CT-0"),
             series("S2", "D", {"4"}, outcome="not analysed", pid="CQ500-CT-1")]
    studies, missing = match_studies(found, labels)
    ct0, ct1 = studies
    assert ct0.key == "CQ500-CT-0" and ct0.chosen.series_uid == "B" and "worst of 3" in ct0.reason
    assert ct1.outcome == "not analysed" and "only 1 slice" in ct1.reason and ct1.chosen is None
    assert missing == []

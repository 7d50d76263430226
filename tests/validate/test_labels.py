"""Label files: the three formats, majority votes, and one-line errors naming file and row."""
import pytest

from ichnode.validate.labels import LabelError, combined, merge_slices, read_labels

CQ500_HEADER = "name,Category," + ",".join(
    f"R{r}:{c}" for r in (1, 2, 3) for c in ("ICH", "IPH", "IVH", "SDH", "EDH", "SAH", "Fracture"))


def cq500_row(name, *readers):
    """readers: three 6-tuples (ICH, IPH, IVH, SDH, EDH, SAH); fracture is always 0."""
    return name + ",B1," + ",".join(",".join(str(v) for v in (*r, 0)) for r in readers)


def test_cq500_majority_of_three(tmp_path):
    path = tmp_path / "reads.csv"
    path.write_text("\n".join([
        CQ500_HEADER,
        # CQ500-CT-0 as in the real file: reader 1 says ICH + SAH, readers 2 and 3 say nothing
        cq500_row("CQ500-CT-0", (1, 0, 0, 0, 0, 1), (0,) * 6, (0,) * 6),
        # 2 of 3 say IPH, 3 of 3 ICH, 1 of 3 SDH
        cq500_row("CQ500-CT-1", (1, 1, 0, 1, 0, 0), (1, 1, 0, 0, 0, 0), (1, 0, 0, 0, 0, 0)),
    ]) + "\n")
    labels = read_labels(path)
    assert (labels.format, labels.match_by, labels.readers) == ("cq500", "PatientID", 3)
    ct0, ct1 = labels.labels["CQ500-CT-0"], labels.labels["CQ500-CT-1"]
    assert ct0 == {"any": False, "IPH": False, "IVH": False, "SAH": False, "SDH": False, "EDH": False}
    assert ct1["any"] is True and ct1["IPH"] is True and ct1["SDH"] is False
    assert combined(ct1) is False


def test_cq500_blank_reader_and_tie(tmp_path):
    path = tmp_path / "reads.csv"
    row = cq500_row("X", (1, 1, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0), (1, 1, 0, 0, 0, 0))
    cells = row.split(",")
    cells[2 + 14] = ""  # R3:ICH blank: 1 of 2 remaining readers -> tie -> negative
    cells[2 + 15] = ""  # R3:IPH blank
    path.write_text(CQ500_HEADER + "\n" + ",".join(cells) + "\n")
    label = read_labels(path).labels["X"]
    assert label["any"] is False and label["IPH"] is False


def test_cq500_real_file():
    from tests.helpers import SHARED_DATA

    reads = SHARED_DATA / "cq500-reads.csv"
    if not reads.is_file():
        pytest.skip(f"real data absent: {reads}")
    labels = read_labels(reads)
    assert len(labels.labels) == 491
    assert labels.labels["CQ500-CT-0"]["any"] is False  # 1 of 3 readers
    assert labels.labels["CQ500-CT-1"]["any"] is True


def test_rsna_slices(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("ID,Label\n"
                    "ID_63eb1e259_epidural,0\nID_63eb1e259_any,1\nID_63eb1e259_subdural,1\n"
                    "ID_1.2.3.4_any,0\nID_1.2.3.4_subarachnoid,0\n")
    labels = read_labels(path)
    assert (labels.format, labels.match_by) == ("rsna", "SOPInstanceUID")
    assert labels.labels["63eb1e259"] == {"EDH": False, "any": True, "SDH": True}
    study = merge_slices([labels.labels["63eb1e259"], labels.labels["1.2.3.4"]])
    assert study["any"] is True and study["SDH"] is True and study["SAH"] is False
    assert study["IPH"] is None and combined(study) is True


def test_plain(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("study_uid,any,IPH,sdh\n1.2.3,1,1,\n1.2.4,0,0,0\n")
    labels = read_labels(path)
    assert (labels.format, labels.match_by) == ("plain", "StudyInstanceUID")
    assert labels.labels["1.2.3"] == {"any": True, "IPH": True, "IVH": None, "SAH": None, "SDH": None,
                                      "EDH": None}
    assert labels.labels["1.2.4"]["SDH"] is False


@pytest.mark.parametrize("text, message", [
    ("patient,bleed\nA,1\n", "not a known label format"),
    ("", "empty file"),
    ("study_uid,any\n1.2.3,yes\n", "row 2: any must be 0 or 1"),
    ("study_uid,any\n1.2.3,1\n1.2.3,0\n", "row 3: study_uid listed twice"),
    ("study_uid,any\n1.2.3,\n", "row 2: any must be 0 or 1"),
    ("study_uid,any,xyz\n1.2.3,1,0\n", "row 1: unknown column"),
    ("ID,Label\nID_abc_brain,1\n", "row 2: ID must be ID_<id>_<subtype>"),
    (CQ500_HEADER + "\nX,B1,1\n", "row 2: 3 fields"),
])
def test_errors_name_file_and_row(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(LabelError) as err:
        read_labels(path)
    assert str(path) in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)

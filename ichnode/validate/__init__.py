"""`ichnode validate`: local acceptance testing of the configured engines on labelled studies.

labels (label files) -> studies (analyse the folder as the node would, match studies to labels,
choose one series per study) -> predict (per-row calls) -> metrics (+ stats: Wilson, DeLong) ->
masks (truth volumes) -> report (report.md, studies.csv, summary.json, roc_<row>.png, terminal).
Entry point: ichnode.validate.run.validate. Nothing here is imported at package import time.
"""

DEFINITIONS = """\
- Positive call for a row: the engines' segmented volume of the row's classes >= triage.flag_volume_ml \
(and > 0) or their probability >= triage.flag_probability (the node's flag rule).
- ROC score: the probability where the engines give one for the row, else the segmented volume in mL.
- "any" counts every hemorrhage class. An engine whose class is the undifferentiated "ICH" (the \
classical engine) answers "any" only: its subtype rows are "not reported by the engine", its ICH is \
never counted as IPH. An engine that segments some classes only reports those. "SDH or EDH" counts \
SDH, EDH and an extra-axial class (name containing EXTRA, or EAH, e.g. BLAST-CT); its label is \
positive when the SDH or the EDH label is. Other unknown classes (e.g. oedema) are not hemorrhage.
- Labels: CQ500 reads: strict majority of the readers (2 of 3; a tie is negative), matched by \
PatientID; RSNA 2019: a study is positive when any of its slices is, matched by SOP Instance UID \
(with or without the ID_ prefix); plain CSV: matched by Study Instance UID.
- One series per study: of the study's eligible series, the one the node would judge worst (highest \
priority by ichnode.triage.priority, then largest total volume). A study with no eligible series is \
"not analysed" (with the reason), an unlabelled study is listed: both are left out of the metrics.
- Intervals: 95 %; sensitivity and specificity by the Wilson score interval; AUC (Mann-Whitney, ties \
count one half) with the DeLong variance and a normal interval clipped to [0, 1] (needs 2 positive \
and 2 negative studies; degenerate when the scores separate the classes perfectly).
- Volume error: the engines' "any" volume of the chosen series minus the truth mask's volume (NIfTI \
matched by grid: same shape, corner voxels within 2 mm; DICOM SEG by its referenced series).
- Studies are shown by the label file's key; unlabelled ones by study-<first 12 hex of \
SHA-256(StudyInstanceUID)>. Patient names and IDs read from DICOM are never written."""

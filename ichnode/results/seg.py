"""DICOM Segmentation (binary) of the hemorrhage classes, built with highdicom.

One segment per entry of findings.segment_classes, numbered like the label values (label k is
segment k), so that SR references and label volumes stay in step.
"""
from __future__ import annotations

import logging

import highdicom as hd
import numpy as np
from pydicom import Dataset

from ichnode.domain import Analysis, Findings
from ichnode.ids import digest, result_uid, source_key
from ichnode.results import codes
from ichnode.results.render import CLASS_COLORS

log = logging.getLogger(__name__)

SERIES_DESCRIPTION = "AI triage ICH segmentation - not for diagnostic use"
CONTENT_LABEL = "ICH_SEG"  # CS: upper case, <= 16 chars


# Type 2 Patient/Study attributes that highdicom reads from the source without a default; anonymised
# or sloppy sources may lack them entirely, which must not cost the patient their result.
_TYPE2_SOURCE = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex",
                 "AccessionNumber", "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName")


def source_headers(datasets) -> list[Dataset]:
    """Source headers as highdicom needs them: missing type 2 attributes added empty (on copies).

    Anonymised series (CQ500 among them) may lack FrameOfReferenceUID, which the SEG requires;
    one derived from the series stands in, the same for every slice (viewers align the SEG by the
    referenced instances).
    """
    out = []
    for ds in datasets:
        missing = [kw for kw in _TYPE2_SOURCE if kw not in ds]
        no_frame = "FrameOfReferenceUID" not in ds
        if missing or no_frame:
            # New top-level element dict sharing the elements (copy.copy would share the dict).
            patched = Dataset()
            for elem in ds:
                patched.add(elem)
            for kw in missing:
                setattr(patched, kw, None)
            if no_frame:
                patched.FrameOfReferenceUID = result_uid(ds.SeriesInstanceUID, "", "frame-of-reference")
            ds = patched
        out.append(ds)
    return out


def seg_uids(analysis: Analysis) -> tuple[str, str]:
    """(series UID, SOP instance UID) of the SEG of this analysis."""
    series, version = source_key(analysis.datasets), analysis.findings.model.version
    return result_uid(series, version, "seg-series"), result_uid(series, version, "seg")


def segment_descriptions(analysis: Analysis) -> list[hd.seg.SegmentDescription]:
    # The engine that produced the labels, which after a merge need not be every value's engine.
    model = analysis.findings.source(Findings.LABELS)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=codes.ascii_text(model.name, 64), family=codes.ALGORITHM_FAMILY_AI,
        version=codes.ascii_text(model.version, 64), source="ichnode",
    )
    series = analysis.volume.series_uid
    out = []
    for number, name in enumerate(analysis.findings.segment_classes, start=1):
        desc = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=name,
            segmented_property_category=codes.MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
            segmented_property_type=codes.HEMORRHAGE,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            # Same class on the same series gets the same tracking UID across re-runs and models,
            # so longitudinal tools can follow it.
            tracking_uid=result_uid(series, "", f"track-{name}"),
            tracking_id=f"{name} ({codes.CLASS_NAMES[name]})",
            anatomic_regions=[codes.CLASS_SITES[name]],
            display_color=hd.color.CIELabColor.from_rgb(*CLASS_COLORS.get(name, (255, 0, 0))),
        )
        # Free-text description naming the class (the property type is the generic Hemorrhage).
        desc.SegmentDescription = codes.CLASS_NAMES[name]
        out.append(desc)
    return out


def build_seg(
    analysis: Analysis,
    *,
    software_version: str,
    series_number: int = 9001,
    manufacturer: str = "ichnode",
    manufacturer_model_name: str = "ichnode",
    device_serial_number: str = "1",
) -> Dataset | None:
    """Binary SEG of the analysis, or None when there is nothing to segment.

    None for a not-analysed series and for an engine that reports no segment classes.
    Segments that are empty (the class is described but has no voxel) are kept, with no frames,
    so segment numbers always equal label values. An all-empty label volume is written with all
    frames (highdicom cannot omit every frame): a SEG saying "segmented, nothing found".
    Source images are referenced by their headers only; highdicom needs no source pixel data.
    """
    findings, volume = analysis.findings, analysis.volume
    if findings is None or volume is None or analysis.not_analysed:
        return None
    if not findings.segment_classes:
        log.info("no segment classes, no SEG", extra={"series": digest(volume.series_uid)})
        return None
    labels = np.asarray(findings.labels)
    if labels.shape != volume.hu.shape or labels.shape[0] != len(volume.datasets):
        raise ValueError(f"label volume {labels.shape} does not match the series {volume.hu.shape}")
    n = len(findings.segment_classes)
    if int(labels.max(initial=0)) > n:
        raise ValueError(
            f"label value {int(labels.max())} has no entry in segment_classes {findings.segment_classes}"
        )

    series_uid, sop_uid = seg_uids(analysis)
    all_empty = not labels.any()
    seg = hd.seg.Segmentation(
        source_images=source_headers(volume.datasets),
        pixel_array=labels.astype(np.uint8, copy=False),  # label-map input, split per segment
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(analysis),
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=manufacturer,
        manufacturer_model_name=manufacturer_model_name,
        software_versions=software_version,
        device_serial_number=device_serial_number,
        content_label=CONTENT_LABEL,
        content_description=SERIES_DESCRIPTION,
        series_description=SERIES_DESCRIPTION,
        omit_empty_frames=not all_empty,
    )
    return seg

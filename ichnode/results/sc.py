"""Secondary Capture key images: brain window, overlays and the notice burned in (highdicom SCImage).

For viewers that show neither SEG nor SR: the picture itself carries the result and the notice.
"""
from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from ichnode.domain import Analysis
from ichnode.ids import result_uid, source_key
from ichnode.results import codes
from ichnode.results.render import BRAIN_WINDOW, key_slices, render_key_image

SERIES_DESCRIPTION = "AI triage ICH key images - not for diagnostic use"


def _orientation(ds: Dataset) -> tuple[str, str]:
    """Patient orientation letters (row, column direction) from ImageOrientationPatient."""
    iop = [float(v) for v in ds.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0])]
    letters = (("L", "R"), ("P", "A"), ("H", "F"))  # +x, -x / +y, -y / +z, -z (LPS)

    def main_axis(vec: list[float]) -> str:
        i = int(np.argmax(np.abs(vec)))
        return letters[i][0] if vec[i] >= 0 else letters[i][1]

    return main_axis(iop[:3]), main_axis(iop[3:6])


def sc_uids(analysis: Analysis, index: int) -> tuple[str, str]:
    """(series UID, SOP instance UID) of the index-th key image of this analysis."""
    series, version = source_key(analysis.datasets), analysis.findings.model.version
    return result_uid(series, version, "sc-series"), result_uid(series, version, "sc", index)


def build_sc(
    analysis: Analysis,
    *,
    n_key_slices: int = 3,
    software_version: str | None = None,
    series_number: int = 9003,
    manufacturer: str = "ichnode",
    manufacturer_model_name: str = "ichnode",
) -> list[Dataset]:
    """One RGB secondary capture per key slice, in slice order; [] for a not-analysed series."""
    findings, volume = analysis.findings, analysis.volume
    if findings is None or volume is None or analysis.not_analysed:
        return []
    labels, heat = findings.labels, findings.heatmap
    out = []
    for number, z in enumerate(key_slices(labels, heat, n_key_slices), start=1):
        ref = volume.datasets[z]
        rgb = render_key_image(
            volume.hu[z],
            labels[z] if labels is not None else None,
            findings.segment_classes,
            heat[z] if heat is not None else None,
        )
        series_uid, sop_uid = sc_uids(analysis, number)
        extra = {"software_versions": software_version} if software_version else {}
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=ref,
            pixel_array=rgb,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=sop_uid,
            instance_number=number,
            manufacturer=manufacturer,
            manufacturer_model_name=manufacturer_model_name,
            pixel_spacing=tuple(float(v) for v in ref.PixelSpacing) if "PixelSpacing" in ref else None,
            patient_orientation=_orientation(ref),
            transfer_syntax_uid=ExplicitVRLittleEndian,
            series_description=SERIES_DESCRIPTION,
            **extra,
        )
        sc.BurnedInAnnotation = "YES"  # the notice banner is part of the pixels
        # Lets validators see an unpaired body part, so Laterality (type 2C) is rightly absent.
        sc.BodyPartExamined = ref.get("BodyPartExamined") or "HEAD"
        sc.ImageComments = codes.NOTICE
        sc.DerivationDescription = (
            f"Slice {z + 1} of {len(volume.datasets)}, window {BRAIN_WINDOW[0]:g}/{BRAIN_WINDOW[1]:g} HU, "
            f"contours of {', '.join(findings.segment_classes) or 'no classes'}, heatmap, notice banner"
        )
        item = Dataset()
        item.ReferencedSOPClassUID = ref.SOPClassUID
        item.ReferencedSOPInstanceUID = ref.SOPInstanceUID
        sc.SourceImageSequence = [item]
        out.append(sc)
    return out

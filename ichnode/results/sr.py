"""Comprehensive 3D SR (TID 1500 Measurement Report) of an analysis, built with highdicom.

Analysed series: one summary group (all hemorrhage), one group per class (referencing its SEG
segment when a SEG exists) and one group for the largest lesion's ABC/2 measurements.
Not-analysed series: one group that says "Not analysed" and why - never silence.
Every group carries the algorithm identification and the not-for-diagnostic-use notice, and every
measurement (each probability, volume, count and length) names the algorithm and version that produced
it in its own TID 4019 items (DCM 111001 "Algorithm Name", 111003 "Algorithm Version"), so a value read
on its own still says where it came from. With several engines merged, that is the engine recorded for the
value in Findings.sources (a probability from a classifier, volumes from the engine that segmented). A value the engine did not produce (an untrained head reports
None) is left out, never written as a number.
"""
from __future__ import annotations

import math
import numbers

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.coding import Code

from ichnode.domain import ALL_CLASSES, Analysis, Findings
from ichnode.ids import result_uid, source_key
from ichnode.results import codes
from ichnode.results.seg import source_headers

SERIES_DESCRIPTION = "AI triage ICH report - not for diagnostic use"
NOT_ANALYSED_VERSION = "not-analysed"  # stands in for the model version in UIDs of such SRs

_Group = (
    hd.sr.MeasurementsAndQualitativeEvaluations | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations
)


def _source_series_uid(analysis: Analysis) -> str:
    if analysis.volume is not None:
        return analysis.volume.series_uid
    if analysis.datasets:
        return str(analysis.datasets[0].SeriesInstanceUID)
    raise ValueError("analysis has neither a volume nor source datasets: nothing to report on")


def sr_uids(analysis: Analysis) -> tuple[str, str]:
    """(series UID, SOP instance UID) of the SR of this analysis."""
    _source_series_uid(analysis)  # raises when there is nothing to report on
    series = source_key(analysis.datasets)
    version = analysis.findings.model.version if analysis.findings else NOT_ANALYSED_VERSION
    return result_uid(series, version, "sr-series"), result_uid(series, version, "sr")


class _Builder:
    """Holds what every group needs (algorithm, tracking UIDs, SEG) while building the groups."""

    def __init__(self, analysis: Analysis, seg: Dataset | None):
        self.analysis = analysis
        self.seg = seg
        self.series = _source_series_uid(analysis)
        f = analysis.findings
        self.version = f.model.version if f else NOT_ANALYSED_VERSION
        self.notice = hd.sr.QualitativeEvaluation(codes.USAGE_NOTICE, codes.NOT_FOR_DIAGNOSTIC_USE)

    def tracking(self, key: str, label: str) -> hd.sr.TrackingIdentifier:
        return hd.sr.TrackingIdentifier(
            uid=result_uid(self.series, self.version, f"sr-track-{key}"),
            identifier=codes.ascii_text(label, 64),
        )

    def algorithm(self, source: str) -> hd.sr.AlgorithmIdentification | None:
        """TID 4019 of the engine that produced the value under provenance key `source` (Findings.sources);
        a fresh one per use, since content items are not shared between sequences."""
        f = self.analysis.findings
        if f is None:
            return None
        model = f.source(source)
        return hd.sr.AlgorithmIdentification(name=codes.ascii_text(model.name),
                                             version=codes.ascii_text(model.version))

    def measurement(self, name: Code, value: float | None, unit: Code, method: Code | None = None, *,
                    source: str):
        """A NUM item naming the engine that produced it (`source`: its provenance key)."""
        if value is None or not math.isfinite(float(value)):
            return None  # not produced (e.g. an untrained head): nothing, rather than a number
        # Counts stay integers; everything else a Python float (highdicom rejects numpy scalars).
        value = int(value) if isinstance(value, numbers.Integral) else float(value)
        return hd.sr.Measurement(name=name, value=value, unit=unit, method=method,
                                 algorithm_id=self.algorithm(source))

    def group(self, key, label, *, finding_type=None, measurements=(), evaluations=(), site=None,
              segment_number=None, source_indices=(), source: str = Findings.LABELS) -> _Group:
        """A measurement group; its own algorithm is that of `source`: the segmentation by default."""
        kwargs = dict(
            tracking_identifier=self.tracking(key, label),
            finding_type=finding_type,
            finding_category=codes.MORPHOLOGICALLY_ABNORMAL_STRUCTURE if finding_type else None,
            algorithm_id=self.algorithm(source),
            finding_sites=[hd.sr.FindingSite(site)] if site is not None else None,
            measurements=[m for m in measurements if m is not None] or None,
            qualitative_evaluations=[*evaluations, self.notice],
        )
        if segment_number is not None and self.seg is not None:
            ref = hd.sr.ReferencedSegment(
                sop_class_uid=self.seg.SOPClassUID,
                sop_instance_uid=self.seg.SOPInstanceUID,
                segment_number=segment_number,
                source_series=hd.sr.SourceSeriesForSegmentation(self.series),
            )
            return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=ref, **kwargs)
        datasets = self.analysis.datasets
        sources = [
            hd.sr.SourceImageForMeasurementGroup(datasets[i].SOPClassUID, datasets[i].SOPInstanceUID)
            for i in source_indices
            if 0 <= i < len(datasets)
        ]
        return hd.sr.MeasurementsAndQualitativeEvaluations(source_images=sources or None, **kwargs)

    # --- analysed -----------------------------------------------------------------------------
    def summary_group(self) -> _Group:
        f, q = self.analysis.findings, self.analysis.quantities
        ml, labels = codes.UNIT_ML, Findings.LABELS
        measurements = [
            self.measurement(codes.PROBABILITY, f.probabilities.get("any"), codes.UNIT_ONE,
                             source=Findings.probability_key("any")),
            self.measurement(codes.VOLUME, q.total_ml if q else None, ml, codes.METHOD_SEGMENTATION,
                             source=labels),
            self.measurement(codes.NUMBER_OF_LESIONS, q.lesion_count if q else None, codes.UNIT_ONE,
                             source=labels),
            self.measurement(codes.VOLUME, f.model_volume_ml, ml, codes.METHOD_MODEL_REGRESSION,
                             source=Findings.MODEL_VOLUME),
            # Research only: the concept's meaning says so, for whoever reads the value.
            self.measurement(codes.PROGNOSIS_PROBABILITY, f.prognosis_probability, codes.UNIT_ONE,
                             source=Findings.PROGNOSIS),
        ]
        evaluations = [hd.sr.QualitativeEvaluation(codes.ANALYSIS_STATUS, codes.ANALYSED)]
        if "IPH" not in self._class_keys():
            evaluations += self._iph_location()
        return self.group(
            "total", "All hemorrhage", finding_type=codes.CLASS_CODES["ICH"], site=codes.BRAIN,
            measurements=measurements, evaluations=evaluations,
        )

    def _class_keys(self) -> list[str]:
        f = self.analysis.findings
        present = set(f.segment_classes) | {k for k in f.probabilities if k in ALL_CLASSES}
        return [c for c in ALL_CLASSES if c in present]

    def _iph_location(self) -> list[hd.sr.QualitativeEvaluation]:
        loc = self.analysis.findings.iph_location
        if not loc:
            return []
        # An unknown location word still gets reported, as a local code (SH value: 16 chars).
        text = codes.ascii_text(loc, 64)
        value = codes.IPH_LOCATIONS.get(loc) or Code(text.upper()[:16], codes.SCHEME, text)
        return [hd.sr.QualitativeEvaluation(codes.IPH_LOCATION, value)]

    def class_groups(self) -> list[_Group]:
        f, q = self.analysis.findings, self.analysis.quantities
        out = []
        for name in self._class_keys():
            number = f.segment_classes.index(name) + 1 if name in f.segment_classes else None
            volume = q.volume_ml_by_class.get(name) if (q and number) else None
            probability = Findings.probability_key(name)
            out.append(self.group(
                name, f"{name} {codes.CLASS_NAMES[name]}",
                finding_type=codes.CLASS_CODES[name], site=codes.CLASS_SITES[name],
                measurements=[
                    self.measurement(codes.VOLUME, volume, codes.UNIT_ML, codes.METHOD_SEGMENTATION,
                                     source=Findings.LABELS),
                    self.measurement(codes.PROBABILITY, f.probabilities.get(name), codes.UNIT_ONE,
                                     source=probability),
                ],
                evaluations=self._iph_location() if name == "IPH" else [],
                segment_number=number,
                # A class only a classifier names (no segment) is that classifier's finding.
                source=Findings.LABELS if number else probability,
            ))
        return out

    def largest_lesion_group(self) -> _Group | None:
        q = self.analysis.quantities
        if q is None or q.abc2 is None:
            return None
        a = q.abc2
        mm, ml, abc2 = codes.UNIT_MM, codes.UNIT_ML, codes.METHOD_ABC2
        labels = Findings.LABELS  # everything here is measured on the label volume
        return self.group(
            "largest", "Largest lesion", finding_type=codes.HEMORRHAGE, site=codes.BRAIN,
            measurements=[
                self.measurement(codes.VOLUME, q.largest_lesion_ml, ml, codes.METHOD_SEGMENTATION, source=labels),
                self.measurement(codes.VOLUME, a.volume_ml, ml, abc2, source=labels),
                self.measurement(codes.MAJOR_AXIS, a.a_mm, mm, abc2, source=labels),
                self.measurement(codes.PERPENDICULAR_AXIS, a.b_mm, mm, abc2, source=labels),
                self.measurement(codes.HEIGHT, a.c_mm, mm, abc2, source=labels),
                self.measurement(codes.ABC2_RATIO, q.abc2_ratio, codes.UNIT_RATIO, source=labels),
            ],
            source_indices=[a.slice_index],  # the slice on which A and B were measured
        )

    # --- not analysed -------------------------------------------------------------------------
    def not_analysed_group(self) -> _Group:
        group = self.group(
            # No finding type: a coded "Intracranial hemorrhage" here could be misread as a finding.
            "not-analysed", "Not analysed", site=codes.BRAIN,
            evaluations=[hd.sr.QualitativeEvaluation(codes.ANALYSIS_STATUS, codes.NOT_ANALYSED)],
        )
        reason = hd.sr.TextContentItem(
            name=codes.REASON_NOT_ANALYSED,
            value=codes.ascii_text(f"Not analysed: {self.analysis.not_analysed}"),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
        group[0].ContentSequence.append(reason)
        return group


def build_sr(
    analysis: Analysis,
    seg: Dataset | None,
    *,
    software_version: str,
    series_number: int = 9002,
    manufacturer: str = "ichnode",
    manufacturer_model_name: str = "ichnode",
) -> Dataset:
    """TID 1500 report of the analysis; seg is the SEG from build_seg (or None) to reference."""
    if not analysis.datasets:
        raise ValueError("no source datasets: an SR needs the source study to reference")
    b = _Builder(analysis, seg)
    if analysis.findings is not None and not analysis.not_analysed:
        groups = [b.summary_group(), *b.class_groups()]
        largest = b.largest_lesion_group()
        if largest is not None:
            groups.append(largest)
        model = analysis.findings.model
        model_name = codes.ascii_text(f"{model.name} {model.version}", 64)
    else:
        if not analysis.not_analysed:
            raise ValueError("analysis has neither findings nor a not-analysed reason")
        groups = [b.not_analysed_group()]
        model_name = manufacturer_model_name

    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=result_uid("ichnode", "", "device-observer"),
        name="ichnode",
        manufacturer_name=manufacturer,
        model_name=model_name,
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=hd.sr.ObserverContext(
                observer_type=codes.DEVICE_OBSERVER, observer_identifying_attributes=device
            )
        ),
        procedure_reported=codes.CT_OF_HEAD,
        imaging_measurements=groups,
    )
    evidence = source_headers(analysis.datasets) + ([seg] if seg is not None else [])
    series_uid, sop_uid = sr_uids(analysis)
    return hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=manufacturer,
        is_complete=True,
        is_final=False,  # PRELIMINARY: machine triage, never a final report
        series_description=SERIES_DESCRIPTION,
        manufacturer_model_name=manufacturer_model_name,
        software_versions=software_version,
        coding_schemes=[codes.CODING_SCHEME],
    )

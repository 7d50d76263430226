"""Frozen types passed between pipeline stages.

Arrays are (z, y, x): z runs along the slice normal (cross product of the row and column
direction cosines), in increasing position, so index 0 is the most caudal slice of an axial series.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import numpy as np
import pydicom

# Hemorrhage classes used in label volumes. "ICH" is the class of an engine that cannot tell
# subtypes apart (the classical engine); the next five are the RSNA subtypes; "EXTRA" is extra-axial
# hemorrhage of an engine that does not tell SDH from EDH (BLAST-CT).
SUBTYPES = ("IPH", "IVH", "SAH", "SDH", "EDH")
ALL_CLASSES = ("ICH",) + SUBTYPES + ("EXTRA",)


@dataclass(frozen=True)
class Volume:
    """One assembled series in Hounsfield units."""

    study_uid: str
    series_uid: str
    hu: np.ndarray  # float32 (z, y, x)
    spacing_mm: tuple[float, float, float]  # (slice spacing along normal, row spacing, column spacing)
    # Source headers in the same order as hu's z axis, PixelData removed (writers reference them).
    datasets: tuple[pydicom.Dataset, ...]
    tilt_deg: float = 0.0

    @property
    def voxel_ml(self) -> float:
        dz, dy, dx = self.spacing_mm
        return dz * dy * dx / 1000.0


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str


@dataclass(frozen=True)
class Findings:
    """What an engine (or several, merged) says about one volume.

    `sources` records which model produced each value, so that a value merged from another engine
    is not reported under `model` (the engine whose labels these are). Its keys name the value's
    place in Findings: the class constants below, and probability_key(k) for probabilities[k].
    """

    # Provenance keys: each the name of the field holding the value (the merge reads them by name).
    # LABELS covers everything measured on the label volume (class volumes, total, lesion count,
    # largest lesion, ABC/2): those are computed from the labels, never merged on their own.
    LABELS: ClassVar[str] = "labels"
    HEATMAP: ClassVar[str] = "heatmap"
    IPH_LOCATION: ClassVar[str] = "iph_location"
    MODEL_VOLUME: ClassVar[str] = "model_volume_ml"
    PROGNOSIS: ClassVar[str] = "prognosis_probability"

    model: ModelInfo
    # uint8 (z, y, x); value k > 0 means class segment_classes[k - 1]
    labels: np.ndarray
    segment_classes: tuple[str, ...]  # each one of ALL_CLASSES
    probabilities: dict[str, float] = field(default_factory=dict)  # key: "any" or a class
    heatmap: np.ndarray | None = None  # float32 (z, y, x) in [0, 1], or None
    iph_location: str | None = None  # "deep" | "lobar" | "infratentorial"
    model_volume_ml: float | None = None  # a regression head's volume, where the engine has one
    prognosis_probability: float | None = None  # research only
    sources: Mapping[str, ModelInfo] = field(default_factory=dict)  # provenance key -> producing model

    @staticmethod
    def probability_key(key: str) -> str:
        """Provenance key of probabilities[key] ("any" or a class)."""
        return f"probabilities[{key}]"

    @staticmethod
    def produced_by(model: ModelInfo, values: Mapping[str, object], probabilities=()) -> dict[str, ModelInfo]:
        """An engine's sources: `model` for each probability key and for each provenance key of `values`
        whose value is not None (what a head did not produce is attributed to nobody)."""
        produced = [key for key, value in values.items() if value is not None]
        return dict.fromkeys([*produced, *map(Findings.probability_key, probabilities)], model)

    def source(self, key: str) -> ModelInfo:
        """The model that produced the value under provenance key `key`; `model` where none is recorded."""
        return self.sources.get(key, self.model)


@dataclass(frozen=True)
class ABC2:
    """Kothari ABC/2 of one lesion: A, B on the slice of largest area, C from the slices involved."""

    a_mm: float
    b_mm: float
    c_mm: float
    slice_index: int

    @property
    def volume_ml(self) -> float:
        return self.a_mm * self.b_mm * self.c_mm / 2.0 / 1000.0


@dataclass(frozen=True)
class Quantities:
    volume_ml_by_class: dict[str, float]
    total_ml: float
    lesion_count: int
    largest_lesion_ml: float
    abc2: ABC2 | None  # of the largest lesion

    @property
    def abc2_ratio(self) -> float | None:
        """ABC/2 volume over segmented volume of the same (largest) lesion."""
        if self.abc2 is None or self.largest_lesion_ml <= 0:
            return None
        return self.abc2.volume_ml / self.largest_lesion_ml


@dataclass(frozen=True)
class Analysis:
    """Everything the writers need for one series. Exactly one of findings / not_analysed is set."""

    volume: Volume | None
    datasets: tuple[pydicom.Dataset, ...]  # source headers (also for ineligible series)
    findings: Findings | None = None
    quantities: Quantities | None = None
    not_analysed: str | None = None


class Engine(Protocol):
    """An analysis engine: turns a Volume into Findings. Stable interface for all models."""

    info: ModelInfo

    def analyse(self, volume: Volume) -> Findings: ...


class Priority(str, enum.Enum):
    """A study's triage priority; the worklist sorts by rank (ichnode/triage/priority.py decides it)."""

    CRITICAL = "critical"
    HIGH = "high"
    NOT_ANALYSED = "not analysed"
    ROUTINE = "routine"

    @property
    def rank(self) -> int:
        return list(Priority).index(self)

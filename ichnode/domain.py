"""Frozen types passed between pipeline stages.

Arrays are (z, y, x): z runs along the slice normal (cross product of the row and column
direction cosines), in increasing position, so index 0 is the most caudal slice of an axial series.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

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
    """What an engine says about one volume."""

    model: ModelInfo
    # uint8 (z, y, x); value k > 0 means class segment_classes[k - 1]
    labels: np.ndarray
    segment_classes: tuple[str, ...]  # each one of ALL_CLASSES
    probabilities: dict[str, float] = field(default_factory=dict)  # key: "any" or a class
    heatmap: np.ndarray | None = None  # float32 (z, y, x) in [0, 1], or None
    iph_location: str | None = None  # "deep" | "lobar" | "infratentorial"
    model_volume_ml: float | None = None  # a regression head's volume, where the engine has one
    prognosis_probability: float | None = None  # research only


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

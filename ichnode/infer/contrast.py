"""Is a series contrast-enhanced? Read from the images, because many sites leave the contrast tags
empty and PACS auto-routing sends post-contrast and CT angiography series to the node too.

Iodine lifts the blood pool: enhanced arteries (circle of Willis, middle cerebral arteries) and
venous sinuses read 120 to 500 HU, where unenhanced blood and brain stay under 100 HU. What else
reaches that density inside the skull on a non-contrast scan is bone itself, its partial volume
along the inner table, and small calcifications (pineal gland, choroid plexus). So the evidence is
the volume of intracranial soft tissue at ENHANCED_HU, at least CLEARANCE_MM from the skull, on the
slices where the skull ring is wide (away from the skull base and the vertex, where thick slices
mix bone into every voxel).

Measured (`docs/models/real-ct.md`): the real CQ500-CT-0 series (injection protocol in its
description, no ContrastBolusAgent) 3.5 mL at 0.625 mm and 1.6 mL as a 5 mm reformat; the same
series with its enhancement removed 1.2 / 1.0 mL; the project's phantoms, which carry pineal and
choroid calcifications, 0.3 to 0.7 mL.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ichnode.domain import Volume
from ichnode.infer.skull import near_bone, normalised_gaussian, per_slice, skull_interior, working_step

ENHANCED_HU = (120.0, 600.0)
SKULL_HU = 300.0
SKULL_MIN_MM = 1.5  # the skull is thicker than 3 mm; enhanced vessels above SKULL_HU are thinner
CLEARANCE_MM = 2.0
WIDE_SLICE_FRACTION = 0.6  # of the widest slice's enclosed area
SMOOTHING_MM = 0.5


@dataclass(frozen=True)
class ContrastEvidence:
    enhanced_ml: float  # intracranial tissue at ENHANCED_HU away from the skull
    p999_hu: float  # 99.9th percentile of intracranial tissue away from the skull

    def sentence(self, threshold_ml: float) -> str:
        return (f"{self.enhanced_ml:.1f} mL of intracranial tissue at {ENHANCED_HU[0]:.0f}-"
                f"{ENHANCED_HU[1]:.0f} HU at least {CLEARANCE_MM:g} mm from the skull (enhanced "
                f"arteries and venous sinuses; non-contrast CT has under {threshold_ml:g} mL, "
                f"small calcifications); 99.9th percentile {self.p999_hu:.0f} HU")


def enhancement_evidence(volume: Volume) -> ContrastEvidence:
    step = working_step(volume.spacing_mm[1])
    hu = volume.hu[:, ::step, ::step]
    dz, px = volume.spacing_mm[0], volume.spacing_mm[1] * step
    # The skull without vessels: an opening removes dense structures thinner than the skull.
    skull = per_slice(ndimage.binary_opening, hu > SKULL_HU, SKULL_MIN_MM / px)
    inside = skull_interior(skull, px)
    area = inside.sum(axis=(1, 2))
    wide = area >= WIDE_SLICE_FRACTION * max(int(area.max()), 1)
    near_skull = near_bone(skull, (dz, px, px), CLEARANCE_MM, widen_neighbours=True)
    region = inside & ~near_skull & wide[:, None, None]
    if not region.any():
        return ContrastEvidence(0.0, float("nan"))
    sigma = (SMOOTHING_MM / dz, SMOOTHING_MM / px, SMOOTHING_MM / px)
    smooth = normalised_gaussian(hu, (hu > -100).astype(np.float32), sigma, fill=-1000.0)
    values = smooth[region]
    enhanced = (values >= ENHANCED_HU[0]) & (values <= ENHANCED_HU[1])
    return ContrastEvidence(enhanced_ml=float(enhanced.sum()) * dz * px * px / 1000.0,
                            p999_hu=float(np.percentile(values, 99.9)))


def is_enhanced(evidence: ContrastEvidence, threshold_ml: float) -> bool:
    return evidence.enhanced_ml >= threshold_ml

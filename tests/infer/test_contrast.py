"""Contrast recognised from the images: the real contrast-enhanced CQ500-CT-0 series (whose header
does not say so), the same series with its enhancement removed, and non-contrast phantoms."""
import warnings

import pytest

from ichnode.config import EligibilityConfig
from ichnode.infer.contrast import enhancement_evidence, is_enhanced
from ichnode.synth import SynthSpec, make_phantom

from tests.helpers import SHARED_DATA

CQ500 = SHARED_DATA / "cq500-ct0"
THRESHOLD_ML = EligibilityConfig().contrast_enhanced_ml


@pytest.fixture(scope="module")
def cq500():
    if not CQ500.is_dir():
        pytest.skip(f"real data absent: {CQ500} (see ../shared/data/README.md)")
    from ichnode.synth.insert import load_background_volume

    return load_background_volume(CQ500)


def test_the_real_contrast_series_is_recognised(cq500):
    evidence = enhancement_evidence(cq500)
    assert is_enhanced(evidence, THRESHOLD_ML)
    assert evidence.p999_hu > 150  # enhanced arteries; unenhanced blood stays under 100 HU


def test_the_real_series_with_its_enhancement_removed_is_not(cq500):
    from ichnode.synth.background import reformat_thick, remove_enhancement

    plain = remove_enhancement(cq500)
    assert enhancement_evidence(plain).enhanced_ml < enhancement_evidence(cq500).enhanced_ml / 2
    assert not is_enhanced(enhancement_evidence(plain), THRESHOLD_ML)
    assert not is_enhanced(enhancement_evidence(reformat_thick(plain, 5.0)[0]), THRESHOLD_ML)


@pytest.mark.parametrize("thickness_mm", [0.625, 5.0])
def test_non_contrast_phantoms_are_not(thickness_mm):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        phantom = make_phantom(SynthSpec(subtype="iph", volume_ml=20, thickness_mm=thickness_mm,
                                         matrix=256, seed=4))
    evidence = enhancement_evidence(phantom.to_volume())
    assert not is_enhanced(evidence, THRESHOLD_ML)  # their pineal and choroid calcifications
    assert evidence.p999_hu < 100

"""A DICOM SEG as truth: the node's own SEG of a series measures that series' volume."""
import pytest

from ichnode.config import load_config
from ichnode.offline import process_folder
from ichnode.synth import SynthSpec, write_series
from ichnode.validate.masks import load_masks


def test_seg_mask_volume(tmp_path):
    truth = write_series(tmp_path / "in", SynthSpec(subtype="iph", matrix=128, volume_ml=20, seed=1))
    (row,) = process_folder(tmp_path / "in", tmp_path / "out", load_config())
    (tmp_path / "out" / "notes.txt").write_text("not a mask")
    masks, skipped = load_masks(tmp_path / "out")
    (seg,) = [m for m in masks if m.kind == "seg"]
    assert seg.series_uid == truth["series_uid"]
    assert seg.volume_ml == pytest.approx(row["total_ml"], rel=1e-3)
    assert any(p.name == "notes.txt" for p, _ in skipped)

"""The real head-ct-png set (../shared/data/head-ct-png), when present: every labelled image reads."""
from __future__ import annotations

import numpy as np
import pytest

from ichnode.training.png_dataset import image_path, load_png_set, read_grey, read_labels

from .conftest import HEAD_CT_PNG

pytestmark = pytest.mark.skipif(not (HEAD_CT_PNG / "labels.csv").exists(),
                                reason=f"real data not present: {HEAD_CT_PNG} (see ../shared/data/README.md)")


def test_reads_all_150_labelled_images() -> None:
    rows = read_labels(HEAD_CT_PNG)
    assert len(rows) == 150 and sum(y for _, y in rows) == 75
    for image_id, _ in rows:
        g = read_grey(image_path(HEAD_CT_PNG, image_id))
        assert g.ndim == 2 and min(g.shape) >= 100 and 0 <= g.min() and g.max() <= 255 and g.max() > 100
    data = load_png_set(HEAD_CT_PNG, "resnet50_cls", 32)
    assert data.inputs.shape == (150, 3, 32, 32) and np.isfinite(data.inputs).all()

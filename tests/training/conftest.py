"""Fixtures of the training tests: one CPU thread, fixed seed, tiny PNG data sets in tmp_path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)

HEAD_CT_PNG = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "head-ct-png"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def make_png_set(root: Path, n: int = 8, seed: int = 0) -> Path:
    """``n`` tiny labelled PNGs (varying sizes, RGB / RGBA / L) in the head-ct-png layout; label 1 images
    have a bright blob (an easy task)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    rows = ["id,hemorrhage"]
    for i in range(1, n + 1):
        label = i % 2
        h, w = 24 + 2 * i, 30 + i
        a = (rng.random((h, w)) * 80).astype(np.uint8)
        if label:
            a[5:12, 6:14] = 230
        mode = ("RGB", "RGBA", "L")[i % 3]
        Image.fromarray(a).convert(mode).save(root / "images" / f"{i:03d}.png")
        rows.append(f"{i},{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def tiny_png_set(tmp_path: Path) -> Path:
    return make_png_set(tmp_path / "head-ct-png", n=8)

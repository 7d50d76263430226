"""Reader for the "Head CT - hemorrhage" PNG set (``head-ct-png/``: ``labels.csv`` + ``images/NNN.png``).

The PNGs are 8-bit, already windowed by whoever exported them, of varying sizes (about 130 to 1000 px),
RGB or RGBA. They carry no Hounsfield units and no pixel spacing. They enter the networks the way a CT
slice does - as HU through the registry's ``hu_to_input`` - after their grey levels are mapped back to HU:

1. **Grey scale.** RGBA is composited onto black (the CT background), then converted to one channel with
   Pillow's ITU-R 601-2 luma (``L``); the images are grey, so R = G = B and this is the identity.
2. **Grey level -> HU** (:func:`grey_to_hu`): the inverse of the window the images were exported with.
   That window is not documented anywhere (neither the data set nor the seed 004 paper, which only says
   the images come from Kaggle, name it); **the assumption is the brain window WL 40 / WW 80**, i.e. the
   export mapped [0, 80] HU linearly onto 0..255, so ``hu = v / 255 * 80`` (0 -> 0 HU, 255 -> 80 HU).
   Everything the export clipped stays clipped: air, bone and the head holder all come back as 0 or 80 HU.
3. **The network's input**, exactly as for a CT slice: ``spec.input.hu_to_input`` at the requested size
   (``ichnode.models.inputs``: padded with air to a square - air falls to 0 HU, i.e. black, in the brain
   window -, 8-bit brain window, resize, then the network's own scaling). The 8-bit quantisation there
   gives back the PNG's levels unchanged, so a PNG and the CT slice it was exported from give the same
   input. For ``vgg_wso`` (003) the window-setting layer windows the HU itself: only its brain-window
   channel sees the full 0..255 range, the wider windows see it compressed - a limit of 8-bit input.

Everything is done once, at load time: :class:`PngSet` holds the prepared float32 inputs in memory.
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ichnode.models.inputs import BRAIN_WINDOW, PNG_LEVELS
from ichnode.models.registry import ModelSpec, get

#: the window the PNGs are assumed to be exported with (low, high HU; see the module docstring)
EXPORT_WINDOW = BRAIN_WINDOW


def read_grey(path: str | Path) -> np.ndarray:
    """One PNG (or any Pillow image) as float32 (H, W) grey values in 0..255."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            im = Image.alpha_composite(background, rgba)
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            raise ValueError(f"{path}: {im.mode} images are not 8-bit; this reader expects windowed 8-bit PNGs")
        grey = im.convert("L")
        return np.asarray(grey, dtype=np.float32)


def grey_to_hu(grey: np.ndarray, window: tuple[float, float] = EXPORT_WINDOW) -> np.ndarray:
    """8-bit grey 0..255 -> HU, the inverse of an export that mapped ``window`` (low, high HU) onto 0..255."""
    low, high = window
    return (np.asarray(grey, dtype=np.float32) / np.float32(PNG_LEVELS)) * np.float32(high - low) + np.float32(low)


def prepare(spec: ModelSpec | str, grey: np.ndarray, image_size: int) -> np.ndarray:
    """8-bit grey (H, W) -> the network input (C, image_size, image_size) float32: :func:`grey_to_hu`, then
    the registry's ``hu_to_input`` - the path a CT slice takes."""
    spec = get(spec) if isinstance(spec, str) else spec
    if spec.input.dims != 2:
        raise ValueError(f"{spec.name} takes volumes, not 2D slices")
    hu = grey_to_hu(grey)
    return spec.input.hu_to_input(hu[None], (image_size, image_size)).array[0]


def read_labels(data_dir: str | Path) -> list[tuple[str, int]]:
    """``labels.csv`` (``id,hemorrhage``) -> [(id, 0/1), ...] in file order."""
    path = Path(data_dir) / "labels.csv"
    rows: list[tuple[str, int]] = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"id", "hemorrhage"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: expected columns id,hemorrhage, got {reader.fieldnames}")
        for row in reader:
            label = int(row["hemorrhage"].strip())
            if label not in (0, 1):
                raise ValueError(f"{path}: label {label!r} for id {row['id']!r} is not 0/1")
            rows.append((row["id"].strip(), label))
    if not rows:
        raise ValueError(f"{path}: no labelled images")
    return rows


def image_path(data_dir: str | Path, image_id: str) -> Path:
    """``images/NNN.png`` for id N (zero-padded to 3 digits), or ``images/<id>.png`` as written."""
    images = Path(data_dir) / "images"
    candidates = [images / f"{image_id}.png"]
    if image_id.isdigit():
        candidates.insert(0, images / f"{int(image_id):03d}.png")
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"no image for id {image_id!r} under {images}")


@dataclass
class PngSet:
    """Prepared inputs (N, C, S, S) float32, labels (N,) int64 and the image ids, all in memory."""

    ids: list[str]
    inputs: np.ndarray
    labels: np.ndarray
    model: str
    image_size: int

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: Sequence[int] | np.ndarray) -> "PngSet":
        index = np.asarray(index, dtype=np.int64)
        return PngSet([self.ids[i] for i in index], self.inputs[index], self.labels[index], self.model,
                      self.image_size)


def load_png_set(data_dir: str | Path, model: ModelSpec | str, image_size: int) -> PngSet:
    """Read every labelled image of ``data_dir`` and prepare it for ``model`` at ``image_size``."""
    spec = get(model) if isinstance(model, str) else model
    rows = read_labels(data_dir)
    inputs = np.stack([prepare(spec, read_grey(image_path(data_dir, i)), image_size) for i, _ in rows])
    labels = np.asarray([y for _, y in rows], dtype=np.int64)
    return PngSet([i for i, _ in rows], inputs.astype(np.float32, copy=False), labels, spec.name, image_size)

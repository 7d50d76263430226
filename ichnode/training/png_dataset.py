"""Reader for the "Head CT - hemorrhage" PNG set (``head-ct-png/``: ``labels.csv`` + ``images/NNN.png``).

The PNGs are 8-bit, already windowed by whoever exported them, of varying sizes (about 130 to 1000 px),
RGB or RGBA. They carry no Hounsfield units and no pixel spacing. Turning one into a network input:

1. **Grey scale.** RGBA is composited onto black (the CT background), then converted to one channel with
   Pillow's ITU-R 601-2 luma (``L``); the images are grey, so R = G = B and this is the identity.
2. **Square.** The image is zero-padded (black) to a centred square so resizing keeps the aspect ratio.
3. **Pseudo-HU.** Since the PNG was exported with some (unknown, presumably brain) window, intensity
   ``v`` in 0..255 is mapped linearly onto the brain window: ``hu = v / 255 * 80`` (0 -> 0 HU,
   255 -> 80 HU, i.e. WL 40 / WW 80). This is a convention, not a measurement.
4. **The network's own preparation.** The pseudo-HU slice goes through the registry's ``prepare_*``
   pipeline at the requested size, so training sees exactly what inference on a real CT slice sees:

   * ``resnet50_cls`` (004): brain window [0, 80] HU -> [0, 1], i.e. exactly ``v / 255``; 3 channels.
   * ``dtvit`` (001): brain window -> ``v / 255``, 3 channels, ImageNet mean/std. The paper's
     fixation-device removal is *not* applied (``remove_device=False``): it thresholds at -300 HU, and
     in a windowed PNG air and head holder have both been clipped to 0, so it has nothing to act on.
   * ``vgg_wso`` (003): the network windows HU itself (its WSO layer is initialised to the brain, subdural
     and soft-tissue windows), so it receives the pseudo-HU in [0, 80]. Only the brain window channel sees
     the full 0..255 range; the wider windows see it compressed. That is a limitation of 8-bit PNG input.

Everything is done once, at load time: :class:`PngSet` holds the prepared float32 inputs in memory.
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ichnode.models import preprocess as pp
from ichnode.models.registry import ModelSpec, get

#: (low, high) HU onto which 8-bit intensity 0..255 is mapped (the brain window, WL 40 / WW 80)
PSEUDO_HU_RANGE = (0.0, 80.0)


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


def pad_to_square(image: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """Zero-pad (H, W) to a centred (S, S) square, S = max(H, W)."""
    h, w = image.shape
    s = max(h, w)
    top, left = (s - h) // 2, (s - w) // 2
    out = np.full((s, s), fill, dtype=np.float32)
    out[top : top + h, left : left + w] = image
    return out


def to_pseudo_hu(grey: np.ndarray, hu_range: tuple[float, float] = PSEUDO_HU_RANGE) -> np.ndarray:
    """8-bit grey 0..255 -> pseudo Hounsfield units, linearly onto ``hu_range`` (default [0, 80])."""
    low, high = hu_range
    return (np.asarray(grey, dtype=np.float32) / np.float32(255.0)) * np.float32(high - low) + np.float32(low)


def prepare(spec: ModelSpec | str, grey: np.ndarray, image_size: int) -> np.ndarray:
    """8-bit grey (H, W) -> the network input (C, image_size, image_size) float32, as described above."""
    spec = get(spec) if isinstance(spec, str) else spec
    if spec.input.dims != 2:
        raise ValueError(f"{spec.name} takes volumes, not 2D slices")
    hu = to_pseudo_hu(pad_to_square(np.asarray(grey, dtype=np.float32)))
    if spec.name == "resnet50_cls":
        return pp.prepare_resnet50_cls(hu, size=image_size)
    if spec.name == "dtvit":
        return pp.prepare_dtvit(hu, size=image_size, remove_device=False)
    if spec.name == "vgg_wso":
        if image_size % 16:
            raise ValueError("vgg_wso needs an image size that is a multiple of 16")
        return pp.prepare_vgg_wso(hu, size=image_size)
    if spec.name == "dense_unet":
        return pp.prepare_dense_unet(hu, size=image_size)
    raise ValueError(f"no PNG preparation for {spec.name}")


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

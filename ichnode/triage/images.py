"""Key-slice PNGs for the worklist pages: the same rendering as the secondary captures
(brain window, contours, heatmap, burned-in notice), written beside the job's results."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ichnode.domain import Analysis
from ichnode.results.render import key_slices, render_key_image
from ichnode.store.spool import write_atomic

THUMBNAIL_PX = 192


def _png(rgb: np.ndarray, size: int | None = None) -> bytes:
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")
    if size is not None and max(img.size) > size:
        img.thumbnail((size, size), Image.LANCZOS)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def write_key_images(analysis: Analysis, out_dir: Path, n: int = 3) -> tuple[str | None, list[str]]:
    """(thumbnail file name, key image file names) written into out_dir; (None, []) when the
    series was not analysed. The thumbnail is the key slice with the largest labelled area."""
    findings, volume = analysis.findings, analysis.volume
    if findings is None or volume is None or analysis.not_analysed:
        return None, []
    labels, heat = findings.labels, findings.heatmap
    slices = key_slices(labels, heat, n)
    if not slices:
        return None, []
    out_dir.mkdir(parents=True, exist_ok=True)
    names, images = [], {}
    for z in slices:
        rgb = render_key_image(volume.hu[z], labels[z] if labels is not None else None,
                               findings.segment_classes, heat[z] if heat is not None else None)
        name = f"key_{z + 1:04d}.png"
        write_atomic(out_dir / name, _png(rgb))
        names.append(name)
        images[z] = rgb
    area = {z: int((labels[z] > 0).sum()) if labels is not None else 0 for z in slices}
    best = max(slices, key=lambda z: (area[z], -z))
    write_atomic(out_dir / "thumbnail.png", _png(images[best], THUMBNAIL_PX))
    return "thumbnail.png", names

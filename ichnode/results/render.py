"""Pure rendering helpers for key images: windowing, overlays, burned-in banner, key slice choice.

No I/O here: everything takes and returns numpy arrays, so it can be tested without DICOM.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ichnode.results.codes import BANNER_TEXT

BRAIN_WINDOW = (40.0, 80.0)  # (center, width) in HU

# Contour colour per class (RGB). Distinct hues so overlapping classes stay apart; also used as the
# SEG segments' recommended display colour.
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "ICH": (255, 0, 0),
    "IPH": (255, 0, 0),
    "IVH": (0, 160, 255),
    "SAH": (255, 200, 0),
    "SDH": (0, 255, 0),
    "EDH": (255, 0, 255),
    "EXTRA": (0, 255, 160),  # extra-axial, SDH or EDH not told apart: between their two hues
}
BANNER_FG = (255, 255, 0)
BANNER_BG = (0, 0, 0)


def window(hu: np.ndarray, center: float = BRAIN_WINDOW[0], width: float = BRAIN_WINDOW[1]) -> np.ndarray:
    """Linear window (DICOM PS3.3 C.11.2.1.2 style, simplified) of HU to uint8."""
    lo = center - width / 2.0
    scaled = (np.asarray(hu, dtype=np.float32) - lo) / float(width) * 255.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def jet(values: np.ndarray) -> np.ndarray:
    """Jet-like colormap of values in [0, 1] -> uint8 RGB (blue, cyan, yellow, red)."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0.0, 1.0)
    return np.rint(np.stack([r, g, b], axis=-1) * 255.0).astype(np.uint8)


def contour(mask: np.ndarray) -> np.ndarray:
    """Inner boundary of a 2D mask: pixels of the mask with a 4-neighbour outside it."""
    m = np.asarray(mask, dtype=bool)
    padded = np.pad(m, 1, constant_values=False)
    interior = (
        padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    )
    return m & ~interior


def overlay(
    hu2d: np.ndarray,
    labels2d: np.ndarray | None,
    segment_classes: tuple[str, ...] | list[str],
    heat2d: np.ndarray | None = None,
    *,
    alpha: float = 0.4,
    heat_floor: float = 0.1,
) -> np.ndarray:
    """Brain-windowed slice with heatmap (alpha-blended) and per-class label contours, RGB uint8."""
    gray = window(hu2d)
    rgb = np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)
    if heat2d is not None:
        heat = np.clip(np.asarray(heat2d, dtype=np.float32), 0.0, 1.0)
        # Opacity grows with the value so low, diffuse attention does not tint the whole brain.
        a = np.where(heat >= heat_floor, alpha * heat, 0.0)[..., None]
        rgb = rgb * (1.0 - a) + jet(heat).astype(np.float32) * a
    out = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    if labels2d is not None:
        for k, name in enumerate(segment_classes, start=1):
            edge = contour(labels2d == k)
            out[edge] = CLASS_COLORS.get(name, (255, 0, 0))
    return out


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except (TypeError, ValueError, OSError, ImportError):
        return ImageFont.load_default()


def _text_strip(text: str, width: int, start_size: int) -> Image.Image:
    """The text drawn on a banner-coloured strip no wider than width (if at all possible)."""
    size = max(6, start_size)
    font = _font(size)
    while size > 6 and font.getbbox(text)[2] - font.getbbox(text)[0] > width:
        size -= 1
        font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    strip = Image.new("RGB", (right - left + 2, bottom - top + 2), BANNER_BG)
    ImageDraw.Draw(strip).text((1 - left, 1 - top), text, fill=BANNER_FG, font=font)
    if strip.width > width:
        # Even the smallest font is too wide (tiny images): shrink the drawn strip, so the banner
        # stays complete - legible on real 512 px CT, at least visible on 64 px test images.
        scale = width / strip.width
        strip = strip.resize((width, max(2, round(strip.height * scale))), Image.LANCZOS)
    return strip


def burn_banner(rgb: np.ndarray, text: str = BANNER_TEXT) -> np.ndarray:
    """Copy of rgb with a banner bar and the notice text across the top rows."""
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")
    w, h = img.size
    margin = max(1, w // 64)
    strip = _text_strip(text, max(1, w - 2 * margin), start_size=h // 20)
    bar_h = min(h, strip.height + 2 * margin)
    ImageDraw.Draw(img).rectangle((0, 0, w - 1, bar_h - 1), fill=BANNER_BG)
    img.paste(strip, ((w - strip.width) // 2, margin))
    return np.asarray(img, dtype=np.uint8).copy()


def render_key_image(
    hu2d: np.ndarray,
    labels2d: np.ndarray | None,
    segment_classes: tuple[str, ...] | list[str],
    heat2d: np.ndarray | None = None,
) -> np.ndarray:
    """Overlay plus burned-in banner: the pixel data of one secondary capture."""
    return burn_banner(overlay(hu2d, labels2d, segment_classes, heat2d))


def key_slices(labels: np.ndarray | None, heatmap: np.ndarray | None, n: int = 3) -> list[int]:
    """Indices (ascending) of up to n slices to show.

    Slices with the largest labelled area; if nothing is labelled, the slices with the highest
    heatmap maximum; if there is no positive heatmap either, the middle slice.
    """
    depth = next((a.shape[0] for a in (labels, heatmap) if a is not None), 0)
    if depth == 0 or n <= 0:
        return []
    if labels is not None:
        area = (np.asarray(labels) > 0).reshape(depth, -1).sum(axis=1)
        if area.max() > 0:
            return _top(area, n)
    if heatmap is not None:
        peak = np.nan_to_num(np.asarray(heatmap, dtype=np.float32)).reshape(depth, -1).max(axis=1)
        if peak.max() > 0:
            return _top(peak, n)
    return [depth // 2]


def _top(score: np.ndarray, n: int) -> list[int]:
    # Stable sort on -score: ties go to the lower index, so the choice is deterministic.
    order = np.argsort(-score, kind="stable")
    chosen = [int(i) for i in order[:n] if score[i] > 0]
    return sorted(chosen)

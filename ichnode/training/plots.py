"""ROC and Bland-Altman plots as PNG, drawn with Pillow (no matplotlib)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ichnode.training.metrics import bland_altman

PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType
        return ImageFont.load_default()


class _Axes:
    """A plotting area on a Pillow image mapping data (x, y) to pixels."""

    def __init__(self, image: Image.Image, box: tuple[int, int, int, int],
                 xlim: tuple[float, float], ylim: tuple[float, float]) -> None:
        self.image, self.draw = image, ImageDraw.Draw(image)
        self.box, self.xlim, self.ylim = box, xlim, ylim

    def px(self, x: float, y: float) -> tuple[float, float]:
        l, t, r, b = self.box
        (x0, x1), (y0, y1) = self.xlim, self.ylim
        return l + (x - x0) / (x1 - x0) * (r - l), b - (y - y0) / (y1 - y0) * (b - t)

    def frame(self, xticks: Sequence[float], yticks: Sequence[float], xlabel: str, ylabel: str,
              title: str, font, small_font) -> None:
        d = self.draw
        l, t, r, b = self.box
        for v in xticks:
            x, _ = self.px(v, self.ylim[0])
            d.line([(x, t), (x, b)], fill=(232, 232, 232))
            d.line([(x, b), (x, b + 5)], fill="black")
            d.text((x, b + 8), _fmt(v), fill="black", font=small_font, anchor="mt")
        for v in yticks:
            _, y = self.px(self.xlim[0], v)
            d.line([(l, y), (r, y)], fill=(232, 232, 232))
            d.line([(l - 5, y), (l, y)], fill="black")
            d.text((l - 8, y), _fmt(v), fill="black", font=small_font, anchor="rm")
        d.rectangle(self.box, outline="black", width=1)
        d.text(((l + r) / 2, b + 30), xlabel, fill="black", font=font, anchor="mt")
        d.text(((l + r) / 2, t - 12), title, fill="black", font=font, anchor="mb")
        # vertical y label: draw on a temporary image and rotate
        w = int(d.textlength(ylabel, font=font)) + 4
        tmp = Image.new("RGBA", (w, 24), (255, 255, 255, 0))
        ImageDraw.Draw(tmp).text((w / 2, 12), ylabel, fill="black", font=font, anchor="mm")
        tmp = tmp.rotate(90, expand=True)
        self.image.paste(tmp, (int(l - 70), int((t + b) / 2 - tmp.height / 2)), tmp)

    def polyline(self, xs, ys, fill, width: int = 2) -> None:
        pts = [self.px(float(x), float(y)) for x, y in zip(xs, ys)]
        if len(pts) > 1:
            self.draw.line(pts, fill=fill, width=width, joint="curve")

    def hline(self, y: float, fill, width: int = 1, dash: int = 0) -> None:
        (x0, x1) = self.xlim
        if dash:
            (a, py), (b, _) = self.px(x0, y), self.px(x1, y)
            x = a
            while x < b:
                self.draw.line([(x, py), (min(x + dash, b), py)], fill=fill, width=width)
                x += 2 * dash
        else:
            self.draw.line([self.px(x0, y), self.px(x1, y)], fill=fill, width=width)


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.2g}" if abs(v) < 1 else f"{v:.1f}"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not hi > lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int(math.floor((hi - start) / step + 1e-9)) + 1)]


def roc_png(curves: Sequence[tuple[np.ndarray, np.ndarray, str]], path: str | Path, title: str = "ROC",
            size: int = 640) -> Path:
    """Draw ROC curves ``[(fpr, tpr, label), ...]`` with the chance diagonal; the last curve is drawn
    thickest (use it for the pooled curve). Returns ``path``."""
    path = Path(path)
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    font, small = _font(15), _font(12)
    ax = _Axes(img, (90, 50, size - 30, size - 90), (0.0, 1.0), (0.0, 1.0))
    ticks = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ax.frame(ticks, ticks, "1 - specificity (false positive rate)", "sensitivity (true positive rate)", title,
             font, small)
    ax.polyline([0, 1], [0, 1], fill=(160, 160, 160), width=1)
    for i, (fpr, tpr, label) in enumerate(curves):
        last = i == len(curves) - 1 and len(curves) > 1
        colour = (0, 0, 0) if last else PALETTE[i % len(PALETTE)]
        ax.polyline(fpr, tpr, fill=colour, width=3 if last else 2)
    # legend, lower right
    lx, ly = ax.box[2] - 250, ax.box[3] - 12 - 18 * len(curves)
    for i, (_, _, label) in enumerate(curves):
        last = i == len(curves) - 1 and len(curves) > 1
        colour = (0, 0, 0) if last else PALETTE[i % len(PALETTE)]
        y = ly + 18 * i
        d.line([(lx, y + 7), (lx + 22, y + 7)], fill=colour, width=3 if last else 2)
        d.text((lx + 28, y), label, fill="black", font=small)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
    return path


def bland_altman_png(reference, measured, path: str | Path, title: str = "Bland-Altman",
                     unit: str = "", size: tuple[int, int] = (720, 540)) -> Path:
    """Differences (measured - reference) against the pair means, with the bias and the 95 % limits of
    agreement as horizontal lines. Returns ``path``."""
    path = Path(path)
    r = np.asarray(reference, np.float64).ravel()
    m = np.asarray(measured, np.float64).ravel()
    stats = bland_altman(r, m)
    mean, diff = (r + m) / 2.0, m - r
    W, H = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font, small = _font(15), _font(12)
    xlo, xhi = float(mean.min()), float(mean.max())
    pad = 0.05 * (xhi - xlo or 1.0)
    ylo = min(float(diff.min()), stats.loa_low)
    yhi = max(float(diff.max()), stats.loa_high)
    ypad = 0.1 * (yhi - ylo or 1.0)
    ax = _Axes(img, (90, 50, W - 150, H - 90), (xlo - pad, xhi + pad), (ylo - ypad, yhi + ypad))
    u = f" ({unit})" if unit else ""
    ax.frame(_nice_ticks(xlo - pad, xhi + pad), _nice_ticks(ylo - ypad, yhi + ypad), f"mean of the two{u}",
             f"difference, measured - reference{u}", title, font, small)
    ax.hline(0.0, fill=(170, 170, 170))
    ax.hline(stats.bias, fill=(31, 119, 180), width=2)
    for v in (stats.loa_low, stats.loa_high):
        ax.hline(v, fill=(214, 39, 40), width=2, dash=8)
    for x, y in zip(mean, diff):
        px, py = ax.px(float(x), float(y))
        d.ellipse([px - 3, py - 3, px + 3, py + 3], outline=(0, 0, 0), fill=(120, 120, 120))
    rx = ax.box[2] + 6
    for v, label, colour in ((stats.loa_high, "+1.96 SD", (214, 39, 40)), (stats.bias, "bias", (31, 119, 180)),
                             (stats.loa_low, "-1.96 SD", (214, 39, 40))):
        _, py = ax.px(ax.xlim[1], v)
        d.text((rx, py - 8), f"{label}", fill=colour, font=small)
        d.text((rx, py + 6), f"{v:.3g}", fill=colour, font=small)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
    return path
